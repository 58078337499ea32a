"""Protocol presets, one file each, each defining `PRESET` (a `benchmark.protocol.Protocol`); `--preset NAME`
picks one. The published leaderboard takes the presets in `benchmark.leaderboard.PUBLISHED_PRESETS`."""
