"""The network lessons against oracles: exact affine algebra, a converged scikit-learn
softmax regression, hand-computed gradients, analytic growth rates and NumPy formulas.

The data is scikit-learn's bundled 8x8 digits, split and standardised here (as the pipeline's
`prepare` does: stratified, scaled on the training rows), so the tests run offline and fast.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from dlbasics.data.prepared import Prepared, Split
from dlbasics.lessons import defaults
from dlbasics.lessons import networks as N


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the lessons are meant to be fast single-threaded (shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> Prepared:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, random_state=0, stratify=y)
    train, val = train_test_split(rest, test_size=0.125, random_state=0, stratify=y[rest])
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    std[std == 0] = 1.0  # constant border pixels
    splits = {name: Split(torch.tensor((X[rows] - mean) / std, dtype=torch.float32),
                          torch.tensor(y[rows], dtype=torch.int64))
              for name, rows in (("train", train), ("val", val), ("test", test))}
    manifest = {"task": "classification", "n_features": 64, "n_classes": 10, "n_outputs": 10,
                "name": "images"}
    return Prepared(manifest, splits)


@pytest.fixture(scope="module")
def stacked(digits):
    return N.stacked_linear(data=digits, seed=0, **defaults("stacked_linear"))


def _json_ok(result) -> None:
    """Values are flat scalars and the whole result is strict JSON."""
    assert all(isinstance(v, (bool, int, float, str)) for v in result.values.values())
    json.dumps(result.as_json(), allow_nan=False)


# --------------------------------------------------------------------------- stacked linear


def test_collapse_of_a_random_chain_is_exact():
    """The helper's algebra on an untrained three-layer chain (float64: exact to rounding)."""
    g = torch.Generator().manual_seed(1)
    layers = [nn.Linear(a, b).double() for a, b in ((5, 7), (7, 3), (3, 4))]
    with torch.no_grad():
        for layer in layers:
            layer.weight.normal_(generator=g)
            layer.bias.normal_(generator=g)
    W, b = N.collapse_linear_stack(layers)
    x = torch.randn(11, 5, generator=g, dtype=torch.float64)
    chain = layers[2](layers[1](layers[0](x)))
    assert W.shape == (4, 5) and b.shape == (4,)
    assert torch.allclose(x @ W.T + b, chain, atol=1e-12)


def test_stack_collapses_to_its_affine_map(stacked):
    v = stacked.values
    assert v["collapse_max_abs_diff"] <= 1e-4 * max(1.0, v["logit_max_abs"])
    assert v["stack_parameters"] == 64 * 256 + 256 + 256 * 10 + 10
    assert v["single_parameters"] == 64 * 10 + 10
    _json_ok(stacked)


def test_stack_is_not_better_by_more_than_a_few_samples(stacked):
    v = stacked.values
    n_test = v["n_test"]
    assert v["test_gain_samples"] == round((v["stack_test_accuracy"]
                                            - v["single_test_accuracy"]) * n_test)
    # "A few": within 2% of the test rows, the size of a re-split's noise on 360 digits.
    assert v["test_gain_samples"] <= 0.02 * n_test
    # holds is the strict claim (no gain at all) and the exact collapse.
    assert stacked.holds == (v["test_gain_samples"] <= 0)


def test_best_affine_map_fits_at_least_as_well_as_the_stack(digits, stacked):
    """Capacity oracle: a softmax regression fitted to convergence (scikit-learn, almost no
    penalty) is the best single affine map; the stack, being one, cannot beat it on the
    training rows."""
    from sklearn.linear_model import LogisticRegression

    train = digits.splits["train"]
    clf = LogisticRegression(C=1e4, max_iter=5000).fit(train.X.numpy(), train.y.numpy())
    best = clf.score(train.X.numpy(), train.y.numpy())
    assert best >= stacked.values["stack_train_accuracy"]


# --------------------------------------------------------------------------- symmetry


def test_hidden_unit_spread_by_hand():
    w = torch.tensor([[1.0, 2.0], [1.0, 2.5], [0.0, 2.0]])
    assert N.hidden_unit_spread(w) == pytest.approx(1.0)
    assert N.hidden_unit_spread(torch.full((4, 3), 0.7)) == 0.0
    assert N.hidden_unit_spread(torch.tensor([[3.0, -1.0]])) == 0.0  # one unit: no spread
    # Outgoing weights [out, units] are passed transposed: units become rows.
    out = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 5.0]])
    assert N.hidden_unit_spread(out.T) == pytest.approx(3.0)


def test_constant_init_gives_identical_gradients():
    """The mechanism itself: one backward pass from a constant start gives every hidden unit
    the same incoming and outgoing gradient."""
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 5), nn.Sigmoid(), nn.Linear(5, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.3)
    X, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    nn.functional.cross_entropy(net(X), y).backward()
    assert N.hidden_unit_spread(net[0].weight.grad) == 0.0
    assert N.hidden_unit_spread(net[2].weight.grad.T) == 0.0
    assert float(net[0].weight.grad.abs().max()) > 0  # a real gradient, not zero


def test_symmetry_constant_stays_random_breaks(digits):
    r = N.symmetry(data=digits, seed=0, **defaults("symmetry"))
    v = r.values
    assert v["constant_in_relative"] < 1e-5 and v["constant_out_relative"] < 1e-5
    assert v["random_in_relative"] > 1e-2 and v["random_out_relative"] > 1e-2
    assert v["constant_in_moved"] > 1e-3  # trained, not merely untouched
    # One effective hidden unit cannot separate ten digits; the random net can.
    assert v["random_test_accuracy"] > 0.9
    assert v["constant_test_accuracy"] < v["random_test_accuracy"] - 0.3
    assert r.holds
    _json_ok(r)


# --------------------------------------------------------------------------- gradient flow


@pytest.fixture(scope="module")
def flow(digits):
    return N.gradient_flow(data=digits, seed=0, **defaults("gradient_flow"))


def test_sigmoid_gradients_vanish_toward_the_input(flow):
    v = flow.values
    assert v["sigmoid_normal_first_last_ratio"] < 1e-2
    assert (v["sigmoid_normal_first_weight_grad"] < v["sigmoid_normal_middle_weight_grad"]
            < v["sigmoid_normal_last_weight_grad"])


def test_relu_normal_explodes_at_the_analytic_rate(flow):
    """Backward through a ReLU layer with N(0, 1) weights multiplies the squared signal norm by
    fan_in (the weights) times 1/2 (the ReLU mask): sqrt(width / 2) per hidden layer, and
    sqrt(width) for the output layer (no mask there). Within a factor of 10 of that."""
    depth, width = defaults("gradient_flow")["depth"], defaults("gradient_flow")["width"]
    v = flow.values
    expected = math.log10(math.sqrt(width)) + (depth - 1) * math.log10(math.sqrt(width / 2))
    assert abs(math.log10(v["relu_normal_signal_ratio"]) - expected) < 1.0
    assert v["relu_normal_over_kaiming"] > 1e3
    # Weight gradients are all huge, but the first/last ratio is not: the forward activations
    # grow by the same factor the backward signal does.
    assert 1e-2 < v["relu_normal_first_last_ratio"] < 1e2


def test_kaiming_keeps_gradients_of_one_order(flow):
    v = flow.values
    assert 0.1 <= v["relu_kaiming_first_last_ratio"] <= 10
    assert 0.1 <= v["relu_kaiming_signal_ratio"] <= 10
    assert flow.holds


def test_gradient_flow_figure_and_determinism(digits, flow):
    png = flow.figures["gradient_flow"]
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    again = N.gradient_flow(data=digits, seed=0, **defaults("gradient_flow"))
    assert again.as_json() == flow.as_json()
    assert again.figures["gradient_flow"] == png  # byte-stable
    _json_ok(flow)


# --------------------------------------------------------------------------- activations


def test_activations_against_formulas_and_finite_differences():
    args = defaults("activations")
    r = N.activations(**args)
    x = np.array(args["x"], dtype=np.float64)
    rows = np.array(r.tables[0].rows, dtype=np.float64)  # x, leaky, d leaky, prelu, d prelu
    a, p = args["negative_slope"], 0.25
    assert r.values["prelu_initial_slope"] == float(nn.PReLU().weight.detach()[0]) == p
    np.testing.assert_allclose(rows[:, 1], np.where(x > 0, x, a * x), atol=1e-6)
    np.testing.assert_allclose(rows[:, 3], np.where(x > 0, x, p * x), atol=1e-6)
    # Central differences away from the kink; at 0 torch's convention is the slope.
    h = 1e-6
    for col, slope in ((2, a), (4, p)):
        f = (lambda t, s=slope: np.where(t > 0, t, s * t))
        fd = (f(x + h) - f(x - h)) / (2 * h)
        away = np.abs(x) > 1e-3
        np.testing.assert_allclose(rows[away, col], fd[away], atol=1e-6)
        np.testing.assert_allclose(rows[x == 0, col], slope)
    assert r.values["book_example_max_err"] < 5e-5  # the book prints four decimals
    assert r.values["prelu_slope_grad"] == pytest.approx(float(np.minimum(x, 0).sum()))
    # The book's derivative -gamma for x <= 0 is a sign slip: the claim as printed fails.
    assert r.values["negative_side_derivative"] == pytest.approx(a)
    assert not r.holds
    _json_ok(r)
