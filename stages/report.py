"""DVC stage `report`: the comparison report of every variant, from DVC outputs only."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dlbasics.cli import run_stage
from dlbasics.config import load_params
from dlbasics.io import write_text_atomic
from dlbasics.html_report import package_versions, render_html
from dlbasics.reporting import render_markdown


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--series", type=Path, required=True)
    ap.add_argument("--figures", type=Path, required=True, help="image grids directory")
    ap.add_argument("--selection", type=Path, required=True, help="grid search table")
    ap.add_argument("--details", type=Path, required=True, help="classifier details JSON")
    ap.add_argument("--history", type=Path, required=True, help="per-variant histories")
    ap.add_argument("--manifests", type=Path, required=True, help="prepared data root")
    ap.add_argument("--html", type=Path, required=True, help="self-contained HTML report")
    ap.add_argument("--out", type=Path, required=True, help="report Markdown")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    metrics = json.loads(args.metrics.read_text())
    series = json.loads(args.series.read_text())
    figures = sorted(p.name for p in args.figures.glob("*.png")) if args.figures.is_dir() else []
    links = {f: os.path.relpath(args.figures / f, args.out.parent) for f in figures}
    selection = json.loads(args.selection.read_text()) if args.selection.exists() else []
    details = json.loads(args.details.read_text()) if args.details.exists() else {}
    write_text_atomic(args.out, render_markdown(params, metrics, series, links, selection,
                                                details))
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
    write_text_atomic(args.html, render_html(params, metrics, series, selection, details,
                                             histories, pngs, environment, manifests=manifests,
                                             curves=drawn["curves"],
                                             confusions=drawn["confusion"]))
    log_report_run(params, [args.html, args.out, args.metrics])


def log_report_run(params, files: list[Path]) -> None:
    """One MLflow run named `report` (tag kind=report) holding the report files as artifacts,
    beside the variants' runs; nothing about it goes into the DVC outputs."""
    from dlbasics import tracking

    with tracking.run(params.tracking.experiment, "report", {"kind": "report"}):
        import mlflow

        for path in files:
            mlflow.log_artifact(str(path))


if __name__ == "__main__":
    sys.exit(run_stage(main))
