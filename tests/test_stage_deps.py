"""Declared = executed: every project file a stage's command runs (its script and the
transitive closure of its imports of dlbasics, imports inside functions included) is a declared
dependency in dvc.yaml, and nothing else is declared as code. And the train stage's own change
detector digests subsets of exactly those files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dlbasics.dvc import changes, codedeps

REPO = Path(__file__).resolve().parents[1]
# Each stage's definition (a foreach stage's `do` body).
STAGES = {name: codedeps.stage_body(stage)
          for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()}


def test_every_stage_declares_exactly_the_code_it_executes():
    problems = codedeps.check(REPO)
    assert problems == [], "\n".join(problems) + "\n(run `make deps`)"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_the_closure_is_the_stage_script_and_the_library_files_it_imports(stage):
    executed = codedeps.stage_code(REPO, STAGES[stage]["cmd"])
    script = codedeps.stage_script(STAGES[stage]["cmd"])
    assert script in executed and script.startswith("stages/")
    # Every stage script goes through cli.run_stage: the package and cli.py are executed.
    assert {"src/dlbasics/__init__.py", "src/dlbasics/cli.py"} <= set(executed)
    assert all((REPO / f).is_file() for f in executed)


def test_the_closure_follows_lazy_relative_and_cyclic_imports(tmp_path):
    pkg = tmp_path / "src" / "dlbasics"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import os\n\ndef f():\n    from dlbasics import b\n    return b\n")
    (pkg / "b.py").write_text("from .c import thing\n")
    (pkg / "c.py").write_text("thing = 1\n\ndef g():\n    import dlbasics.a\n")
    (pkg / "d.py").write_text("from dlbasics.c import thing\n")  # imported by nobody
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/s.py").write_text("from dlbasics.a import f\n")
    got = codedeps.stage_code(tmp_path, "PYTHONPATH=src python stages/s.py --x y")
    assert got == ["src/dlbasics/__init__.py", "src/dlbasics/a.py", "src/dlbasics/b.py",
                   "src/dlbasics/c.py", "stages/s.py"]


def test_check_names_an_undeclared_and_a_stale_file(tmp_path):
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    deps = doc["stages"]["report"]["deps"]
    deps.remove("src/dlbasics/report/collect.py")
    deps.append("src/dlbasics/learn/training.py")
    bad = tmp_path / "dvc.yaml"
    bad.write_text(yaml.safe_dump(doc))
    # ... and in the body of a foreach stage (select@NAME).
    doc["stages"]["select"]["do"]["deps"].remove("src/dlbasics/learn/batched.py")
    bad.write_text(yaml.safe_dump(doc))
    assert sorted(codedeps.check(REPO, bad)) == [
        "stage report: declares src/dlbasics/learn/training.py but never executes it",
        "stage report: executes src/dlbasics/report/collect.py but does not declare it",
        "stage select: executes src/dlbasics/learn/batched.py but does not declare it",
    ]


def test_write_restores_the_declared_lists_and_keeps_the_comments(tmp_path):
    for rel in ("dvc.yaml",):
        (tmp_path / rel).write_text((REPO / rel).read_text())
    doc = (tmp_path / "dvc.yaml").read_text()
    broken = doc.replace("      - src/dlbasics/report/collect.py\n", "", 1)
    assert broken != doc
    (tmp_path / "dvc.yaml").write_text(broken)
    assert codedeps.write(REPO, tmp_path / "dvc.yaml") is True
    assert (tmp_path / "dvc.yaml").read_text() == doc
    assert codedeps.write(REPO, tmp_path / "dvc.yaml") is False


def _declared(stage: str) -> set[str]:
    return {d for d in STAGES[stage]["deps"] if d.endswith(".py")}


def _files(modules) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in codedeps.closure(modules)}


def test_the_train_stage_fingerprints_subsets_of_what_dvc_tracks_for_it():
    training, evaluation = _files(changes.TRAINING_CODE), _files(changes.EVALUATION_CODE)
    assert training <= _declared("train") and evaluation <= _declared("train")
    # What training executes retrains; report-only modules are not even stage dependencies.
    assert "src/dlbasics/learn/training.py" in training and "src/dlbasics/learn/models.py" in training
    for report_only in ("report/html.py", "report/markdown.py", "report/collect.py"):
        assert (REPO / "src/dlbasics" / report_only).is_file(), report_only
        assert f"src/dlbasics/{report_only}" not in _declared("train")
    # The stage entry points' shared module is executed by every stage, not by training.
    assert "src/dlbasics/cli.py" in _declared("train") and "src/dlbasics/cli.py" not in evaluation
    # Figures are drawn by evaluation: an edit re-evaluates, it does not retrain.
    assert "src/dlbasics/report/figures.py" in evaluation - training
