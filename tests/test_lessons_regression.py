"""The regression lessons of params.yaml, trained at the repository's own settings.

Each test trains the variants it names through `fit_variant`, exactly as the `train` stage does,
on data written by `generate_all` / `prepare_all` into a temporary directory, and checks what
the variant's `note` promises. Oracles: the true parameters in params.yaml, closed-form least
squares of the variant's own training split, the mean predictor, scikit-learn's metric functions,
and variants that must be equal (weight decay against a hand-written L2 penalty, a run against
its re-run).

Every regression variant but `line` (see `params`) runs at its params.yaml settings, on one
thread. Each variant is trained once per module and shared between tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

from dlbasics.config.loading import parse_params
from dlbasics.config.params import Params
from dlbasics.config.variants import ModelSpec
from dlbasics.data.prepared import Prepared, prepare_all
from dlbasics.data.sources import generate_all
from dlbasics.learn.models import build_model
from dlbasics.learn.training import build_optimizer, predict
from dlbasics.pipeline.variant import fit_variant
from dlbasics.report.evaluation import parameter_summary, score

REPO = Path(__file__).resolve().parents[1]

VARIANTS = (
    "linreg", "linreg_scratch", "line", "house", "trapezoid_mlp", "trapezoid_scratch",
    "poly3", "poly1", "poly20", "poly20_lstsq", "poly20_few", "poly20_few_lstsq",
    "wd_0", "wd_0_1", "wd_0_3", "wd_1", "wd_3", "wd_10", "wd_3_explicit",
    "sparse_none", "sparse_l2", "sparse_l1",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread while this module trains: its tensors are tiny ([<=1000, <=200]), and
    on busy cores a second thread's hand-offs cost more than they save (150 s against 30 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def params() -> Params:
    """The repository's params.yaml, restricted to the regression variants and their data."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    train = {name: raw["train"][name] for name in VARIANTS}
    # line is the one variant shrunk: 3000 full-batch epochs at lr 0.01 cost 5 s here. Full-batch
    # GD on this quadratic loss (largest Hessian eigenvalue ~2.5 for x ~ U[0, 1), so lr 0.1 stays
    # far from the 2 / 2.5 limit) ends at the same point with lr x 10 over epochs / 10: slope
    # 4.9268, intercept 7.0242, against 4.9266, 7.0243 at the params.yaml settings.
    line = train["line"]
    train["line"] = {**line, "epochs": line["epochs"] // 10,
                     "optimizer": {**line["optimizer"], "lr": line["optimizer"]["lr"] * 10}}
    datasets = sorted({spec["dataset"] for spec in train.values()})
    return parse_params({
        "seed": raw["seed"],
        "data": {d: raw["data"][d] for d in datasets},
        "prepare": {d: raw["prepare"][d] for d in datasets},
        "train": train,
        "evaluate": raw["evaluate"],
    })


@pytest.fixture(scope="module")
def prepared_root(params, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lessons_regression")
    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    return root / "prepared"


@dataclass
class Fitted:
    model: torch.nn.Module
    history: list[dict[str, float]]
    data: Prepared

    def mse(self, split: str) -> float:
        """Mean squared error of the final model on one split, in float64."""
        s = self.data.splits[split]
        out = predict(self.model, s.X).double()  # [N, 1]
        return float(((out - s.y.double()) ** 2).mean())


@pytest.fixture(scope="module")
def fitted(params, prepared_root):
    """fitted(name) -> Fitted: trains variant `name` on first use, then returns the same fit."""
    cache: dict[str, Fitted] = {}

    def get(name: str) -> Fitted:
        if name not in cache:
            cache[name] = Fitted(*fit_variant(
                params, name, prepared_root / params.train[name].dataset
            )[:3])
        return cache[name]

    return get


@pytest.fixture(scope="module")
def summary(params, fitted):
    """summary(name) -> parameter_summary of the fitted variant (w_i, b, w_norm, n_near_zero...)."""
    def get(name: str) -> dict[str, float]:
        f = fitted(name)
        return parameter_summary(f.model, f.data.manifest, params.evaluate.zero_tol)

    return get


# --------------------------------------------------------------------------- 1. linear regression


@pytest.mark.parametrize("name", ["linreg", "linreg_scratch"])
def test_linear_regression_recovers_truth_and_closed_form(params, fitted, summary, name):
    truth = params.data[params.train[name].dataset]
    s = summary(name)
    w = torch.tensor([s["w_0"], s["w_1"]], dtype=torch.float64)
    assert s["w_error"] < 0.01 and s["b_error"] < 0.01, s
    # The same against params.yaml directly, not the manifest parameter_summary reads.
    assert (w - torch.tensor(truth.true_w, dtype=torch.float64)).abs().max() < 0.01
    assert abs(s["b"] - truth.true_b) < 0.01

    train = fitted(name).data.splits["train"]
    X = train.X.double()  # [N, 2]
    A = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)  # [N, 3]
    coef = torch.linalg.lstsq(A, train.y.double()).solution[:, 0]  # [w_0, w_1, b]
    got = torch.tensor([s["w_0"], s["w_1"], s["b"]], dtype=torch.float64)
    torch.testing.assert_close(got, coef, atol=1e-2, rtol=0)


# --------------------------------------------------------------------------- 2. line and house


def test_line_recovers_slope_and_intercept(params, summary):
    truth = params.data["line"]
    s = summary("line")
    assert abs(s["w_0"] - truth.true_w[0]) < 0.15, s
    assert abs(s["b"] - truth.true_b) < 0.15, s


def test_house_learns_the_slope_and_beats_the_mean(params, fitted, summary):
    f = fitted("house")
    y_train, y_test = f.data.splits["train"].y.double(), f.data.splits["test"].y.double()
    # The mean predictor: the training mean for every test house.
    baseline = float(((y_test - y_train.mean()) ** 2).mean())
    assert f.mse("test") < baseline, (f.mse("test"), baseline)
    assert abs(summary("house")["w_0"] - params.data["house"].true_w[0]) < 0.3


# --------------------------------------------------------------------------- 3. trapezoid


@pytest.mark.parametrize("name", ["trapezoid_mlp", "trapezoid_scratch"])
def test_trapezoid_networks_learn_the_area(params, fitted, name):
    f = fitted(name)
    test = f.data.splits["test"]
    out = predict(f.model, test.X)  # [100, 1]
    metrics = score(params, f.data.task, f.data.manifest["n_outputs"], test.y, out)
    assert metrics["r2"] > 0.9, metrics
    variance = float(test.y.double().var(unbiased=False))
    # "Well below": half of what R2 > 0.9 alone allows (the mean predictor scores 1 x variance).
    assert f.mse("test") < 0.05 * variance, (f.mse("test"), variance)


# --------------------------------------------------------------------------- 4. polynomial


def test_poly3_recovers_the_weights_and_generalises(params, fitted, summary):
    s = summary("poly3")
    got = torch.tensor([s[f"w_{i}"] for i in range(4)], dtype=torch.float64)
    truth = torch.tensor(params.data["poly"].true_w, dtype=torch.float64)
    torch.testing.assert_close(got, truth, atol=0.1, rtol=0)
    train, test = fitted("poly3").mse("train"), fitted("poly3").mse("test")
    assert train < 0.05 and test < 0.05, (train, test)
    assert max(train, test) / min(train, test) < 2, (train, test)


def test_poly1_underfits(fitted):
    right, under = fitted("poly3"), fitted("poly1")
    for split in ("train", "test"):
        assert under.mse(split) > 10 * right.mse(split), (split, under.mse(split), right.mse(split))


def test_poly20_by_sgd_at_the_sources_settings_does_not_overfit(fitted):
    # Measured, not a law: 1500 epochs of SGD barely move the tiny x^i/i! columns (i >= 4).
    f = fitted("poly20")
    assert f.mse("test") < 2 * f.mse("train"), (f.mse("train"), f.mse("test"))


@pytest.mark.parametrize("name", ["poly20_lstsq", "poly20_few", "poly20_few_lstsq"])
def test_overfitting_variants_overfit(fitted, name):
    f = fitted(name)
    assert f.mse("test") > 10 * f.mse("train"), (f.mse("train"), f.mse("test"))


@pytest.mark.parametrize("exact, sgd", [("poly20_lstsq", "poly20"),
                                        ("poly20_few_lstsq", "poly20_few")])
def test_least_squares_fits_the_training_split_at_least_as_well_as_sgd(fitted, exact, sgd):
    # Least squares minimises the training MSE over all weights, so no SGD run can go below it
    # (up to float32 rounding of the evaluation).
    assert fitted(exact).mse("train") <= fitted(sgd).mse("train") * 1.001 + 1e-7


# --------------------------------------------------------------------------- 5. weight decay


def _weight_decay_sweep(params: Params) -> list[tuple[float, str]]:
    return sorted(
        (spec.series.x, name) for name, spec in params.train.items()
        if spec.series is not None and spec.series.name == "weight_decay"
    )


def test_weight_norm_falls_along_the_weight_decay_sweep(params, fitted, summary):
    sweep = _weight_decay_sweep(params)
    assert [x for x, _ in sweep] == [0.0, 0.1, 0.3, 1.0, 3.0, 10.0]
    for x, name in sweep:  # the series label is the setting the variant trains with
        assert params.train[name].optimizer.weight_decay == x
    norms = [summary(name)["w_norm"] for _, name in sweep]
    assert all(a > b for a, b in zip(norms, norms[1:])), dict(zip([n for _, n in sweep], norms))
    # parameter_summary's norm is the norm of the weight matrix, bias excluded.
    weight = fitted("wd_3").model.weight.detach()  # [1, 200]
    assert summary("wd_3")["w_norm"] == pytest.approx(float(weight.norm()), rel=1e-6)


def test_weight_decay_3_beats_no_decay_on_test(fitted):
    assert fitted("wd_3").mse("test") < fitted("wd_0").mse("test")


def test_explicit_l2_penalty_equals_optimizer_weight_decay(params, fitted):
    decayed, penalised = params.train["wd_3"], params.train["wd_3_explicit"]
    # The two differ only in where lambda goes: the optimizer, or the loss.
    assert penalised.optimizer.weight_decay == 0.0 and decayed.penalty is None
    assert penalised.penalty.kind == "l2"
    assert penalised.penalty.strength == decayed.optimizer.weight_decay > 0
    a, b = fitted("wd_3").model.state_dict(), fitted("wd_3_explicit").model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)
    # And the penalty does something: without it the weights end far away.
    assert (fitted("wd_0").model.weight - a["weight"]).abs().max() > 0.1


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "sgd_scratch"])
def test_weight_decay_leaves_the_bias_alone(params, name):
    """With zero gradients only the decay moves a parameter: the weights must shrink and the
    bias must not move, for every optimizer the configs can name."""
    variant = params.train["wd_10"]
    spec = variant.optimizer.model_copy(update={"name": name})
    model_spec = variant.model
    if name == "sgd_scratch":
        model_spec = ModelSpec(kind="linear_scratch", init="normal", init_std=model_spec.init_std)
    model = build_model(model_spec, 200, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.bias.fill_(0.5)  # a zero bias would stay zero under decay too
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    build_optimizer(spec, model).step()
    assert torch.equal(model.bias.detach(), b0)
    assert float(model.weight.detach().norm()) < float(w0.norm())
    if name in ("sgd", "sgd_scratch"):  # w <- w - lr * wd * w
        torch.testing.assert_close(model.weight.detach(), w0 * (1 - spec.lr * spec.weight_decay))


# --------------------------------------------------------------------------- 6. L1 against L2


def test_l1_gives_sparse_weights_at_comparable_test_loss(params, fitted, summary):
    names = ("sparse_none", "sparse_l2", "sparse_l1")
    tol = params.evaluate.zero_tol
    loss = {n: fitted(n).mse("test") for n in names}
    near_zero = {n: summary(n)["n_near_zero"] for n in names}
    for n in names:  # parameter_summary's count against a direct count
        assert near_zero[n] == int((fitted(n).model.weight.detach().abs() < tol).sum())
    assert max(loss["sparse_l1"], loss["sparse_l2"]) / min(loss["sparse_l1"],
                                                           loss["sparse_l2"]) < 1.5, loss
    assert loss["sparse_l1"] <= loss["sparse_none"], loss  # sparsity costs no test accuracy
    n_weights = summary("sparse_l1")["n_weights"]
    assert near_zero["sparse_l1"] > n_weights / 2, near_zero
    assert near_zero["sparse_l1"] > 5 * max(near_zero["sparse_l2"], near_zero["sparse_none"]), \
        near_zero


# --------------------------------------------------------------------------- 7. metrics


@pytest.mark.parametrize("split", ["train", "test"])
def test_score_agrees_with_sklearn_on_a_trained_variant(params, fitted, split):
    f = fitted("house")
    s = f.data.splits[split]
    out = predict(f.model, s.X)  # [N, 1]
    got = score(params, f.data.task, f.data.manifest["n_outputs"], s.y, out)
    y, p = s.y.numpy().ravel().astype(np.float64), out.numpy().ravel().astype(np.float64)
    assert got["mse"] == pytest.approx(mean_squared_error(y, p), rel=1e-9)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, p)), rel=1e-9)
    assert got["r2"] == pytest.approx(r2_score(y, p), rel=1e-9)
    assert got["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-9)
    assert got["mape_undefined"] == 0.0
    assert got["mape"] == pytest.approx(mean_absolute_percentage_error(y, p), rel=1e-9)
    assert got["mse"] == pytest.approx(f.mse(split), rel=1e-6)


def test_mape_is_flagged_when_a_target_is_zero(params):
    y = torch.tensor([[0.0], [1.0], [2.0], [4.0]])  # [4, 1], one zero target
    got = score(params, "regression", 1, y, y + 0.5)
    assert got["mape_undefined"] == 1.0 and "mape" not in got, got
    assert got["mse"] == pytest.approx(0.25) and got["mae"] == pytest.approx(0.5)
    # The control: the same residuals without the zero give a MAPE, |0.5 / y| averaged.
    nonzero = y + 1.0  # 1, 2, 3, 5
    got = score(params, "regression", 1, nonzero, nonzero + 0.5)
    assert got["mape_undefined"] == 0.0
    assert got["mape"] == pytest.approx(np.mean(0.5 / np.array([1.0, 2.0, 3.0, 5.0])))


# --------------------------------------------------------------------------- 8. reproducibility


@pytest.mark.parametrize("name", ["linreg", "trapezoid_scratch", "wd_3_explicit"])
def test_fit_variant_is_bit_identical_when_repeated(params, prepared_root, fitted, name):
    first = fitted(name)
    model, history, _, _ = fit_variant(
        params, name, prepared_root / params.train[name].dataset
    )
    a, b = first.model.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert history == first.history
