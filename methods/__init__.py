"""One selector per file. Each module registers its selector with `benchmark.selection.register`;
the registry imports every module here, so adding a file adds a method."""
