"""Exits with status 1, listing the differences, unless two leaderboard sites hold the same files byte for byte:
`python scripts/compare_sites.py NEW PUBLISHED` (the tox env `pages` runs it on a torch-free render)."""

import sys
from pathlib import Path


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def main(new: str, published: str) -> int:
    left, right = files(Path(new)), files(Path(published))
    problems = [f"only in {new}: {name}" for name in sorted(set(left) - set(right))]
    problems += [f"only in {published}: {name}" for name in sorted(set(right) - set(left))]
    problems += [f"differs: {name}" for name in sorted(set(left) & set(right)) if left[name] != right[name]]
    for line in problems:
        print(line)
    if not problems:
        print(f"{len(left)} file(s) identical")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
