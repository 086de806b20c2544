"""DVC stage `train@<variant>`: train one variant of `train:` in params."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlbasics.cli import run_stage
from dlbasics.config import ConfigError, load_params
from dlbasics.experiment import train_variant


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--data", type=Path, required=True, help="this variant's prepared dataset")
    ap.add_argument("--out", type=Path, required=True, help="model directory (a DVC output)")
    ap.add_argument("--history", type=Path, required=True, help="per-epoch history JSON (plots)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    if args.variant not in params.train:
        raise ConfigError(
            f"{args.params}: train.{args.variant}: no such variant; have {sorted(params.train)}"
        )
    info = train_variant(params, args.variant, args.data, args.out, args.history)
    print(f"train@{args.variant}: {info['final']}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
