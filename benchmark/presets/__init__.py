"""Protocol presets, one file each, each registering one `benchmark.protocol.Protocol` with `register_preset`;
`--preset NAME` picks one. The published leaderboard takes the presets in
`benchmark.leaderboard.PUBLISHED_PRESETS`."""
