"""DVC stage `train`: train and evaluate the variants of `train:` in params (those not already
up to date; see dlbasics.dvc.changes)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params
from dlbasics.pipeline.train import Evaluator, train_all


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", type=Path, required=True, help="prepared data root")
    ap.add_argument("--out", type=Path, required=True, help="models root (a DVC output)")
    ap.add_argument("--variant", action="append", default=None,
                    help="train only this variant (repeatable); by hand, not from dvc.yaml")
    ap.add_argument("--verbose", action="store_true",
                    help="one line per epoch, as DLBASICS_VERBOSE=1 (default: a bar on a "
                         "terminal, one line per variant in a log)")
    args = ap.parse_args(argv)
    if args.verbose:
        # Imported only here: the stage's default path imports torch later, beside its workers.
        from dlbasics.learn.training import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"  # read by the training code, here and in worker processes
    params = load_params(args.params)
    # The evaluation worker first: its imports (torch, scikit-learn, matplotlib, MLflow) run on
    # the second core while this process imports torch and checks what is up to date. DVC runs
    # this stage when something changed, so it is rarely started for nothing (then it is
    # stopped unused).
    status = train_all(params, args.data, args.out, only=args.variant,
                       evaluator=Evaluator(params))
    counts = {s: sum(v == s for v in status.values()) for s in ("trained", "up to date",
                                                                 "evaluated")}
    print(f"train: {counts['trained']} trained, {counts['up to date']} up to date, "
          f"{counts['evaluated']} evaluated again")


if __name__ == "__main__":
    exit_fast(run_stage(main))
