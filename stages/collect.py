"""DVC stage `collect`: every model's evaluation (made beside its weights by `train` and
`select`) gathered into the metrics file, the classifier details, the named series, the
per-row predictions and the figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlbasics.cli import run_stage
from dlbasics.collect import collect
from dlbasics.config import load_params


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--models", type=Path, required=True, help="models root (train stage)")
    ap.add_argument("--select", type=Path, required=True, help="the select stage's model")
    ap.add_argument("--out", type=Path, required=True, help="metrics JSON")
    ap.add_argument("--details", type=Path, required=True, help="classifier details JSON")
    ap.add_argument("--series", type=Path, required=True, help="named series JSON")
    ap.add_argument("--figures", type=Path, required=True, help="figures directory")
    ap.add_argument("--predictions", type=Path, required=True,
                    help="per-row test predictions of each classifier (confusion plots)")
    ap.add_argument("--history", type=Path, required=True,
                    help="per-epoch histories, one JSON per variant (plots)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    metrics = collect(params, args.models, args.select, args.out, args.details, args.series,
                      args.figures, args.predictions, args.history)
    print(f"collect: {len(metrics)} models into {args.out}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
