"""dvc.yaml's top-level plots list every variant, so `dvc plots show` overlays all of them; they
are derived from params.train (dlbasics.dvc.plots, `make deps`)."""

from __future__ import annotations

import yaml
from conftest import REPO

from dlbasics.config.datasets import DATASET_TASKS
from dlbasics.config.loading import load_params


def _plots() -> dict[str, dict]:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    return {name: spec for entry in dvc["plots"] for name, spec in entry.items()}


def test_every_variant_has_its_curves_and_every_classifier_its_confusion_matrix():
    params = load_params(REPO / "params.yaml")
    plots = _plots()
    history = {f"reports/history/{n}.json" for n in params.train}
    assert set(plots["train_loss"]["y"]) == history
    assert set(plots["test_loss"]["y"]) == history
    classifiers = {
        n for n, s in params.train.items()
        if DATASET_TASKS[params.data[s.dataset].kind] in ("classification", "binary")
    }
    # The multi-class sets with a validation split here: the image sets (the digits, and the
    # digits with rare classes).
    image = {n for n, s in params.train.items()
             if params.data[s.dataset].kind in ("digits", "mnist", "fashion_mnist")}
    assert set(plots["val_accuracy"]["y"]) == {f"reports/history/{n}.json" for n in image}
    assert plots["confusion"]["template"] == "confusion"
    assert set(plots["confusion"]["y"]) == {f"reports/predictions/{n}.json" for n in classifiers}


def test_the_plots_are_what_params_gives_and_a_new_variant_joins_them(tmp_path):
    from dlbasics.dvc import plots as dvcplots

    assert dvcplots.check(REPO) == []
    # A new classifier in a copy of params: the check names the stale lists, and writing
    # them adds its curves and its confusion matrix (the rest of dvc.yaml unchanged).
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["mlp_wide"] = {**params["train"]["mlp"], "model": {
        **params["train"]["mlp"]["model"], "hidden": [512]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    assert set(dvcplots.check(tmp_path)) == {
        f"plots.{k}: differs from params.train"
        for k in ("train_loss", "val_accuracy", "test_loss", "confusion")}
    assert dvcplots.write(tmp_path) is True
    assert dvcplots.check(tmp_path) == []
    written = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    plots = {k: v for entry in written["plots"] for k, v in entry.items()}
    assert plots["confusion"]["y"]["reports/predictions/mlp_wide.json"] == "predicted"
    assert plots["val_accuracy"]["y"]["reports/history/mlp_wide.json"] == "val_accuracy"
    assert written["stages"] == yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
