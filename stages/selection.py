"""DVC stage `select` (a file named select.py would shadow the stdlib module): K-fold grid
search of params.select; the best configuration refitted."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlbasics.cli import exit_fast, run_stage
from dlbasics.config import ConfigError, load_params
from dlbasics.search import select


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", type=Path, required=True, help="prepared data root")
    ap.add_argument("--out", type=Path, required=True, help="refitted model directory")
    ap.add_argument("--table", type=Path, required=True, help="every configuration and fold")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    if params.select is None:
        raise ConfigError(f"{args.params}: select: expected a grid search section, found nothing")
    info = select(params, args.data, args.out, args.table)
    best = info["chosen"]
    print(f"select: chosen {best['values']} "
          f"({', '.join(f'{k}={v:.4f}' for k, v in best.items() if k.endswith(('_mean', '_std')))})")


if __name__ == "__main__":
    exit_fast(run_stage(main))
