"""The house's rules, checked on the source: the record's key names live in `benchmark/record.py` only, and the
package's import graph has no cycle."""

import ast
import dataclasses
from pathlib import Path

import benchmark.record as record_module

REPO = Path(__file__).resolve().parent.parent
# the installed package: benchmark/, with the repository's methods/ and leaderboard/ as its subpackages
ROOTS = {"benchmark": REPO / "benchmark", "benchmark.methods": REPO / "methods",
         "benchmark.leaderboard": REPO / "leaderboard"}
# names a record shares with the leaderboard's table columns and view rows, a gallery's arrays, a training
# checkpoint and the attacks' own parameters: indexing those is not reading a record
SHARED_NAMES = {"attack", "batch_size", "budget", "clean", "cross_check_images", "dataset", "device", "epoch",
                "epochs", "eps", "flags", "fraction", "gallery", "headline_eps", "images", "lrs", "method", "model",
                "name", "optimizer", "package", "paper", "params", "pool_size", "preset", "proxy_epochs", "seconds",
                "seed", "steps", "test_size"}


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [part for part in path.relative_to(root).with_suffix("").parts if part != "__init__"]
            if prefix == "benchmark" and parts and parts[0] in ("methods", "leaderboard"):
                continue
            found[".".join([prefix, *parts])] = path
    return found


def _record_keys() -> set[str]:
    parts = [value for value in vars(record_module).values()
             if isinstance(value, type) and issubclass(value, record_module.Part) and value is not record_module.Part]
    return {f.name for part in parts for f in dataclasses.fields(part)}


def test_no_module_but_record_py_reads_a_record_by_key():
    keys = _record_keys() - SHARED_NAMES
    assert {"schema", "attacks", "worst_case", "clean_accuracy", "evaluation", "robust", "accuracy"} <= keys
    found = []
    for name, path in _modules().items():
        if name == "benchmark.record":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            key = None
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                key = node.slice.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("get", "pop", "setdefault") and node.args \
                    and isinstance(node.args[0], ast.Constant):
                key = node.args[0].value
            if isinstance(key, str) and key in keys:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: [{key!r}]")
    assert not found, "records are read through benchmark.record's classes:\n" + "\n".join(found)


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    return edges


def test_the_import_graph_has_no_cycle():
    """Every import counts, at module level or inside a function; the registries' discovery of plug-ins goes
    through importlib and is not an import statement."""
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == 1:
                return path[path.index(neighbour):] + [neighbour] if neighbour in path else [node, neighbour]
            if neighbour not in state:
                cycle = visit(neighbour, path + [neighbour])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)
