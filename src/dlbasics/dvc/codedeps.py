"""Which project files a piece of code executes: a file and the transitive closure of its imports
of this package, imports inside functions included, read from the source with `ast`.

DVC re-runs a stage when one of its declared dependencies changes; a stage's declared code must
therefore be exactly what its command executes. `dvc.yaml` lists it per stage, `tests/
test_stage_deps.py` fails when the list and the closure disagree, and

    python -m dlbasics.dvc.codedeps --write dvc.yaml

rewrites the lists (`make deps`). The train stage's per-variant reuse digests the closures of
its training and evaluation modules (subsets of what DVC tracks for the stage), so the two
change detectors see the same files.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import sys
from pathlib import Path
from typing import Iterable

PACKAGE = "dlbasics"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/dlbasics


def _module_file(package_dir: Path, dotted: str) -> Path | None:
    """The file of module `dotted` (e.g. "dlbasics.data.idx") under package_dir, None when the name
    is not a module of the package (an attribute imported from it)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    rel = Path(*parts[1:]) if len(parts) > 1 else Path()
    for cand in (package_dir / rel.with_suffix(".py") if parts[1:] else None,
                 package_dir / rel / "__init__.py"):
        if cand is not None and cand.is_file():
            return cand
    return None


def _package_of(path: Path, package_dir: Path) -> str | None:
    """The dotted package that `path` lives in (for relative imports), None outside it."""
    try:
        rel = path.resolve().relative_to(package_dir.resolve())
    except ValueError:
        return None
    return ".".join([PACKAGE, *rel.parent.parts])


def imported_modules(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Dotted names of the package's modules that `path` imports anywhere in its body."""
    return set(_imported_modules(path, path.read_bytes(), package_dir))


@functools.lru_cache(maxsize=None)
def _imported_modules(path: Path, source: bytes, package_dir: Path) -> frozenset[str]:
    # Keyed by content: an edited file is parsed again.
    tree = ast.parse(source, filename=str(path))
    here = _package_of(path, package_dir)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if here is None:
                    continue
                base_parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from pkg import mod` imports a module when `mod` is one.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    out = set()
    for name in found:
        parts = name.split(".")
        if parts[0] != PACKAGE:
            continue
        # Importing a.b.c executes a/__init__.py and a/b/__init__.py first.
        out.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return frozenset(m for m in out if _module_file(package_dir, m) is not None)


def closure(entries: Iterable[Path | str], package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every file executed by importing or running `entries` (files, or dotted module names of
    the package): the entries and their transitive imports of the package, sorted."""
    todo: list[Path] = []
    for e in entries:
        if isinstance(e, str) and not e.endswith(".py"):
            f = _module_file(package_dir, e)
            if f is None:
                raise ValueError(f"{e}: not a module of {package_dir}")
            todo.append(f)
            # Importing dlbasics.x runs dlbasics/__init__.py first.
            todo.extend(_module_file(package_dir, ".".join(e.split(".")[: i + 1]))
                        for i in range(len(e.split(".")) - 1))
        else:
            todo.append(Path(e))
    seen: set[Path] = set()
    while todo:
        path = todo.pop().resolve()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_module_file(package_dir, m) for m in imported_modules(path, package_dir))
    return sorted(seen)


def files_digest(files: Iterable[Path], root: Path) -> str:
    """sha256 over (path relative to root, content) of `files`: one digest of some code."""
    h = hashlib.sha256()
    for path in sorted(Path(f).resolve() for f in files):
        h.update(path.relative_to(root.resolve()).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def code_digest(*modules: str) -> str:
    """One digest of the source that importing `modules` (dotted names) executes."""
    return files_digest(closure(modules), PACKAGE_DIR.parent)


# ----------------------------------------------------------------------------- dvc.yaml


def stage_script(cmd: str) -> str | None:
    """The project script a stage command runs (`python stages/x.py ...` -> stages/x.py)."""
    words = cmd.split()
    for i, w in enumerate(words):
        if w.endswith(".py") and i > 0 and words[i - 1].endswith(("python", "python3")):
            return w
    return None


def stage_code(repo: Path, cmd: str) -> list[str]:
    """The project files (relative to repo, POSIX) that stage command `cmd` executes."""
    script = stage_script(cmd)
    if script is None:
        return []
    package_dir = repo / "src" / PACKAGE
    files = closure([repo / script], package_dir)
    return [p.relative_to(repo.resolve()).as_posix() for p in files]


def stage_body(stage: dict) -> dict:
    """The definition of a dvc.yaml stage: its `do` body when it is a foreach stage."""
    return stage["do"] if "foreach" in stage else stage


def _is_code(dep: str) -> bool:
    return dep.endswith(".py")


def check(repo: Path, dvc_yaml: Path | None = None) -> list[str]:
    """One line per disagreement between the declared code deps of dvc.yaml and what each
    stage executes (undeclared, or declared but never executed); [] when they agree."""
    import yaml

    doc = yaml.safe_load((dvc_yaml or repo / "dvc.yaml").read_text())
    problems = []
    for name, stage in (doc.get("stages") or {}).items():
        stage = stage_body(stage)
        declared = {d for d in stage.get("deps", []) if isinstance(d, str) and _is_code(d)}
        executed = set(stage_code(repo, stage["cmd"]))
        problems += [f"stage {name}: executes {f} but does not declare it"
                     for f in sorted(executed - declared)]
        problems += [f"stage {name}: declares {f} but never executes it"
                     for f in sorted(declared - executed)]
    return problems


def rewrite_yaml(path: Path, edit) -> bool:
    """Load `path` keeping its comments and layout, apply `edit(doc)`, write it back if that
    changed anything; True when the file changed (dvc.yaml's generated parts: `make deps`)."""
    import io

    from ruamel.yaml import YAML

    yml = YAML()
    yml.preserve_quotes = True
    yml.width = 4096
    yml.indent(mapping=2, sequence=4, offset=2)
    text = path.read_text()
    doc = yml.load(text)
    edit(doc)
    buf = io.StringIO()
    yml.dump(doc, buf)
    if buf.getvalue() == text:
        return False
    path.write_text(buf.getvalue())
    return True


def write(repo: Path, dvc_yaml: Path | None = None) -> bool:
    """Rewrite each stage's code deps in dvc.yaml to its closure (comments kept); True when
    the file changed."""

    def declare(doc) -> None:
        for stage in (doc.get("stages") or {}).values():
            stage = stage_body(stage)
            deps = stage.get("deps")
            code = stage_code(repo, stage["cmd"])
            if deps is None or not code:
                continue
            others = [d for d in deps if not (isinstance(d, str) and _is_code(d))]
            deps.clear()
            deps.extend([*code, *others])

    return rewrite_yaml(dvc_yaml or repo / "dvc.yaml", declare)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="check or rewrite the code deps of dvc.yaml")
    ap.add_argument("dvc_yaml", type=Path, nargs="?", default=Path("dvc.yaml"))
    ap.add_argument("--write", action="store_true", help="rewrite the lists in place")
    args = ap.parse_args(argv)
    repo = args.dvc_yaml.resolve().parent
    if args.write:
        changed = write(repo, args.dvc_yaml)
        print(f"{args.dvc_yaml}: {'code deps rewritten' if changed else 'already up to date'}")
        return 0
    problems = check(repo, args.dvc_yaml)
    for line in problems:
        print(f"{args.dvc_yaml}: {line}", file=sys.stderr)
    if problems:
        print(f"{args.dvc_yaml}: run `make deps` to declare what each stage executes",
              file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
