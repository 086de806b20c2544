"""DVC stage `select@NAME` (a file named select.py would shadow the stdlib module): one named
K-fold search of params.select.searches; the best configuration refitted."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params
from dlbasics.errors import ConfigError
from dlbasics.pipeline.select import select


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--search", required=True, help="a name under select.searches")
    ap.add_argument("--data", type=Path, required=True, help="prepared data root")
    ap.add_argument("--out", type=Path, required=True, help="refitted model directory")
    ap.add_argument("--table", type=Path, required=True, help="every configuration and fold")
    ap.add_argument("--verbose", action="store_true",
                    help="one line per epoch, as DLBASICS_VERBOSE=1 (default: a bar on a "
                         "terminal, one line per variant in a log)")
    args = ap.parse_args(argv)
    if args.verbose:
        from dlbasics.learn.training import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"  # read by the training code, here and in worker processes
    params = load_params(args.params)
    searches = params.select.searches if params.select is not None else {}
    if args.search not in searches:
        raise ConfigError(f"{args.params}: select.searches.{args.search}: expected a search of "
                          f"that name, found {sorted(searches) or 'no searches'}; add it or run "
                          f"`dvc repro` to drop the stage")
    info = select(params, args.search, args.data, args.out, args.table)
    best = info["chosen"]
    scores = ", ".join(f"{k}={v:.4f}" for k, v in best.items() if k.endswith(("_mean", "_std")))
    print(f"select@{args.search}: chosen {info['chosen_words']} ({scores}; "
          f"paths {info['paths']})")


if __name__ == "__main__":
    exit_fast(run_stage(main))
