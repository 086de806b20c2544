"""The package's layering: every `import` in src/dlbasics (those inside functions included) goes
to the importer's own folder or to a lower floor, never up and never sideways, and the modules'
import graph has no cycle. The imports are read here with `ast`, independently of
dlbasics.dvc.codedeps (which reads them for dvc.yaml), so a blind spot there is not one here.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "dlbasics"

# The modules at the package's root, beside config/: what every floor uses.
ROOT_MODULES = {"__init__", "cli", "errors", "io", "rng", "runtime", "trace"}
# Folder -> floor. A module imports from its own folder and from lower floors only; folders on
# one floor do not import each other. "root" is ROOT_MODULES and config/.
FLOORS = {
    "root": 0,
    "data": 1, "dvc": 1,
    "learn": 2,
    "search": 3, "tracking": 3, "report": 3,
    "pipeline": 4, "lessons": 4,
}
# What the package may never import: the entry points and tools around it.
OUTSIDE = ("stages", "benchmarks", "scripts", "tests")


def module_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["dlbasics", *parts])


def unit_of(module: str) -> str:
    """The folder a dotted module of the package belongs to ("root" for the shared modules)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ROOT_MODULES or parts[1] == "config":
        return "root"
    return parts[1]


def imports_of(path: Path, package_dir: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the file, relative ones resolved."""
    here = module_name(path, package_dir)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            # `from pkg import mod` imports the module pkg.mod where there is one
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names
                      if _is_module(f"{base}.{a.name}", package_dir)]
    return found


def _is_module(dotted: str, package_dir: Path) -> bool:
    parts = dotted.split(".")
    if parts[0] != "dlbasics":
        return False
    rel = Path(*parts[1:]) if parts[1:] else Path()
    return (package_dir / rel).with_suffix(".py").is_file() or (package_dir / rel / "__init__.py").is_file()


def violations(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """One line per import that breaks the layering, and one per import cycle."""
    out = []
    graph: dict[str, set[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        here = module_name(path, package_dir)
        graph.setdefault(here, set())
        found = imports_of(path, package_dir)
        for line, name in found:
            if any(n.startswith(name + ".") and ln == line for ln, n in found):
                continue  # `from pkg import mod`: mod is the import named
            top = name.split(".")[0]
            where = f"{path.relative_to(package_dir.parent)}:{line}"
            if top in OUTSIDE:
                out.append(f"{where}: imports {name}, outside the package")
            if top != "dlbasics" or name == here or not _is_module(name, package_dir):
                continue  # not the package's, or a package naming itself (`from . import x`)
            graph[here].add(name)
            mine, theirs = unit_of(here), unit_of(name)
            if mine != theirs and FLOORS[theirs] >= FLOORS[mine]:
                way = "up" if FLOORS[theirs] > FLOORS[mine] else "sideways"
                out.append(f"{where}: {mine}/ (floor {FLOORS[mine]}) imports {name} "
                           f"({theirs}, floor {FLOORS[theirs]}): {way}")
    out += [f"import cycle among: {', '.join(c)}" for c in _cycles(graph)]
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules of each strongly connected part of the graph with more than one module
    (Tarjan's algorithm): each such part holds at least one import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    parts = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                parts.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return parts


def test_every_folder_and_root_module_has_a_floor():
    folders = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"config"} == set(FLOORS) - {"root"}
    assert {p.stem for p in PACKAGE_DIR.glob("*.py")} == ROOT_MODULES


def test_no_import_goes_up_or_sideways_and_none_closes_a_cycle():
    assert violations() == []


def test_every_folder_says_its_job_and_its_floor():
    for init in PACKAGE_DIR.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        floor = 0 if init.parent.name == "config" else FLOORS[init.parent.name]
        assert f"floor {floor}" in doc, f"{init}: the docstring names no floor {floor}"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dest = tmp_path / "dlbasics"
    shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(dest) == []
    return dest


def _add_to_function(path: Path, statement: str) -> None:
    """`statement` as the first line of the file's first function (a lazy import)."""
    text = path.read_text()
    tree = ast.parse(text)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    lines = text.splitlines(keepends=True)
    first = fn.body[0]
    indent = " " * first.col_offset
    lines.insert(first.lineno - 1, f"{indent}{statement}\n")
    path.write_text("".join(lines))


def test_an_upward_import_inside_a_function_is_named(copy: Path):
    _add_to_function(copy / "learn" / "models.py", "from dlbasics.pipeline import variant")
    (line, cycle) = violations(copy)  # pipeline.variant imports learn.models: a cycle too
    assert cycle.startswith("import cycle among: ") and "dlbasics.pipeline.variant" in cycle
    assert "dlbasics/learn/models.py:" in line
    assert "learn/ (floor 2) imports dlbasics.pipeline.variant (pipeline, floor 4): up" in line


def test_a_sideways_import_is_named(copy: Path):
    _add_to_function(copy / "report" / "stats.py", "from dlbasics.tracking import runs")
    (line,) = violations(copy)
    assert "report/ (floor 3) imports dlbasics.tracking.runs (tracking, floor 3): sideways" in line


def test_a_root_module_importing_a_folder_is_named(copy: Path):
    _add_to_function(copy / "io.py", "from dlbasics.data import prepared")
    (line, cycle) = violations(copy)  # data.prepared imports io: a cycle too
    assert cycle == "import cycle among: dlbasics.data.prepared, dlbasics.io"
    assert "dlbasics/io.py:" in line and "root/ (floor 0) imports dlbasics.data.prepared" in line


def test_a_cycle_inside_a_folder_is_named(copy: Path):
    # learn.training imports learn.models; the reverse import closes a cycle in one folder.
    _add_to_function(copy / "learn" / "models.py", "from dlbasics.learn import training")
    (line,) = violations(copy)
    assert line.startswith("import cycle among: ")
    assert "dlbasics.learn.models" in line and "dlbasics.learn.training" in line


def test_an_import_of_a_stage_or_benchmark_is_named(copy: Path):
    _add_to_function(copy / "report" / "compare.py", "import benchmarks.bench")
    (line,) = violations(copy)
    assert "imports benchmarks.bench, outside the package" in line


def test_the_layout_walk_through_of_optimizer_lr_holds():
    """README's "One parameter through the code": train.mlp.optimizer.lr from params.yaml to the
    optimiser, the MLflow parameters and the report's settings column."""
    import torch
    import yaml

    from dlbasics.config.loading import parse_params
    from dlbasics.errors import ConfigError
    from dlbasics.learn.models import build_model
    from dlbasics.learn.training import build_optimizer
    from dlbasics.pipeline.variant import variant_params
    from dlbasics.report.markdown import _settings

    raw = yaml.safe_load((PACKAGE_DIR.parents[1] / "params.yaml").read_text())
    params = parse_params(raw)
    spec = params.train["mlp"]
    assert spec.optimizer.name == "sgd" and spec.optimizer.lr == 0.1
    model = build_model(spec.model, 64, 10, torch.Generator().manual_seed(0))
    optimizer = build_optimizer(spec.optimizer, model)
    assert type(optimizer).__name__ == "SGD"
    assert {g["lr"] for g in optimizer.param_groups} == {0.1}
    assert variant_params(params, "mlp")["optimizer.lr"] == 0.1
    assert "sgd lr 0.1" in _settings(params, "mlp")
    bad = yaml.safe_load((PACKAGE_DIR.parents[1] / "params.yaml").read_text())
    bad["train"]["mlp"]["optimizer"] = {**bad["train"]["mlp"]["optimizer"], "lr": 0}
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    assert str(err.value).startswith(
        "params.yaml: train.mlp.optimizer.lr: expected a value > 0.0, found 0")
