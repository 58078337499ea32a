"""After a GPU window (scripts/gpu_window.sh): put what came back where it belongs, in one step.

    python scripts/after_gpu_window.py FILES_AT

FILES_AT is the folder the device tool put the call's files in. In order: the published boards go back into
git's index (`scripts/gpu_tree.sh restore`); the archive's records, selections and galleries go into
submissions/standard/ (not its model weights: they would make the checkout too large to travel; the records hold
their sha256) once `benchmark validate` has passed them; the carried runs in .gpu/unfinished/ are replaced by the
returned unfinished/ (the job packs again what it was given and did not finish). Without an archive the job never
reached its packing: nothing is recorded and the carried runs are kept as they were. A record already on the board
with other content is not overwritten. What is left to do by hand: commit submissions/standard/ with the
window's numbers in docs/gpu.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from benchmark.cli import main as benchmark_main
from benchmark.errors import UserError
from benchmark.storage import atomic_write

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = "standard-job.tar.gz"
# what a board keeps of a finished run: its record, selection and gallery (weights and job.txt stay out)
KEPT = re.compile(r"[A-Za-z0-9_.-]+(\.selection\.npz|\.gallery\.npz|\.json)")
MEMBER_LIMIT = 32 * 2 ** 20


def board_files(archive: Path) -> dict[str, bytes]:
    """The records, selections and galleries in the job's archive, by file name."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            files = {}
            for member in tar.getmembers():
                if not KEPT.fullmatch(member.name):
                    continue  # model weights, job.txt
                if not member.isfile() or member.size > MEMBER_LIMIT:
                    raise UserError(f"{archive}: {member.name!r} is not a plain file of a record; fetch it again")
                files[member.name] = tar.extractfile(member).read()
            return files
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UserError(f"{archive}: not a readable .tar.gz ({error}); fetch it again") from None


def place(files: dict[str, bytes], board: Path) -> list[str]:
    """Writes the files into `board`; returns the new ones. One there already with other content stops it."""
    clashes = [name for name, data in files.items() if (board / name).exists() and (board / name).read_bytes() != data]
    if clashes:
        raise UserError(f"{board / clashes[0]} is on the board with other content; not overwritten (move it away "
                        f"if the new one is meant to replace it)")
    new = [name for name in sorted(files) if not (board / name).exists()]
    for name in new:
        atomic_write(board / name, files[name])
    return new


def replace_carried(returned: Path, carried: Path) -> list[str]:
    """Makes `carried` hold exactly the returned carried states (none if none came back)."""
    if carried.exists():
        shutil.rmtree(carried)
    carried.mkdir(parents=True)
    names = sorted(path.name for path in returned.iterdir() if path.is_file()) if returned.is_dir() else []
    for name in names:
        shutil.copyfile(returned / name, carried / name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files_at", type=Path, help="the folder the call's files came back in")
    parser.add_argument("--board", type=Path, default=ROOT / "submissions" / "standard")
    parser.add_argument("--carried", type=Path, default=ROOT / ".gpu" / "unfinished")
    parser.add_argument("--no-restore", action="store_true", help="leave git's index as it is (tests)")
    args = parser.parse_args(argv)
    try:
        if not args.files_at.is_dir():
            raise UserError(f"{args.files_at} is not a folder: give the folder the call's files came back in")
        if not args.no_restore:
            subprocess.run(["bash", str(ROOT / "scripts" / "gpu_tree.sh"), "restore"], check=True)
        archive = args.files_at / ARCHIVE
        if not archive.is_file():
            raise UserError(f"no {ARCHIVE} in {args.files_at}: the job did not reach its packing, so nothing is "
                            f"recorded; the carried runs in {args.carried} are kept (see job.log there)")
        files = board_files(archive)
        if any(name.endswith(".json") for name in files):  # checked before anything reaches the board
            with tempfile.TemporaryDirectory() as staging:
                place(files, Path(staging))
                if benchmark_main(["validate", staging]) != 0:
                    raise UserError(f"the records in {archive} are not valid (above); nothing was added")
        args.board.mkdir(parents=True, exist_ok=True)
        new = place(files, args.board)
        print(f"{len(new)} new file(s) in {args.board} ({sum(n.endswith('.json') for n in new)} record(s))")
        carried = replace_carried(args.files_at / "unfinished", args.carried)
        print(f"{len(carried)} carried file(s) in {args.carried}" + (f": {', '.join(carried)}" if carried else ""))
        print(f"left to do: commit {args.board} and the window's numbers in docs/gpu.md")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"error: scripts/gpu_tree.sh restore failed (exit {error.returncode}); see above", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
