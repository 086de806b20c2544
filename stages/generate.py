"""DVC stage `generate`: write every dataset under `data:` in params into --out."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlbasics import trace
from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params
from dlbasics.data.sources import generate_all
from dlbasics.io import atomic_directory


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, required=True, help="raw data directory (a DVC output)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with trace.span("generate", "compute"), atomic_directory(args.out) as tmp:
        names = generate_all(params, tmp)
    print(f"generate: {', '.join(names)}")


if __name__ == "__main__":
    exit_fast(run_stage(main))
