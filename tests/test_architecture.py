"""The shape of the code base, checked: no import cycle, small modules, no process-wide side
effects outside entry points."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
FOLDERS = {folder: package for package, folder in PACKAGE_DIR["package-dir"].items()}
"""Source folder -> the package it installs as (pyproject's package-dir)."""
MAX_LINES = 400
LARGER: dict[str, str] = {
    # module: why it is allowed to be longer (none is now)
}
ENTRY_POINTS = {"ragzip.cli", "ragzip.evaluation.command", "ragzip.training.common"}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules ``name`` imports at run time (any depth, ``TYPE_CHECKING`` left out)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*parts, *([child.module] if child.module else [])])
                # ``from package import module`` imports that module; ``from module import
                # name`` imports the module
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in child.names
                ]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_no_import_cycle_among_the_project_modules() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert sum(len(edges) for edges in graph.values()) > 200  # the graph was really built
    assert "ragzip.compressor" in graph["ragzip.compressors.truncate"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_modules_are_small_enough_to_read_in_one_sitting() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    too_long = {n: s for n, s in sizes.items() if s > MAX_LINES and n not in LARGER}
    assert too_long == {}, f"split these modules (or say why in LARGER): {too_long}"
    assert all(n in sizes for n in LARGER), "LARGER names a module that no longer exists"
    stale = [n for n in LARGER if sizes[n] <= MAX_LINES]
    assert stale == [], f"these modules fit now; take them out of LARGER: {stale}"


def _calls(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            out.append(ast.unparse(node.func))
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [f"assign {ast.unparse(t)}" for t in targets]
    return out


def test_process_wide_state_is_set_by_entry_points_only() -> None:
    for name, path in _modules().items():
        calls = _calls(path)
        assert not any(c.startswith("assign os.environ") for c in calls), name
        assert "os.environ.update" not in calls and "os.putenv" not in calls, name
        if name in ENTRY_POINTS or name.endswith(".__main__"):
            continue
        assert "torch.set_num_threads" not in calls, f"{name} sets torch's thread count"
        assert "torch.set_num_interop_threads" not in calls, name


ARCHITECTURE = ROOT / "docs" / "architecture.md"
MAX_ROOT_MODULES = 12


def _layers() -> list[tuple[str, ...]]:
    """The layer table of docs/architecture.md, the one place the layers are written: one row
    per layer, lowest first; its second column names modules and folders (``core/``,
    ``pipeline``, ``integrations/litellm_hook``) relative to the ``ragzip`` package."""
    text = ARCHITECTURE.read_text(encoding="utf-8").split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in text.splitlines() if re.match(r"\| \d ", line)]
    layers = [
        tuple(
            "ragzip." + name.strip("/").replace("/", ".") for name in re.findall(r"`([^`]+)`", row)
        )
        for row in rows
    ]
    # the package's own __init__ re-exports from every layer: it sits on top
    return [*layers[:-1], (*layers[-1], "ragzip")]


LAYERS = _layers()


def test_the_layer_table_is_read_and_names_every_root_module() -> None:
    assert len(LAYERS) >= 4 and all(LAYERS)
    named = {name for layer in LAYERS for name in layer}
    root = {
        "ragzip." + (p.stem if p.is_file() else p.name)
        for p in (ROOT / "ragzip").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert root - named == set(), "add these to the layer table in docs/architecture.md"
    assert named - set(_modules()) == set(), "the layer table names modules that do not exist"


def test_the_root_package_shows_its_layers_in_few_modules() -> None:
    modules = [p for p in (ROOT / "ragzip").glob("*.py")]
    assert len(modules) <= MAX_ROOT_MODULES, sorted(p.name for p in modules)


def _layer(module: str) -> int:
    best, level = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    assert level >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return level


def test_layers_import_only_their_own_or_lower_layers() -> None:
    modules = _modules()
    upward = sorted(
        f"{name} -> {target}"
        for name, path in modules.items()
        for target in _imports(name, path, modules)
        if _layer(target) > _layer(name) and name != "ragzip"
    )
    assert upward == [], "imports from a higher layer (see docs/architecture.md)"


def test_benchmark_scripts_are_small_enough_too() -> None:
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in root.glob("*.py")}
    assert sizes, "no benchmark scripts found"
    too_long = {n: s for n, s in sizes.items() if s > MAX_LINES}
    assert too_long == {}, f"split these benchmark scripts: {too_long}"
