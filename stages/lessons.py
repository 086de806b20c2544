"""DVC stage `lessons`: run the lessons of `lessons:` in params (mechanisms shown by computing
them: numerical differentiation, gradient descent, symmetry, gradient flow, the preliminaries)
and write their results for the report; each lesson's numbers also go to one MLflow run."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlbasics.cli import exit_fast, run_stage
from dlbasics.config.loading import load_params


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--data", type=Path, required=True, help="prepared data root")
    ap.add_argument("--out", type=Path, required=True,
                    help="lessons directory (written: lessons.json and the figures)")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    from dlbasics.lessons import run_tracked
    from dlbasics.runtime import configure

    configure(params.runtime)  # the thread count fixes the order of float reductions
    results = run_tracked(params, args.data, args.out)
    held = sum(r.holds for r in results.values())
    print(f"lessons: {len(results)} run, {held} hold as their source states them")


if __name__ == "__main__":
    exit_fast(run_stage(main))
