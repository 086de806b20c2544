"""dvc.yaml's top-level plots list every variant, so `dvc plots show` overlays all of them."""

from __future__ import annotations

import yaml

from conftest import REPO
from dlbasics.config import DATASET_TASKS, load_params


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
    image = {n for n, s in params.train.items() if s.dataset == "images"}
    assert set(plots["val_accuracy"]["y"]) == {f"reports/history/{n}.json" for n in image}
    assert plots["confusion"]["template"] == "confusion"
    assert set(plots["confusion"]["y"]) == {f"reports/predictions/{n}.json" for n in classifiers}
