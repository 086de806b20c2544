"""DVC stage `evaluate`: test metrics of every variant into --out (a DVC metrics file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlbasics.cli import run_stage
from dlbasics.config import load_params
from dlbasics.evaluation import evaluate_all, log_test_metrics
from dlbasics.io import write_json_atomic


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", type=Path, required=True, help="prepared data root")
    ap.add_argument("--models", type=Path, required=True, help="models root")
    ap.add_argument("--out", type=Path, required=True, help="metrics JSON")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    results = evaluate_all(params, args.data, args.models)
    write_json_atomic(args.out, results)
    for name in log_test_metrics(params, args.models, results):
        print(f"evaluate: no MLflow run holds the weights of {name}; its test metrics are only "
              f"in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_stage(main))
