"""scripts/mutate.py's own decisions (make mutate; docs/tests.md): what a survivor's key is, when a
module's figure is stale, which modules CI and --changed run, when a run fails. mutmut itself
runs in `make mutate` and in CI's mutation step."""

from __future__ import annotations

import importlib.util
import json
import sys
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutate():
    spec = importlib.util.spec_from_file_location("mutate_script", ROOT / "scripts" / "mutate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutate_script"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("mutate_script", None)


DIFF = """--- src/x.py
+++ src/x.py
@@ -1,3 +1,3 @@
 def f(a):
-    return a + 1
+    return a - 1
"""


def test_diff_key_depends_on_the_changed_lines_only(mutate):
    moved = DIFF.replace("@@ -1,3 +1,3 @@", "@@ -40,3 +40,3 @@").replace(" def f(a):", " def g(a):")
    assert mutate.diff_key(DIFF) == mutate.diff_key(moved)
    assert mutate.diff_key(DIFF) != mutate.diff_key(DIFF.replace("a - 1", "a * 1"))
    assert len(mutate.diff_key(DIFF)) == 10


def test_equivalents_file_is_read_and_a_bad_line_named(mutate, tmp_path, monkeypatch):
    monkeypatch.setattr(mutate, "REPO", tmp_path)
    p = tmp_path / "eq.txt"
    p.write_text("# comment\n\npkg.m.x_f abc123  the reason, with  spaces\n")
    assert mutate.read_equivalents(p) == {("pkg.m.x_f", "abc123"): "the reason, with  spaces"}
    p.write_text("pkg.m.x_f abc123\n")
    with pytest.raises(SystemExit, match=r"eq.txt:1: want"):
        mutate.read_equivalents(p)


def _tree(tmp_path: Path, mutate) -> tuple:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    mods = []
    for name in ("a", "b", "c"):
        (tmp_path / "src" / "pkg" / f"{name}.py").write_text(f"def f():\n    return '{name}'\n")
        (tmp_path / "tests" / f"test_{name}.py").write_text("def test(): pass\n")
        mods.append(mutate.Module(name, f"src/pkg/{name}.py", mutate._fns("*"),
                                  (f"tests/test_{name}.py",)))
    return tuple(mods)


def test_a_figure_goes_stale_when_its_source_tests_or_equivalents_change(mutate, tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(mutate, "REPO", tmp_path)
    a, b, _ = _tree(tmp_path, mutate)
    before = mutate.digest(a, {})
    assert mutate.digest(a, {}) == before
    assert mutate.digest(a, {("pkg.b.x_f", "k"): "why"}) == before  # another module's entry
    assert mutate.digest(a, {("pkg.a.x_f", "k"): "why"}) != before
    (tmp_path / "tests" / "test_a.py").write_text("def test(): assert 1\n")
    after_tests = mutate.digest(a, {})
    assert after_tests != before
    (tmp_path / "src" / "pkg" / "a.py").write_text("def f():\n    return 'A'\n")
    assert mutate.digest(a, {}) != after_tests
    assert mutate.digest(b, {}) != mutate.digest(a, {})


def test_ci_runs_the_changed_modules_cheapest_first_within_its_budget(mutate, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.setattr(mutate, "REPO", tmp_path)
    mods = _tree(tmp_path, mutate)
    monkeypatch.setattr(mutate, "MODULES", mods)
    fresh = {m.name: mutate.digest(m, {}) for m in mods}
    figures = {"a": {"digest": "old", "seconds": 90}, "b": {"digest": "old", "seconds": 20},
               "c": {"digest": fresh["c"], "seconds": 5}}
    plan, problems = mutate.ci_plan(figures, {}, budget_s=100)
    assert [m.name for m in plan] == ["b"] and problems == []
    assert "a changed since its recorded figure but does not fit" in capsys.readouterr().out
    plan, _ = mutate.ci_plan(figures, {}, budget_s=110)
    assert [m.name for m in plan] == ["b", "a"]
    # Nothing changed: one module that fits is re-run as a spot check.
    same = {m.name: {"digest": fresh[m.name], "seconds": 5} for m in mods}
    plan, _ = mutate.ci_plan(same, {}, budget_s=100)
    assert len(plan) == 1 and plan[0] in mods
    # A module never recorded is named, not run (its time is unknown).
    del same["a"]
    plan, _ = mutate.ci_plan(same, {}, budget_s=100)
    assert "no recorded figure for a" in capsys.readouterr().out
    assert all(m.name != "a" for m in plan)


def _result(killed, total, equivalent=0):
    considered = total - equivalent
    return {"module": "m", "total": total, "killed": killed, "timeouts": 0,
            "equivalent": equivalent, "survived": considered - killed,
            "rate": Fraction(killed, considered), "seconds": 1.0, "survivors": [], "stale": [],
            "digest": "d"}


def test_a_run_fails_below_90_percent_or_below_its_recorded_figure(mutate, capsys):
    assert mutate.report(_result(9, 10), None) == []
    assert mutate.report(_result(9, 11, equivalent=1), None) == []  # equivalents left out
    low = mutate.report(_result(8, 10), None)
    assert len(low) == 1 and "80.0% killed, below 90%" in low[0]
    recorded = {"killed": 19, "total": 20, "equivalent": 0}
    fell = mutate.report(_result(9, 10), recorded)
    assert len(fell) == 1 and "below its recorded 95.0%" in fell[0]
    assert mutate.report(_result(19, 20), recorded) == []
    assert "recorded 19/20" in capsys.readouterr().out


def test_validators_unwrapped_keep_their_behaviour(mutate):
    src = '''
from pydantic import BaseModel, field_validator, model_validator

class M(BaseModel):
    lo: float
    hi: float

    @field_validator("lo")
    @classmethod
    def _lo(cls, v):
        if v < 0:
            raise ValueError("lo must be >= 0")
        return v

    @model_validator(mode="after")
    def _order(self):
        if self.hi < self.lo:
            raise ValueError("hi below lo")
        return self
'''
    out = mutate.unwrap_validators(src)
    assert "def _lo__checked(" in out and "def _order__checked(" in out
    for text in (src, out):
        ns: dict = {}
        exec(compile(text, "m.py", "exec"), ns)
        M = ns["M"]
        assert M(lo=1, hi=2).hi == 2
        with pytest.raises(ValueError, match="lo must be >= 0"):
            M(lo=-1, hi=2)
        with pytest.raises(ValueError, match="hi below lo"):
            M(lo=3, hi=2)


def test_recording_keeps_figures_another_run_wrote_meanwhile(mutate, tmp_path, monkeypatch):
    monkeypatch.setattr(mutate, "FIGURES", tmp_path / "figures.json")
    mutate.save_figures({"io": {"killed": 1}, "gone": {"killed": 0}})
    # (a run on `tasks` starts here and reads the figures; then another run records `idx`)
    mutate.save_figures({**mutate.load_figures(), "idx": {"killed": 5}})
    res = {**_result(9, 10), "module": "tasks"}
    mutate.record_figures([res])
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert set(figures) == {"io", "idx", "tasks"}  # `gone` is no module of MODULES
    assert figures["tasks"] == {"killed": 9, "total": 10, "equivalent": 0, "digest": "d",
                                "seconds": 1}


def test_changed_takes_no_module_names(mutate, capsys):
    assert mutate.main(["--changed", "io"]) == 2
    assert "--changed picks its own modules" in capsys.readouterr().err
    assert mutate.main(["nosuchmodule"]) == 2


def test_under_mutmut_the_tests_run_fastest_first_each_file_together(tmp_path, monkeypatch):
    """conftest's ordering: only in a mutmut worker (a mutant named in MUTANT_UNDER_TEST), by the
    durations in mutmut-stats.json, files by their fastest test; the same items, none lost."""
    from types import SimpleNamespace

    from conftest import _fastest_first_under_mutmut

    took = {"a.py::slow": 3.0, "a.py::fast": 0.1, "b.py::mid": 0.5, "b.py::slower": 2.0,
            "c.py::x": 0.01}
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": took}))
    monkeypatch.chdir(tmp_path)

    def items():
        return [SimpleNamespace(nodeid=n) for n in
                ("a.py::slow", "b.py::slower", "a.py::fast", "b.py::mid", "c.py::x", "c.py::new")]

    order = items()
    monkeypatch.delenv("MUTANT_UNDER_TEST", raising=False)
    _fastest_first_under_mutmut(order)
    assert [i.nodeid for i in order] == [i.nodeid for i in items()]  # not under mutmut
    monkeypatch.setenv("MUTANT_UNDER_TEST", "stats")  # mutmut's own runs: as collected
    _fastest_first_under_mutmut(order)
    assert [i.nodeid for i in order] == [i.nodeid for i in items()]
    monkeypatch.setenv("MUTANT_UNDER_TEST", "dlbasics.io.x_f__mutmut_3")
    _fastest_first_under_mutmut(order)
    # c's fastest is 0 (a test mutmut never timed counts as 0), then a (0.1), then b (0.5).
    assert [i.nodeid for i in order] == ["c.py::new", "c.py::x", "a.py::fast", "a.py::slow",
                                         "b.py::mid", "b.py::slower"]
    (tmp_path / "mutmut-stats.json").unlink()  # no stats: left as collected
    order = items()
    _fastest_first_under_mutmut(order)
    assert [i.nodeid for i in order] == [i.nodeid for i in items()]
