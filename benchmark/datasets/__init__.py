"""Datasets: one file each in this package, registered by name like selectors (plug-ins: entry-point group
``coreset_bench.datasets``). A dataset says where it comes from, its classes, its image size and how it is
split, and loads itself as a `benchmark.data.ImageDataset`. `--dataset NAME` picks one;
`--dataset imagefolder:PATH` passes PATH as the ImageFolder's parameter."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from benchmark.data import ImageDataset, default_cache_dir
from benchmark.errors import UserError
from benchmark.registry import Registry


@dataclass(frozen=True)
class Dataset:
    name: ClassVar[str]
    paper: ClassVar[str]  # where the data comes from, cited
    source: ClassVar[str]  # how it is obtained (torchvision, embedded, a local folder)
    classes: ClassVar[int]  # 0: read from the data
    image_size: ClassVar[int]
    split: ClassVar[str]  # train / test / validation, in words

    def load(self, *, data_root: Path, cache_dir: Path, download: bool) -> ImageDataset:
        raise NotImplementedError

    def record_name(self) -> str:
        """The name records carry (never a local path)."""
        return self.name


DATASETS = Registry("dataset", "benchmark.datasets", "coreset_bench.datasets")
register = DATASETS.register


def parse_dataset(spec: str) -> Dataset:
    name, separator, argument = spec.partition(":")
    known = DATASETS.available()
    if name not in known:
        names = ", ".join(n + (":PATH" if "path" in {f.name for f in dataclasses.fields(cls)} else "")
                          for n, cls in known.items())
        raise UserError(f"unknown dataset {spec!r}; use one of {names}")
    if separator:
        if "path" not in {f.name for f in dataclasses.fields(known[name])}:
            with_path = ", ".join(f"{n}:PATH" for n, cls in known.items()
                                  if "path" in {f.name for f in dataclasses.fields(cls)})
            raise UserError(f"dataset {name!r} takes no ':' argument (only {with_path} do)")
        return DATASETS.create(name, {"path": argument})
    return DATASETS.create(name)


def offline_error(title: str, root: Path, reason: str, folder: str) -> UserError:
    return UserError(f"{title} is not under {root} and could not be downloaded ({reason}); pass --data-root DIR "
                     f"with {folder} in it, --dataset imagefolder:PATH for a local copy, or --preset smoke to run on "
                     f"the embedded digits")


def folders_under(root: Path) -> set[Path]:
    """Every folder at or under `root` that exists now (to remove the empty ones a failed download adds)."""
    return {root, *(p for p in root.rglob("*") if p.is_dir())} if root.is_dir() else set()


def remove_new_empty_folders(root: Path, before: set[Path]) -> None:
    for folder in sorted(folders_under(root) - before, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only if empty: nothing anyone wrote is removed
        except OSError:
            pass


def torchvision_parts(title: str, folder: str, root: Path, download: bool, build) -> list:
    """`build(train)` for the training and test splits of a torchvision dataset, with one clear error when
    the files are missing, damaged or not downloadable; a failed download leaves no folder it made."""
    before = folders_under(root)
    try:
        return [build(train) for train in (True, False)]
    except Exception as error:  # no network, a proxy error, a corrupt archive, a wrong file: all end the same way
        remove_new_empty_folders(root, before)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if not download:
            reason += "; downloads are off"
        raise offline_error(title, root, reason, folder) from None


def load_dataset(spec: str, *, data_root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, download: bool = True) -> ImageDataset:
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return parse_dataset(spec).load(data_root=Path(data_root) if data_root else cache / "data", cache_dir=cache,
                                    download=download)


def dataset_name(spec: str) -> str:
    """The name records carry for a dataset spec, known before loading it (an ImageFolder by its folder name:
    records never hold local paths)."""
    return parse_dataset(spec).record_name()
