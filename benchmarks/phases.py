"""A traced command's seconds, phase by phase: read back the DLBASICS_TRACE file that the stage
processes wrote (dlbasics.trace) beside the command's own start and end.

Every second of the command's wall time on its critical path lands in one row:
  - `dvc` rows: before the first stage process starts (DVC's import, the experiment's
    bookkeeping, checking the stages it skips), between two stage processes (the previous
    stage's outputs hashed and its lock entry written, the next stage checked), after the last
    one (the lock, the experiment's commit);
  - per stage: the interpreter's start and the stage script's imports (from the process's start
    to its `main`), then each of its spans, an instant going to the innermost span open then,
    named by what it does (`fit`, `MLflow run`, `wait for its evaluation` ...), and `other`
    for what no span covers (imports inside main, reading params, change checks);
Processes beside a stage (the evaluation worker, the report's MLflow child) have rows marked
`beside`: their seconds overlap the stage's and are not part of the total; a stage waiting for
one shows as its `wait` rows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def read_trace(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _what(span_name: str) -> tuple[str, str]:
    """("linreg", "fit") from "linreg: fit"; ("", name) without a subject."""
    subject, sep, what = span_name.partition(": ")
    return (subject, what) if sep else ("", span_name)


def innermost(spans: list[dict[str, Any]], lo: float, hi: float) -> dict[tuple[str, str], float]:
    """Seconds of [lo, hi] attributed to (what, kind) of the innermost span open at each instant
    (the latest started; nested spans start later), and ("other", "") to none."""
    cuts = sorted({lo, hi, *(min(max(s["t0"], lo), hi) for s in spans),
                   *(min(max(s["t1"], lo), hi) for s in spans)})
    out: dict[tuple[str, str], float] = defaultdict(float)
    for a, b in zip(cuts, cuts[1:]):
        if b <= a:
            continue
        open_ = [s for s in spans if s["t0"] <= a and s["t1"] >= b]
        if open_:
            s = max(open_, key=lambda s: (s["t0"], -s["t1"]))
            out[(_what(s["span"])[1], s["kind"])] += b - a
        else:
            out[("other", "")] += b - a
    return dict(out)


def phase_table(records: list[dict[str, Any]], t_start: float, t_end: float
                ) -> dict[str, Any]:
    """{"rows": [{"who", "phase", "kind", "seconds", "beside", "subjects"}], "total_s", "path_s",
    "compute_s" (every process's compute spans), "path_compute_s" (the stage processes' only)}
    for one command run from t_start to t_end (time.time()) whose stage processes wrote
    `records`."""
    procs: dict[int, dict[str, Any]] = {}
    spans: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if "span" in r:
            spans[r["proc"]].append(r)
        elif "role" in r:
            procs[r["proc"]] = dict(r)
        elif "end" in r:
            procs.setdefault(r["proc"], {})["end"] = r["end"]
    rows: list[dict[str, Any]] = []
    compute = {False: 0.0, True: 0.0}  # on the path, beside it
    stages = sorted((p for p in procs.values() if p.get("role") == "stage"),
                    key=lambda p: p.get("start") or p["main"])

    def add(who, phase, kind, seconds, beside=False, subjects=()):
        rows.append({"who": who, "phase": phase, "kind": kind, "seconds": seconds,
                     "beside": beside, "subjects": sorted(set(subjects))})

    def process_rows(pid: int, p: dict[str, Any], who: str, beside: bool) -> float:
        start = p.get("start") or p["main"]
        ss = spans.get(pid, [])
        end = p.get("end") or max([s["t1"] for s in ss] + [p["main"]])
        add(who, "interpreter start and imports", "start", p["main"] - start, beside)
        for (what, kind), secs in sorted(innermost(ss, p["main"], end).items(),
                                         key=lambda kv: -kv[1]):
            subjects = [_what(s["span"])[0] for s in ss if _what(s["span"])[1] == what]
            add(who, what, kind or "other", secs, beside, [x for x in subjects if x])
            if kind == "compute":
                compute[beside] += secs
        return end

    prev_end = t_start
    for i, p in enumerate(stages):
        start = p.get("start") or p["main"]
        add("dvc", "before the first stage" if i == 0 else "between stages", "dvc",
            start - prev_end)
        prev_end = process_rows(p["proc"], p, p.get("stage") or "stage", False)
    add("dvc", "after the last stage" if stages else "whole command", "dvc", t_end - prev_end)
    for pid, p in sorted(procs.items()):
        if p.get("role") not in (None, "stage"):
            who = f"{p.get('stage') or ''} {p['role']}".strip()
            process_rows(pid, p, who, True)
    # Rows of one phase in several processes of the same stage (a foreach's) are merged.
    merged: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = (r["who"], r["phase"], r["kind"], r["beside"])
        if key in merged:
            merged[key]["seconds"] += r["seconds"]
            merged[key]["subjects"] = sorted(set(merged[key]["subjects"]) | set(r["subjects"]))
        else:
            merged[key] = r
    path_s = sum(r["seconds"] for r in merged.values() if not r["beside"])
    return {"rows": list(merged.values()), "total_s": t_end - t_start, "path_s": path_s,
            "compute_s": compute[False] + compute[True], "path_compute_s": compute[False]}


def variant_work(records: list[dict[str, Any]], variant: str) -> float:
    """Seconds of variant `variant`'s own fit and evaluation spans (in any process)."""
    return sum(r["t1"] - r["t0"] for r in records
               if "span" in r and _what(r["span"]) in ((variant, "fit"), (variant, "evaluate")))
