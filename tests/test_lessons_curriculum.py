"""The curriculum's later lessons that are params.yaml variants, trained for real at the
repository's settings and checked against independent oracles: closed-form least squares,
scikit-learn's R^2 and PolynomialFeatures, K binary logistic regressions trained one by one,
the penalties' formulas, torch.nn's LeakyReLU and PReLU, and the profile switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import prepared_data, trained_variants
from sklearn.metrics import r2_score
from sklearn.preprocessing import PolynomialFeatures

from dlbasics.config.loading import load_params, parse_params
from dlbasics.errors import ConfigError
from dlbasics.data.prepared import prepare_all
from dlbasics.data.sources import generate_all
from dlbasics.learn.models import build_model
from dlbasics.learn.training import build_loss, build_penalty, evaluate_split, predict
from dlbasics.rng import torch_generator

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
DATASETS = ("trapezoid", "sine", "sparse", "images")
VARIANTS = ("trapezoid_mlp", "trapezoid_features", "sine_a", "sine_b", "sine_c", "sparse_l1",
            "sparse_l2", "sparse_elastic", "softmax", "one_vs_all", "two_layer", "mlp_leaky_relu",
            "mlp_prelu", "mlp_manual")


@pytest.fixture(scope="module")
def params():
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    small = {"seed": raw["seed"], "runtime": {"device": "cpu", "threads": 1},
             "tracking": raw["tracking"],
             "data": {k: raw["data"][k] for k in DATASETS},
             "prepare": {k: raw["prepare"][k] for k in DATASETS},
             "train": {k: raw["train"][k] for k in VARIANTS}, "evaluate": raw["evaluate"]}
    return parse_params(small, source="test params")


@pytest.fixture(scope="module")
def prepared(params, tmp_path_factory) -> Path:
    return prepared_data(params, tmp_path_factory.mktemp("curriculum"))


@pytest.fixture(scope="module")
def trained(params, prepared):
    """name -> (model, history, data), each variant trained once, on first use."""
    yield from trained_variants(params, prepared)


def _r2(trained, name: str, split: str) -> float:
    model, _, data = trained(name)
    s = data.splits[split]
    return float(r2_score(s.y.numpy(), predict(model, s.X).numpy()))


# --------------------------------------------------------------------------- histories


def test_classifier_histories_carry_train_accuracy(params, trained):
    from sklearn.metrics import accuracy_score

    model, history, data = trained("two_layer")
    # Each epoch's running accuracy is a count of right rows over the training rows, in [0, 1];
    # the last test accuracy is scikit-learn's on the final model's argmax answers.
    n = len(data.splits["train"].y)
    for r in history:
        assert 0 <= r["train_accuracy"] <= 1
        assert abs(r["train_accuracy"] * n - round(r["train_accuracy"] * n)) < 1e-6, r
    test = data.splits["test"]
    assert history[-1]["test_accuracy"] == pytest.approx(
        accuracy_score(test.y.numpy(), predict(model, test.X).argmax(1).numpy()), abs=1e-12)
    # The running accuracy of the last epoch trails the final model's only by what that
    # epoch's steps changed.
    final = evaluate_split(model, build_loss("cross_entropy"), data.splits["train"],
                           "classification")["accuracy"]
    assert abs(history[-1]["train_accuracy"] - final) < 0.02
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    # file 003's two-layer net by backpropagation: high accuracy on both splits.
    assert history[-1]["train_accuracy"] >= 0.95 and history[-1]["test_accuracy"] >= 0.9
    _, reg_history, _ = trained("sine_b")
    assert "train_accuracy" not in reg_history[-1]  # regression: no accuracy to record


# --------------------------------------------------------------------------- hand-built features


def test_trapezoid_features_recover_the_area_formula_exactly(trained):
    model, _, data = trained("trapezoid_features")
    assert data.manifest["feature_names"] == ["x0", "x1", "x0^2", "x0 x1", "x1^2"]
    # area = 0.5 x0^2 + 0.5 x0 x1 (the top is the height): the oracle coefficients.
    w = model.weight.detach()[0].double()
    assert torch.allclose(w, torch.tensor([0, 0, 0.5, 0.5, 0], dtype=torch.float64), atol=1e-4)
    assert abs(float(model.bias.detach())) < 1e-4
    # The same features by hand through scikit-learn reproduce the network's inputs.
    _, _, raw = trained("trapezoid_mlp")
    expected = PolynomialFeatures(2, include_bias=False).fit_transform(
        raw.splits["test"].X.double().numpy())
    assert np.allclose(data.splits["test"].X.numpy(), expected, rtol=1e-6)
    # The MLP on the raw top and bottom only approximates the area.
    mse = {n: float(((predict(trained(n)[0], trained(n)[2].splits["test"].X)
                      - trained(n)[2].splits["test"].y) ** 2).mean())
           for n in ("trapezoid_features", "trapezoid_mlp")}
    assert mse["trapezoid_features"] < 1e-8 < mse["trapezoid_mlp"]


# --------------------------------------------------------------------------- sin(x), capacity


def test_growing_capacity_raises_train_r2_but_not_test_r2(params, trained):
    train = [_r2(trained, n, "train") for n in ("sine_a", "sine_b", "sine_c")]
    test = [_r2(trained, n, "test") for n in ("sine_a", "sine_b", "sine_c")]
    assert train[0] < train[1] < train[2]
    assert train[2] > 0.9999  # 12 coefficients through 12 points: the book's R^2 = 1.0
    assert test[2] < test[1]  # the book's model C loses to model B on new data
    assert test[1] > 0.9  # a cubic follows sin(x) on [-3, 3]
    # The capacity series orders the variants by degree for the report.
    assert [params.train[n].series.x for n in ("sine_a", "sine_b", "sine_c")] == [1.0, 3.0, 11.0]


# --------------------------------------------------------------------------- one-vs-all


def test_one_vs_all_equals_k_binary_logistic_regressions_trained_alone(params, prepared):
    """The joint loss trains each column exactly like a lone sigmoid + BCE classifier."""
    from dlbasics.data.prepared import load_prepared

    data = load_prepared(prepared / "images")
    X, y = data.splits["train"].X[:200].double(), data.splits["train"].y[:200]
    k, lr = 10, 0.1
    joint = torch.nn.Linear(X.shape[1], k).double()
    torch.nn.init.normal_(joint.weight, std=0.01, generator=torch_generator(1, "ova"))
    torch.nn.init.zeros_(joint.bias)
    alone = []
    for c in range(k):
        m = torch.nn.Linear(X.shape[1], 1).double()
        with torch.no_grad():
            m.weight.copy_(joint.weight[c:c + 1])
            m.bias.copy_(joint.bias[c:c + 1])
        alone.append(m)
    loss_fn = build_loss("one_vs_all")
    bce = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.SGD(joint.parameters(), lr=lr)
    opts = [torch.optim.SGD(m.parameters(), lr=lr) for m in alone]
    for step in range(20):
        rows = torch.arange(step * 10, step * 10 + 10) % 200
        opt.zero_grad()
        loss_fn(joint(X[rows]), y[rows]).backward()
        opt.step()
        for c, (m, o) in enumerate(zip(alone, opts)):
            o.zero_grad()
            bce(m(X[rows])[:, 0], (y[rows] == c).double()).backward()
            o.step()
    stacked = torch.cat([m.weight for m in alone])
    assert torch.allclose(joint.weight, stacked, atol=1e-12)
    assert torch.allclose(joint.bias, torch.cat([m.bias for m in alone]), atol=1e-12)


def test_one_vs_all_classifies_the_digits_nearly_as_well_as_softmax(trained):
    acc = {}
    for n in ("one_vs_all", "softmax"):
        model, _, data = trained(n)
        test = data.splits["test"]
        acc[n] = float((predict(model, test.X).argmax(1) == test.y).double().mean())
    assert acc["one_vs_all"] > 0.9
    assert abs(acc["one_vs_all"] - acc["softmax"]) < 0.05


# --------------------------------------------------------------------------- elastic net


def test_elastic_net_penalty_is_the_mix_of_l1_and_l2(params):
    from dlbasics.config.variants import PenaltySpec

    model = torch.nn.Linear(5, 1)
    torch.nn.init.normal_(model.weight, generator=torch_generator(2, "en"))
    w = model.weight.detach().double()
    for ratio in (0.0, 0.3, 1.0):
        spec = PenaltySpec(kind="elastic_net", strength=0.7, l1_ratio=ratio)
        expected = 0.7 * (ratio * w.abs().sum() + (1 - ratio) * (w ** 2).sum() / 2)
        assert float(build_penalty(spec, model)().detach()) == pytest.approx(float(expected),
                                                                      rel=1e-6)


def test_elastic_net_sits_between_l2_and_l1(params, trained):
    tol = params.evaluate.zero_tol
    zeros, test_mse = {}, {}
    for n in ("sparse_l2", "sparse_l1", "sparse_elastic"):
        model, _, data = trained(n)
        zeros[n] = int((model.weight.detach().abs() < tol).sum())
        test = data.splits["test"]
        test_mse[n] = float(((predict(model, test.X) - test.y) ** 2).mean())
    # Its L1 half drives most weights to zero like L1 does; L2 alone zeroes few.
    assert zeros["sparse_elastic"] > 10 * max(zeros["sparse_l2"], 1)
    assert zeros["sparse_elastic"] >= 0.8 * zeros["sparse_l1"]
    assert test_mse["sparse_elastic"] < test_mse["sparse_l2"]


# --------------------------------------------------------------------------- activations


def test_leaky_relu_slope_comes_from_params_and_matches_torch(params):
    spec = params.train["mlp_leaky_relu"].model
    assert spec.negative_slope == 0.2  # the book's slope
    model = build_model(spec, 64, 10, torch_generator(0, "init"))
    leaky = [m for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert [m.negative_slope for m in leaky] == [0.2]
    # The hand-written MLP with the same settings computes the same function.
    scratch = build_model(spec.model_copy(update={"kind": "mlp_scratch"}), 64, 10,
                          torch_generator(0, "init"))
    x = torch.randn(8, 64, generator=torch_generator(3, "x"))
    assert torch.allclose(model(x), scratch(x), atol=1e-6)


def test_prelu_learns_its_slope(params, trained):
    # Built on the meta device then materialised: the slope must still start at torch's 0.25.
    fresh = build_model(params.train["mlp_prelu"].model, 64, 10, torch_generator(0, "init"))
    (start,) = [m for m in fresh.modules() if isinstance(m, torch.nn.PReLU)]
    assert float(start.weight.detach()) == 0.25
    model, history, _ = trained("mlp_prelu")
    (prelu,) = [m for m in model.modules() if isinstance(m, torch.nn.PReLU)]
    assert float(prelu.weight.detach()) != pytest.approx(0.25, abs=1e-4)  # moved from 0.25
    assert history[-1]["test_accuracy"] >= 0.95


def test_prelu_is_refused_where_it_has_no_meaning():
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    raw["train"]["mlp_scratch"]["model"]["activation"] = "prelu"
    with pytest.raises(ConfigError, match=r"train\.mlp_scratch\.model\.activation"):
        parse_params(raw)


# --------------------------------------------------------------------------- hand backprop


def test_the_books_classifier_by_hand_learns_the_digits(params, trained):
    from dlbasics.learn.scratch import ManualMLP

    model, history, _ = trained("mlp_manual")
    assert isinstance(model, ManualMLP)
    assert [tuple(p.shape) for p in model.parameters()] == [
        (64, 1024), (1024,), (1024, 1024), (1024,), (1024, 10), (10,)]
    assert history[-1]["test_accuracy"] >= 0.93
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    raw["train"]["mlp_manual"]["loss"] = "squared_loss_scratch"
    with pytest.raises(ConfigError, match=r"train\.mlp_manual\.loss: expected cross_entropy"):
        parse_params(raw)


# --------------------------------------------------------------------------- the profile


def test_full_size_profile_gives_image_variants_the_sources_settings():
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    default = parse_params(raw)
    full = parse_params({**raw, "profile": "full_size"})
    # Every variant on a dataset of an image kind (the profile's reach: IMAGE_KINDS).
    from dlbasics.config.profiles import IMAGE_KINDS

    images = [n for n, s in default.train.items()
              if default.data[s.dataset].kind in IMAGE_KINDS]
    others = [n for n in default.train if n not in images]
    assert images and others
    for n in images:
        assert (full.train[n].batch_size, full.train[n].epochs) == (256, 10)
        assert full.train[n].optimizer == default.train[n].optimizer  # lr 0.1 stays 0.1
    for n in others:
        assert full.train[n] == default.train[n]
    assert full.prepare["images"].scale == "unit"
    assert full.prepare["trapezoid"] == default.prepare["trapezoid"]
    assert all(s.max_rows == 4000 for s in full.select.searches.values())
    assert default.profile is None and all(s.max_rows is None
                                           for s in default.select.searches.values())
    with pytest.raises(ConfigError, match=r"profile: expected null or one of .*'full_size'"):
        parse_params({**raw, "profile": "fullsize"})


def test_fashion_profile_is_full_size_on_the_real_data():
    """profile fashion: full_size's settings, then its overrides: the images from Debian's
    folder with the official test set, 5 seeds for the book's variants, its own MLflow names."""
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    full = parse_params({**raw, "profile": "full_size"})
    fashion = parse_params({**raw, "profile": "fashion"})
    images = fashion.data["images"]
    assert (images.kind, images.source, images.path) == (
        "fashion_mnist", "local", "/usr/share/datasets/fashion-mnist")
    assert images.verify_checksums and images.official_sizes
    prep = fashion.prepare["images"]
    assert (prep.val_fraction, prep.test_fraction, prep.scale) == (0.1, None, "unit")
    assert fashion.tracking.experiment != full.tracking.experiment
    assert fashion.tracking.registry.model == "dlbasics-fashion"
    for fig in fashion.report.book:
        assert fashion.train[fig.variant].seeds == [0, 1, 2, 3, 4], fig.variant
        assert (fashion.train[fig.variant].batch_size, fashion.train[fig.variant].epochs) == (
            256, 10)
    for name, spec in fashion.train.items():
        if name not in {f.variant for f in fashion.report.book}:
            assert spec == full.train[name], name
    # Its own grid for the tuned search (Adam MLPs with dropout); the book's search as full_size.
    tuned = fashion.select.searches["tuned"]
    assert tuned.grid == {"model.hidden": [[512], [1024]], "model.dropout": [0.2, 0.4]}
    assert (tuned.patience, tuned.max_rows, tuned.overrides["optimizer.name"]) == (
        15, 4000, "adam")
    assert tuned != full.select.searches["tuned"]
    assert fashion.select.searches["book"] == full.select.searches["book"]


def test_profile_overrides_skip_removed_entries_and_name_bad_keys():
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    # A variant removed from train: its override is skipped, selected or not (no profile edit).
    for name in ("softmax_scratch",):
        del raw["train"][name]
    raw["report"]["book"] = [f for f in raw["report"]["book"]
                             if "softmax_scratch" not in (f["variant"], f.get("same_as"))]
    del raw["report"]["notes"]["softmax_scratch"]
    assert "softmax_scratch" not in parse_params({**raw, "profile": "fashion"}).train
    over = raw["profiles"]["fashion"]["overrides"]
    bad = [
        ({"profile": "full_size"}, r"profiles\.fashion\.overrides\.profile: expected a key path "
                                   r"under one of seed, runtime, .*, found 'profile'"),
        ({"train..lr": 1}, r"profiles\.fashion\.overrides\.train\.\.lr: expected a key path"),
        ({"seed.x": 1}, r"profiles\.fashion\.overrides\.seed\.x: expected a key path through "
                        r"mappings, found seed holding 0"),
        # A bad value in a profile that is not selected is still reported, at the profile.
        ({"train.mlp.epochs": 0}, r"profiles\.fashion\.overrides\.train\.mlp\.epochs: "
                                  r"expected a value > 0, found 0$"),
        # Inside an override's value: its key, then the place in the value.
        ({"data.images": {"kind": "fashion_mnist", "source": "local"}},
         r"profiles\.fashion\.overrides\.data\.images\.path: expected the directory holding "
         r"the four IDX files, found nothing$"),
        ({"data.images": "oops"},
         r"profiles\.fashion\.overrides\.data\.images: expected a mapping, found 'oops'$"),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_params({**raw, "profiles": {**raw["profiles"], "fashion": {
                **raw["profiles"]["fashion"], "overrides": {**over, **extra}}}})


def test_full_size_profile_scales_pixels_to_unit_range(tmp_path):
    """An IDX image set under the profile: pixels in [0, 1], as d2l's ToTensor gives them."""
    from dlbasics.data.idx import FILES, write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("test", 40)):
        write_idx(tmp_path / "idx" / FILES[f"X_{split}"],
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / "idx" / FILES[f"y_{split}"],
                  rng.integers(0, 10, n, dtype=np.uint8))
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    raw["data"] = {"images": {"kind": "fashion_mnist", "source": "local",
                              "path": str(tmp_path / "idx"), "verify_checksums": False,
                              "official_sizes": False}}
    raw["prepare"] = {"images": {"val_fraction": 0.1, "scale": "standard"}}
    raw["train"] = {"softmax": raw["train"]["softmax"]}
    raw["report"] = {}
    raw["lessons"] = {k: None for k in ("accuracy_signal", "numerical_training", "stacked_linear",
                                        "symmetry", "gradient_flow")}
    raw.pop("select")
    p = parse_params({**raw, "profile": "full_size"})
    generate_all(p, tmp_path / "raw")
    prepare_all(p, tmp_path / "raw", tmp_path / "prep")
    X = np.load(tmp_path / "prep" / "images" / "X_train.npy")
    assert X.min() >= 0 and X.max() <= 1 and X.max() > 0.99
    assert X.shape[1] == 784


def test_search_subset_is_stratified_and_seeded():
    from dlbasics.data.prepared import Prepared, Split
    from dlbasics.search.gridsearch import _Folds

    y = torch.arange(1000) % 10
    X = torch.arange(1000, dtype=torch.float32).reshape(-1, 1)
    data = Prepared({"task": "classification"}, {"train": Split(X, y)})
    a = _Folds(data, 3, 7, torch.device("cpu"), max_rows=300)
    b = _Folds(data, 3, 7, torch.device("cpu"), max_rows=300)
    rows = torch.cat([va.X for _, va in a.splits])[:, 0]
    assert rows.numel() == 300 and rows.unique().numel() == 300
    assert torch.bincount(y[rows.long()]).tolist() == [30] * 10  # stratified
    assert all(torch.equal(p.X, q.X) for (p, _), (q, _) in zip(a.splits, b.splits))
    full = _Folds(data, 3, 7, torch.device("cpu"))
    assert sum(va.X.shape[0] for _, va in full.splits) == 1000


def test_default_params_still_load():
    assert load_params(PARAMS_YAML).profile is None
