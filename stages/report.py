"""DVC stage `report`: every model's evaluation (made beside its weights by `train` and
`select`) gathered into the metrics file, the classifier details, the named series, the per-row
predictions, the histories and the figures; then the comparison report, from those files."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dlbasics import trace
from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params
from dlbasics.io import write_text_atomic
from dlbasics.report.collect import check_submission, collect, read_json, search_names
from dlbasics.report.content import package_versions
from dlbasics.report.html import render_html
from dlbasics.report.markdown import render_markdown
from dlbasics.tracking import runs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", type=Path, required=True, help="models root (train stage)")
    ap.add_argument("--select", type=Path, required=True,
                    help="root of the select@NAME stages' models (one directory per search)")
    ap.add_argument("--manifests", type=Path, required=True, help="prepared data root")
    ap.add_argument("--selection", type=Path, required=True,
                    help="directory of the searches' tables (NAME.json)")
    ap.add_argument("--metrics", type=Path, required=True,
                    help="every metric of every model, JSON (written)")
    ap.add_argument("--scores", type=Path, required=True,
                    help="the primary test metric of every model, JSON: DVC's metrics file "
                         "(written)")
    ap.add_argument("--details", type=Path, required=True,
                    help="classifier details JSON (written)")
    ap.add_argument("--series", type=Path, required=True, help="named series JSON (written)")
    ap.add_argument("--figures", type=Path, required=True, help="figures directory (written)")
    ap.add_argument("--predictions", type=Path, required=True,
                    help="per-row test predictions of each classifier, for confusion plots "
                         "(written)")
    ap.add_argument("--history", type=Path, required=True,
                    help="per-epoch histories, one JSON per variant, for plots (written)")
    ap.add_argument("--lessons", type=Path, required=True,
                    help="the lessons stage's directory (lessons.json and figures)")
    ap.add_argument("--submission", type=Path, default=None,
                    help="the submit stage's directory (submission.json: the choice)")
    ap.add_argument("--html", type=Path, required=True, help="self-contained HTML report")
    ap.add_argument("--out", type=Path, required=True, help="report Markdown")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    # One MLflow run named `report` (tag kind=report) will hold the report files, beside the
    # variants' runs; a child process opens the store while this one renders. A server that
    # does not answer stops the stage first, before anything is written.
    runs.check_reachable(runs.tracking_uri())
    submission = read_submission(args.submission)
    if submission is not None:  # checked before anything is written
        check_submission(params, submission, args.submission / "submission.json")
    aside = runs.RunAside(params.tracking.experiment, "report", {"kind": "report"})
    try:
        with trace.span("report: collect and draw", "compute"):
            metrics = collect(params, args.models, args.select, args.metrics, args.details,
                              args.series, args.figures, args.predictions, args.history,
                              args.scores)
        print(f"report: {len(metrics)} models into {args.metrics}")
        with trace.span("report: render", "compute"):
            render(args, params, submission)
    except BaseException:
        aside.cancel()
        raise
    with trace.span("report: wait for its MLflow run", "wait"):
        aside.log_artifacts([args.html, args.out, args.metrics])


def read_submission(where: Path | None) -> dict | None:
    """The submit stage's choice (submission.json under `where`), or None without one."""
    path = where / "submission.json" if where is not None else None
    return read_json(path) if path is not None and path.exists() else None


def render(args, params, submission: dict | None) -> None:
    """reports/report.md and reports/report.html from the DVC outputs (`submission`: the
    submit stage's choice, read_submission's)."""
    metrics = json.loads(args.metrics.read_text())
    series = json.loads(args.series.read_text())
    figures = sorted(p.name for p in args.figures.glob("*.png")) if args.figures.is_dir() else []
    links = {f: os.path.relpath(args.figures / f, args.out.parent) for f in figures}
    searches = {name: {"info": read_json(args.select / name / "model.json"),
                       "rows": read_json(args.selection / f"{name}.json")}
                for name in search_names(params)}
    details = json.loads(args.details.read_text()) if args.details.exists() else {}
    lessons = read_json(args.lessons / "lessons.json")
    lesson_pngs = {p.name: p.read_bytes() for p in sorted(args.lessons.glob("*.png"))}
    lesson_links = {f: os.path.relpath(args.lessons / f, args.out.parent) for f in lesson_pngs}
    write_text_atomic(args.out, render_markdown(params, metrics, series, links, searches,
                                                details, lessons, lesson_links, submission))
    histories = {p.stem: json.loads(p.read_text()) for p in sorted(args.history.glob("*.json"))}
    pngs = {p.name: p.read_bytes() for p in sorted(args.figures.glob("*.png"))}
    manifests = {p.parent.name: json.loads(p.read_text())
                 for p in sorted(args.manifests.glob("*/manifest.json"))}
    # Settings, not the resolved device or the commit: the report stays byte-identical
    # between clones of the same content.
    environment = {**package_versions(), "device (setting)": params.runtime.device,
                   "threads": params.runtime.threads}
    drawn = {kind: {p.stem: p.read_bytes() for p in sorted((args.figures / kind).glob("*.png"))}
             for kind in ("curves", "confusion")}
    write_text_atomic(args.html, render_html(params, metrics, series, searches, details,
                                             histories, pngs, environment, manifests=manifests,
                                             curves=drawn["curves"],
                                             confusions=drawn["confusion"], lessons=lessons,
                                             lesson_pngs=lesson_pngs, submission=submission))


if __name__ == "__main__":
    exit_fast(run_stage(main))
