"""The GPU window's scripts. scripts/gpu_tree.sh on a small repository: `size` counts what a device call sends,
`slim` holds the CPU boards and pages out of it without touching a file, commits are refused until `restore`, and
`restore` leaves git as it was. scripts/gpu_window.sh: its `job` command is one the CLI takes, and what it carries
fits in what a call returns."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SCRIPT = SCRIPTS / "gpu_tree.sh"
MIB = 2 ** 20



def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _tree(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "scripts/gpu_tree.sh", *args], cwd=repo, capture_output=True, text=True)


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    files = {"scripts/gpu_tree.sh": SCRIPT.read_bytes(), "benchmark/code.py": b"x = 1\n",
             "docs/leaderboard/index.html": b"p" * MIB, "submissions/cifar10-cpu/a.json": b"c" * (2 * MIB),
             "submissions/standard/b.json": b"{}\n", "republish/cifar10-cpu-at/c.json": b"s" * MIB,
             "republish/README.md": b"staging\n"}
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    (repo / ".gpu").mkdir()
    (repo / ".gpu" / "data.npz").write_bytes(b"d" * MIB)
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("/.gpu/\n")
    return repo


def _mib(out: str) -> float:
    return float(out.split("send ")[1].split(" MiB")[0])


def test_size_counts_tracked_untracked_and_carried_files(repo):
    assert _mib(_tree(repo, "size").stdout) == pytest.approx(4.0, abs=0.05)
    (repo / "notes.txt").write_bytes(b"n" * MIB)  # untracked, not ignored: it travels
    assert _mib(_tree(repo, "size", ".gpu").stdout) == pytest.approx(6.0, abs=0.05)


def test_size_fails_over_64_mib(repo):
    with open(repo / "big.bin", "wb") as big:
        big.truncate(65 * MIB)
    done = _tree(repo, "size")
    assert done.returncode == 1 and "over the limit" in done.stderr


def test_slim_holds_the_boards_out_until_restore(repo):
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    done = _tree(repo, "slim")
    assert done.returncode == 0, done.stderr
    tracked = set(_git(repo, "ls-files").split())
    assert tracked == {"scripts/gpu_tree.sh", "benchmark/code.py", "submissions/standard/b.json",
                       "republish/README.md"}
    assert (repo / "docs/leaderboard/index.html").stat().st_size == MIB  # on disk, untouched
    assert _mib(_tree(repo, "size", ".gpu").stdout) == pytest.approx(1.0, abs=0.05)  # the boards are not sent
    commit = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "oops"],
                            cwd=repo, capture_output=True, text=True)
    assert commit.returncode != 0 and "gpu_tree.sh restore" in commit.stderr
    assert _tree(repo, "slim").returncode == 1  # not twice

    done = _tree(repo, "restore")
    assert done.returncode == 0, done.stderr
    assert _git(repo, "status", "--porcelain") == ""
    assert (repo / ".git" / "info" / "exclude").read_text() == exclude
    assert "submissions/cifar10-cpu/a.json" in _git(repo, "ls-files")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "fine now")


def test_slim_refuses_uncommitted_changes_to_the_boards(repo):
    (repo / "docs/leaderboard/index.html").write_bytes(b"changed")
    done = _tree(repo, "slim")
    assert done.returncode == 1 and "uncommitted changes" in done.stderr
    assert "docs/leaderboard/index.html" in _git(repo, "ls-files")  # nothing was done


def test_the_window_runs_a_job_the_cli_takes_and_carries_what_a_call_returns():
    from benchmark.cli import build_parser

    text = (SCRIPTS / "gpu_window.sh").read_text()
    command = re.search(r"python3 -m benchmark job (.*?)2>&1", text.replace("\\\n", " "), re.S).group(1)
    defaults = {"$left": "500", "$out": "/tmp/out"}
    command = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", command)  # ${NAME:-default} -> default
    for name, value in defaults.items():
        command = command.replace(name, value)
    args = build_parser().parse_args(["job", *shlex.split(command)])
    assert args.preset == "standard" and args.unfinished == Path(".gpu/unfinished") and args.carry_training == 1
    # a call returns 8 files: device.txt, bench.txt, job.log and the archive, then the carried parts
    assert args.unfinished_files <= 4 and args.archive_limit_mb <= 16
    # what is carried travels with the next call (64 MiB), beside .gpu's 20 MiB and the slimmed checkout
    assert args.unfinished_mb <= 40
