"""dvc.yaml's parts derived from params.yaml: the top-level plots (`dvc plots show` overlays
every variant's curves, `dvc plots diff` compares them across experiments) and the submit
stage's model deps.

DVC takes each overlaid file by name (a directory would give one plot per file), so the lists
are generated from params.train here (`make deps` writes them) and checked by a test: a new
variant needs no hand edit of dvc.yaml.

The submit stage reads the trained files of the house-prices variants scored by K-fold (the
candidates) only, so it depends on their directories, not on all of data/models: an edit of any
other variant does not re-run it. The candidates under every profile of params.yaml are declared
(a profile may change them). The report stage checks that the submission chose among the
variants params.yaml has now, so a new candidate without `make deps` stops it with that advice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HISTORY = "reports/history/{}.json"
MODELS = "data/models"
SUBMIT = "submit"
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


def submit_model_deps(repo: Path) -> list[str]:
    """data/models/<variant> of each submission candidate under the file's profile and under
    every profile it defines, in params.train's order."""
    import yaml

    from dlbasics.config.loading import parse_params
    from dlbasics.config.params import submission_candidates

    raw = yaml.safe_load((repo / "params.yaml").read_text())
    names: list[str] = []
    for profile in [raw.get("profile"), *(raw.get("profiles") or {})]:
        for name in submission_candidates(parse_params({**raw, "profile": profile}))[1]:
            if name not in names:
                names.append(name)
    order = list(raw.get("train") or {})
    return [f"{MODELS}/{n}" for n in sorted(names, key=lambda n: (order.index(n)
                                                                 if n in order else len(order)))]


def _model_deps(deps: list) -> list[str]:
    return [d for d in deps if isinstance(d, str) and (d == MODELS or d.startswith(MODELS + "/"))]


def check(repo: Path, dvc_yaml: Path | None = None) -> list[str]:
    """One line per part of dvc.yaml derived from params that differs from what params gives:
    each top-level plot, the submit stage's model deps."""
    import yaml

    params, path = _load(repo, dvc_yaml or repo / "dvc.yaml")
    doc = yaml.safe_load(path.read_text())
    have = {k: v for entry in doc.get("plots") or [] for k, v in entry.items()}
    want = {k: v for entry in overlays(params) for k, v in entry.items()}
    problems = [f"plots.{k}: {'missing' if k not in have else 'differs from params.train'}"
                for k in want if have.get(k) != want[k]] + [
        f"plots.{k}: not derived from params" for k in have if k not in want]
    submit = (doc.get("stages") or {}).get(SUBMIT)
    if submit is not None:
        declared, wanted = _model_deps(submit.get("deps") or []), submit_model_deps(repo)
        if declared != wanted:
            problems.append(f"stages.{SUBMIT}.deps: declares {declared or 'no model'} but the "
                            f"submission's candidates are {wanted or 'none'}")
    return problems


def write(repo: Path, dvc_yaml: Path | None = None) -> bool:
    """Rewrite dvc.yaml's top-level plots and the submit stage's model deps from params (the
    rest of the file, comments included, kept); True when the file changed."""
    from dlbasics.dvc.codedeps import rewrite_yaml

    params, path = _load(repo, dvc_yaml or repo / "dvc.yaml")
    wanted = submit_model_deps(repo)

    def edit(doc) -> None:
        doc["plots"] = overlays(params)
        submit = (doc.get("stages") or {}).get(SUBMIT)
        if submit is not None and submit.get("deps") is not None:
            deps = submit["deps"]
            keep = [d for d in deps if d not in _model_deps(deps)]
            deps.clear()
            deps.extend([*keep, *wanted])

    return rewrite_yaml(path, edit)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="check or rewrite dvc.yaml's top-level plots")
    ap.add_argument("dvc_yaml", type=Path, nargs="?", default=Path("dvc.yaml"))
    ap.add_argument("--write", action="store_true", help="rewrite them from params.yaml")
    args = ap.parse_args(argv)
    repo = args.dvc_yaml.resolve().parent
    if args.write:
        changed = write(repo, args.dvc_yaml)
        what = "rewritten" if changed else "already up to date"
        print(f"{args.dvc_yaml}: plots and submit deps {what}")
        return 0
    problems = check(repo, args.dvc_yaml)
    for line in problems:
        print(f"{args.dvc_yaml}: {line}", file=sys.stderr)
    if problems:
        print(f"{args.dvc_yaml}: run `make deps` to derive them from params.yaml", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
