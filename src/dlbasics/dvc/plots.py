"""dvc.yaml's top-level plots, derived from params.yaml: `dvc plots show` overlays every
variant's curves, `dvc plots diff` compares them across experiments.

DVC takes each overlaid file by name (a directory would give one plot per file), so the lists
are generated from params.train here (`make deps` writes them) and checked by a test: a new
variant needs no hand edit of dvc.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HISTORY = "reports/history/{}.json"
PREDICTIONS = "reports/predictions/{}.json"


def overlays(params) -> list[dict[str, Any]]:
    """The top-level plots for `params`: train and test loss of every variant, validation
    accuracy of every multi-class classifier with a validation split, the test confusion
    matrix of every single-label classifier."""
    from dlbasics.config.datasets import DATASET_TASKS

    def task(name: str) -> str:
        return DATASET_TASKS[params.data[params.train[name].dataset].kind]

    def has_val(name: str) -> bool:
        prep = params.prepare[params.train[name].dataset]
        return bool(prep.val_fraction or prep.n_val)

    names = list(params.train)
    validated = [n for n in names if task(n) == "classification" and has_val(n)]
    labelled = [n for n in names if task(n) in ("classification", "binary")]

    def curves(field: str, among: list[str]) -> dict[str, Any]:
        return {field: {"x": "epoch", "y": {HISTORY.format(n): field for n in among}}}

    return [
        curves("train_loss", names),
        curves("val_accuracy", validated),
        curves("test_loss", names),
        {"confusion": {"template": "confusion", "x": "actual",
                       "y": {PREDICTIONS.format(n): "predicted" for n in labelled}}},
    ]


def _load(repo: Path, dvc_yaml: Path):
    from dlbasics.config.loading import load_params

    return load_params(repo / "params.yaml"), dvc_yaml


def check(repo: Path, dvc_yaml: Path | None = None) -> list[str]:
    """One line per top-level plot of dvc.yaml that differs from what params gives."""
    import yaml

    params, path = _load(repo, dvc_yaml or repo / "dvc.yaml")
    have = {k: v for entry in yaml.safe_load(path.read_text()).get("plots") or []
            for k, v in entry.items()}
    want = {k: v for entry in overlays(params) for k, v in entry.items()}
    return [f"plots.{k}: {'missing' if k not in have else 'differs from params.train'}"
            for k in want if have.get(k) != want[k]] + [
        f"plots.{k}: not derived from params" for k in have if k not in want]


def write(repo: Path, dvc_yaml: Path | None = None) -> bool:
    """Rewrite dvc.yaml's top-level plots from params (the rest of the file, comments
    included, kept); True when the file changed."""
    from dlbasics.dvc.codedeps import rewrite_yaml

    params, path = _load(repo, dvc_yaml or repo / "dvc.yaml")
    return rewrite_yaml(path, lambda doc: doc.__setitem__("plots", overlays(params)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="check or rewrite dvc.yaml's top-level plots")
    ap.add_argument("dvc_yaml", type=Path, nargs="?", default=Path("dvc.yaml"))
    ap.add_argument("--write", action="store_true", help="rewrite them from params.yaml")
    args = ap.parse_args(argv)
    repo = args.dvc_yaml.resolve().parent
    if args.write:
        changed = write(repo, args.dvc_yaml)
        print(f"{args.dvc_yaml}: {'plots rewritten' if changed else 'plots already up to date'}")
        return 0
    problems = check(repo, args.dvc_yaml)
    for line in problems:
        print(f"{args.dvc_yaml}: {line}", file=sys.stderr)
    if problems:
        print(f"{args.dvc_yaml}: run `make deps` to derive them from params.yaml", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
