"""Repeated runs over a list of seeds, and the paired comparisons the report states.

Oracles: every seed's model is re-trained independently with `fit_variant` and must match to
the byte; test scores are recomputed with scikit-learn; the intervals with scipy's
`ttest_rel` / `ttest_1samp` confidence intervals.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from scipy import stats
from sklearn.metrics import accuracy_score, root_mean_squared_error

from dlbasics.config.loading import parse_params
from dlbasics.errors import ConfigError
from dlbasics.data.prepared import load_variant_data, prepare_all
from dlbasics.data.sources import generate_all
from dlbasics.learn.models import build_model, load_state_dict, state_dict_bytes
from dlbasics.learn.training import predict
from dlbasics.pipeline.variant import fit_variant, train_variant
from dlbasics.report.content import comparison_sentences, repeat_rows
from dlbasics.report.evaluation import repeat_summary, repeated_scores
from dlbasics.report.html import render_html
from dlbasics.report.markdown import render_markdown

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
SEEDS = [0, 7, 11]  # 0 is the top-level seed: its model is the variant's own


def _raw() -> dict:
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    softmax = {**raw["train"]["softmax"], "epochs": 4, "seeds": SEEDS}
    return {
        "seed": 0,
        "runtime": {"device": "cpu", "threads": 1},
        "tracking": {"experiment": "repeats", "log_models": False},
        "data": {k: raw["data"][k] for k in ("synthetic_linear", "images")},
        "prepare": {k: raw["prepare"][k] for k in ("synthetic_linear", "images")},
        "train": {
            "linreg": {**raw["train"]["linreg"], "seeds": SEEDS},
            "softmax": softmax,
            "softmax_slow": {**softmax, "optimizer": {"name": "sgd", "lr": 0.005}},
        },
        "report": {"compare": [["softmax", "softmax_slow"]]},
    }


@pytest.fixture(scope="module")
def params():
    return parse_params(_raw(), source="test params")


@pytest.fixture(scope="module")
def trained(params, tmp_path_factory):
    root = tmp_path_factory.mktemp("repeats")
    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    store = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store)
        for key in ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
            mp.delenv(key, raising=False)
        for name in params.train:
            train_variant(params, name, root / "prepared" / params.train[name].dataset,
                          root / "models" / name)
    return root, store


def _data(params, root, name):
    return load_variant_data(params, name, root / "prepared" / params.train[name].dataset,
                             splits=("train", "val", "test"))


@pytest.mark.parametrize("name", ["linreg", "softmax"])
def test_each_seed_is_an_independent_reproducible_run(params, trained, name):
    root, _ = trained
    model_dir = root / "models" / name
    info = json.loads((model_dir / "model.json").read_text())
    assert [e["seed"] for e in info["seeds"]] == SEEDS
    final = {e["seed"]: e["final"] for e in info["seeds"]}
    blobs = {s: (model_dir / f"seed_{s}.pt").read_bytes() for s in SEEDS}
    # The top-level seed's repeat is the variant's own model.
    assert blobs[0] == (model_dir / "model.pt").read_bytes()
    # Every other seed: the same variant trained from scratch with that seed, to the byte.
    for s in SEEDS[1:]:
        model, history, _, _ = fit_variant(params.model_copy(update={"seed": s}), name,
                                           root / "prepared" / params.train[name].dataset)
        assert state_dict_bytes(model) == blobs[s], f"seed {s} is not reproducible"
        assert final[s] == history[-1]
    assert len(set(blobs.values())) == len(SEEDS), "different seeds gave the same weights"


def test_repeated_test_scores_match_scikit_learn(params, trained):
    root, _ = trained
    for name, metric in (("softmax", "accuracy"), ("linreg", "rmse")):
        data = _data(params, root, name)
        rep = repeated_scores(params, name, data, root / "models" / name)
        assert rep["seeds"] == SEEDS and rep["metric"] == metric
        info = json.loads((root / "models" / name / "model.json").read_text())
        test = data.splits["test"]
        expected = []
        for s in SEEDS:
            model = build_model(params.train[name].model, info["n_features"], info["n_outputs"],
                                torch.Generator())
            out = predict(load_state_dict(model, str(root / "models" / name / f"seed_{s}.pt")),
                          test.X).numpy()
            # In float64, as the project scores: float32 sums of ~1e-8 squared residuals
            # are off by a few parts in 1e6.
            expected.append(accuracy_score(test.y.numpy(), out.argmax(1)) if metric == "accuracy"
                            else root_mean_squared_error(test.y.double().numpy().reshape(-1),
                                                         out.astype(np.float64).reshape(-1)))
        np.testing.assert_allclose(rep["test"][metric], expected, rtol=1e-12)
        summary = repeat_summary(rep)
        assert summary[f"seeds_test_{metric}_mean"] == pytest.approx(np.mean(expected))
        assert summary[f"seeds_test_{metric}_sd"] == pytest.approx(np.std(expected, ddof=1))
        assert summary["seeds_n"] == len(SEEDS)


def test_every_seed_reaches_the_variants_mlflow_run(params, trained):
    root, store = trained
    client = mlflow.MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("repeats")
    (run,) = client.search_runs([exp.experiment_id], "tags.variant = 'softmax'")
    info = json.loads((root / "models/softmax/model.json").read_text())
    for e in info["seeds"]:
        assert run.data.metrics[f"seed_{e['seed']}/val_accuracy"] == pytest.approx(
            e["final"]["val_accuracy"])
    assert len(info["seeds"]) == len(SEEDS)
    assert run.data.params["seeds"] == str(SEEDS)


def _details(params, root) -> dict:
    details = {}
    for name in params.train:
        rep = repeated_scores(params, name, _data(params, root, name), root / "models" / name)
        details[name] = {"seeds": rep}
    return details


def test_report_states_intervals_that_scipy_agrees_with(params, trained):
    root, _ = trained
    details = _details(params, root)
    rows = {r["variant"]: r for r in repeat_rows(details)}
    acc = details["softmax"]["seeds"]["test"]["accuracy"]
    ci = stats.ttest_1samp(acc, 0.0).confidence_interval(0.95)
    assert rows["softmax"]["ci_low"] == pytest.approx(ci.low)
    assert rows["softmax"]["ci_high"] == pytest.approx(ci.high)

    (sentence,) = comparison_sentences(params, details)
    slow = details["softmax_slow"]["seeds"]["test"]["accuracy"]
    diff = stats.ttest_rel(acc, slow).confidence_interval(0.95)
    # lr 0.1 against 0.005 for 4 epochs: the faster learner wins on every seed.
    assert min(np.subtract(acc, slow)) > 0
    assert sentence.startswith("test accuracy over seeds 0, 7, 11: softmax beats softmax_slow by")
    assert f"interval {diff.low * 100:.1f} to {diff.high * 100:.1f}" in sentence
    md = render_markdown(params, {}, details=details)
    assert "## Repeated runs and paired comparisons" in md and sentence in md
    html = render_html(params, {}, details=details)
    assert '<h2 id="repeats">' in html and "softmax beats softmax_slow" in html


def test_fold_scores_are_compared_fold_by_fold(params):
    raw = _raw()
    raw["train"]["a"] = {**raw["train"]["linreg"], "kfold": 4, "seeds": None}
    raw["train"]["b"] = {**raw["train"]["a"], "optimizer": {"name": "sgd", "lr": 0.01}}
    raw["report"]["compare"] = [["b", "a"]]
    p = parse_params(raw)
    a, b = [0.10, 0.12, 0.11, 0.13], [0.20, 0.19, 0.25, 0.21]
    details = {"a": {"folds": {"k": 4, "metric": "rmse", "val": a}},
               "b": {"folds": {"k": 4, "metric": "rmse", "val": b}}}
    (sentence,) = comparison_sentences(p, details)
    ci = stats.ttest_rel(b, a).confidence_interval(0.95)
    # rmse: lower is better, so `a` is named the winner and the gap is positive.
    assert sentence.startswith("validation rmse over the same 4 folds: a beats b by")
    assert f"interval {ci.low:.4f} to {ci.high:.4f}" in sentence
    assert "excludes zero" in sentence


@pytest.mark.parametrize("edit, key", [
    (lambda r: r["train"]["linreg"].update(seeds=[1, 1]), "train.linreg.seeds"),
    (lambda r: r["train"]["linreg"].update(seeds=[3]), "train.linreg.seeds"),
    (lambda r: r["report"].update(compare=[["softmax", "nosuch"]]), "report.compare.0.1"),
    (lambda r: r["report"].update(compare=[["softmax", "linreg"]]) or
     r["train"]["linreg"].update(seeds=[0, 1]), "report.compare.0"),
    (lambda r: r["report"].update(compare=[["softmax", "softmax"]]), "report.compare.0"),
    (lambda r: r["report"].update(compare=[["softmax"]]), "report.compare.0"),
])
def test_bad_seeds_or_pairs_name_their_key(edit, key):
    raw = copy.deepcopy(_raw())
    edit(raw)
    with pytest.raises(ConfigError) as err:
        parse_params(raw, source="p.yaml")
    assert str(err.value).startswith(f"p.yaml: {key}: "), str(err.value)
