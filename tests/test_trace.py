"""The trace behind `make bench`'s phase table: dlbasics.trace writes it only when asked, and
benchmarks/phases.py attributes every second of a command to one phase."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.phases import innermost, phase_table, read_trace, variant_work
from dlbasics import trace

REPO = Path(__file__).resolve().parents[1]


def _child(code: str, tmp_path: Path, traced: bool) -> Path:
    path = tmp_path / "trace.jsonl"
    env = {k: v for k, v in os.environ.items() if k != trace.TRACE_ENV}
    env["PYTHONPATH"] = str(REPO / "src")
    env["DVC_STAGE"] = "demo"
    if traced:
        env[trace.TRACE_ENV] = str(path)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    return path


CHILD = """
import time
from dlbasics import trace
trace.process("stage")
with trace.span("outer: MLflow run", "tracking"):
    time.sleep(0.05)
    with trace.span("v1: fit", "compute"):
        time.sleep(0.1)
with trace.span("v1: evaluate", "compute"):
    time.sleep(0.05)
trace.end()
"""


def test_nothing_is_written_unless_the_variable_names_a_file(tmp_path):
    path = _child(CHILD, tmp_path, traced=False)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_a_traced_process_records_its_start_its_spans_and_its_end(tmp_path):
    t0 = time.time()
    records = read_trace(_child(CHILD, tmp_path, traced=True))
    t1 = time.time()
    proc = next(r for r in records if "role" in r)
    assert proc["stage"] == "demo" and proc["role"] == "stage"
    # The operating system's start time of the process (to 1/100 s), before its main.
    assert t0 - 0.02 <= proc["start"] <= proc["main"] <= t1
    spans = {r["span"]: r for r in records if "span" in r}
    assert set(spans) == {"outer: MLflow run", "v1: fit", "v1: evaluate"}
    assert spans["v1: fit"]["t1"] - spans["v1: fit"]["t0"] >= 0.1
    end = next(r["end"] for r in records if "end" in r)
    assert all(proc["main"] <= s["t0"] <= s["t1"] <= end for s in spans.values())
    assert {r["proc"] for r in records} == {proc["proc"]}
    # The variant's own work: its fit and its evaluation, not the run around them.
    assert variant_work(records, "v1") == pytest.approx(
        sum(spans[k]["t1"] - spans[k]["t0"] for k in ("v1: fit", "v1: evaluate")))


def test_an_unknown_kind_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv(trace.TRACE_ENV, str(tmp_path / "t.jsonl"))
    with pytest.raises(ValueError, match="trace kind 'cpu'"):
        with trace.span("x", "cpu"):
            pass


def _sampled(spans, lo, hi, step=1e-3):
    """The oracle: which span is innermost at the middle of each small step, summed."""
    out: dict = {}
    t = lo + step / 2
    while t < hi:
        open_ = [s for s in spans if s["t0"] <= t <= s["t1"]]
        key = (max(open_, key=lambda s: (s["t0"], -s["t1"]))["span"].partition(": ")[2],
               max(open_, key=lambda s: (s["t0"], -s["t1"]))["kind"]) if open_ else ("other", "")
        out[key] = out.get(key, 0.0) + step
        t += step
    return out


@pytest.mark.parametrize("seed", range(5))
def test_every_instant_goes_to_the_innermost_open_span(seed):
    rnd = random.Random(seed)
    spans = []
    for i in range(6):  # nested or disjoint, as a process's `with` blocks are
        a = rnd.uniform(0, 1.5)
        b = a + rnd.uniform(0.05, 0.5)
        spans.append({"span": f"s: p{i}", "kind": rnd.choice(trace.KINDS), "t0": a, "t1": b})
        if rnd.random() < 0.5:
            c = rnd.uniform(a, b)
            spans.append({"span": f"s: q{i}", "kind": "compute", "t0": c,
                          "t1": rnd.uniform(c, b)})
    got = innermost(spans, 0.0, 2.0)
    want = _sampled(spans, 0.0, 2.0)
    for k in set(got) | set(want):
        assert got.get(k, 0.0) == pytest.approx(want.get(k, 0.0), abs=0.01), k
    assert sum(got.values()) == pytest.approx(2.0)


def test_the_phase_table_splits_the_wall_time_of_sequential_stages():
    t0 = 1000.0
    records = [
        {"proc": 1, "role": "stage", "stage": "train", "start": 1001.0, "main": 1003.0},
        {"proc": 1, "span": "linreg: fit", "kind": "compute", "t0": 1003.5, "t1": 1004.0},
        {"proc": 1, "end": 1005.0},
        {"proc": 2, "role": "evaluator", "stage": "train", "start": 1003.2, "main": 1004.2},
        {"proc": 2, "span": "linreg: evaluate", "kind": "compute", "t0": 1004.2, "t1": 1004.6},
        {"proc": 3, "role": "stage", "stage": "report", "start": 1005.5, "main": 1006.5},
        {"proc": 3, "span": "report: render", "kind": "compute", "t0": 1006.5, "t1": 1007.0},
        {"proc": 3, "end": 1007.0},
    ]
    table = phase_table(records, t0, 1008.0)
    rows = {(r["who"], r["phase"]): r for r in table["rows"]}
    assert rows[("dvc", "before the first stage")]["seconds"] == pytest.approx(1.0)
    assert rows[("dvc", "between stages")]["seconds"] == pytest.approx(0.5)
    assert rows[("dvc", "after the last stage")]["seconds"] == pytest.approx(1.0)
    assert rows[("train", "interpreter start and imports")]["seconds"] == pytest.approx(2.0)
    assert rows[("train", "fit")]["subjects"] == ["linreg"]
    assert rows[("train", "other")]["seconds"] == pytest.approx(1.5)
    assert rows[("train evaluator", "evaluate")]["beside"] is True
    # The path is the wall time; compute counts the worker's evaluation beside it too.
    assert table["path_s"] == pytest.approx(table["total_s"]) == pytest.approx(8.0)
    assert table["compute_s"] == pytest.approx(0.5 + 0.4 + 0.5)
    assert table["path_compute_s"] == pytest.approx(0.5 + 0.5)


def test_the_bench_rows_state_each_ratio_against_its_goal():
    from benchmarks.report import GOALS, phase_lines, rows

    def sp(*xs):
        return {"median_s": sorted(xs)[(len(xs) - 1) // 2], "min_s": min(xs), "max_s": max(xs),
                "runs": len(xs)}

    table = phase_table([
        {"proc": 1, "role": "stage", "stage": "train", "start": 1.0, "main": 2.0},
        {"proc": 1, "span": "linreg: fit", "kind": "compute", "t0": 2.0, "t1": 2.5},
        {"proc": 1, "end": 3.0}], 0.0, 3.5)
    r = {"repro_clean": sp(100.0), "clean_compute": sp(80.0), "clean_over_compute": sp(1.25),
         "repro_noop": sp(2.0, 2.2), "edit_loop_s": {"linreg": sp(9.0), "mlp_adam": sp(12.0)},
         "edit_repro_s": {"linreg": sp(7.0)}, "quick_over_noop": sp(4.5),
         "slow_variant_work": sp(3.0), "slow_rest_over_noop": sp(3.5),
         "phases": {"clean": table, "quick": table}}
    text = {name.strip(): (value, goal) for name, value, _, goal in rows({"repro": r})}
    assert text["linreg edit (dvc exp run) / no-op dvc repro"] == (
        "4.5x", f"<= {GOALS['quick_over_noop']:g}x")
    assert text["clean dvc repro / the stages' own compute"] == ("1.25x", "<= 1.3x")
    lines = phase_lines(r["phases"])
    assert lines[0].count("|") == 3 + 2 + 1  # process, phase, kind and the two commands
    assert any("| train | fit | compute | 0.50 | 0.50 |" == ln for ln in lines)
    assert any(ln.startswith("| **wall clock**") and ln.endswith("| 3.50 | 3.50 |")
               for ln in lines)
    assert json.dumps(r)  # what bench.json holds
