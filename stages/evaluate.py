"""DVC stage `evaluate`: metrics of every variant (a DVC metrics file), classifier details and
the named series; then the variants' MLflow runs get their test metrics and logged models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlbasics.cli import run_stage
from dlbasics.config import load_params
from dlbasics.evaluation import evaluate_all, finish_runs, series_table, write_predictions
from dlbasics.io import atomic_directory, write_json_atomic


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", type=Path, required=True, help="prepared data root")
    ap.add_argument("--models", type=Path, required=True, help="models root (train stage)")
    ap.add_argument("--select", type=Path, default=None,
                    help="the select stage's refitted model (default: select beside --models)")
    ap.add_argument("--out", type=Path, required=True, help="metrics JSON")
    ap.add_argument("--details", type=Path, required=True, help="classifier details JSON")
    ap.add_argument("--series", type=Path, required=True, help="named series JSON")
    ap.add_argument("--figures", type=Path, required=True, help="image grids directory")
    ap.add_argument("--predictions", type=Path, required=True,
                    help="per-row test predictions of each classifier (confusion plots)")
    ap.add_argument("--history", type=Path, default=None,
                    help="per-variant histories (learning curves for the MLflow runs)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with atomic_directory(args.figures) as figures_dir:
        results, details = evaluate_all(params, args.data, args.models, figures_dir, args.select)
    with atomic_directory(args.predictions) as pred_dir:
        details = write_predictions(details, pred_dir)
    write_json_atomic(args.out, results)
    write_json_atomic(args.details, details)
    write_json_atomic(args.series, series_table(params, results))
    for name in finish_runs(params, args.models, results, args.data, details, args.history,
                            args.figures, args.select):
        print(f"evaluate: no MLflow run holds the weights of {name}; its metrics are only "
              f"in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_stage(main))
