"""DVC stage `prepare`: split and scale every dataset from --raw into --out."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlbasics import trace
from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params
from dlbasics.data.prepared import prepare_all
from dlbasics.io import atomic_directory


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--raw", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="prepared data directory (a DVC output)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    with trace.span("prepare", "compute"), atomic_directory(args.out) as tmp:
        manifests = prepare_all(params, args.raw, tmp)
    for name, man in manifests.items():
        print(f"prepare: {name} {man['sizes']} scale={man['scale']}")


if __name__ == "__main__":
    exit_fast(run_stage(main))
