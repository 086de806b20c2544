"""DVC stage `submit`: the house-price variant with the best K-fold log-RMSE, refitted on every
training row, predicts the test table; writes submission.csv (Id, SalePrice) and the choice."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--raw", type=Path, required=True, help="raw data root (generate's output)")
    ap.add_argument("--models", type=Path, required=True, help="trained variants (train's output)")
    ap.add_argument("--out", type=Path, required=True,
                    help="submission directory (written: submission.csv, submission.json)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    from dlbasics.pipeline.submit import write_submission
    from dlbasics.runtime import configure

    configure(params.runtime)  # the thread count fixes the order of float reductions
    from dlbasics import trace

    with trace.span("submit: choose, refit, predict", "compute"):
        s = write_submission(params, args.raw, args.models, args.out)
    print(f"submit: {s['chosen']} chosen by K-fold log-RMSE, {s['rows']} rows written")


if __name__ == "__main__":
    exit_fast(run_stage(main))
