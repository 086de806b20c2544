"""The numerical lessons (dlbasics.lessons.descent and dlbasics.lessons.gradients) against oracles, not snapshots.

Oracles: closed forms (a quadratic's exact derivative, x_k = (1 - 2 lr)^k x_0 for gradient
descent on a round bowl), the numbers the sources print, torch.autograd, and counts derived
from the network's shapes. Each lesson is also run at a setting where its claim must fail, so
that `holds` is shown to respond. The data lessons run on scikit-learn's bundled 8x8 digits,
split and standardised here (offline, ~1 s).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from dlbasics.data.prepared import Prepared, Split
from dlbasics.lessons import defaults, descent, gradients
from dlbasics.lessons.base import LessonResult

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits() -> Prepared:
    """Digits split 70/10/20 (stratified, fixed seeds), standardised on the training rows."""
    bunch = load_digits()
    X, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    rest, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    train, val = train_test_split(rest, test_size=0.125, random_state=1, stratify=y[rest])
    scaler = StandardScaler().fit(X[train].astype(np.float64))
    splits = {
        name: Split(torch.from_numpy(scaler.transform(X[np.sort(rows)].astype(np.float64))
                                     .astype(np.float32)),
                    torch.from_numpy(y[np.sort(rows)]))
        for name, rows in (("train", train), ("val", val), ("test", test))
    }
    manifest = {"task": "classification", "name": "images", "n_features": 64, "n_outputs": 10,
                "n_classes": 10, "class_names": [str(c) for c in range(10)]}
    return Prepared(manifest, splits)


def _check_result(r: LessonResult) -> None:
    """Shape of every lesson's result: text present, JSON-able values, PNG figures."""
    assert r.title and r.source and r.claim and r.measured
    assert isinstance(r.holds, bool)
    assert all(isinstance(v, (bool, int, float, str)) for v in r.values.values())
    assert all(isinstance(t.columns, list) and all(len(row) == len(t.columns) for row in t.rows)
               for t in r.tables)
    assert all(png.startswith(PNG) for png in r.figures.values())
    assert r.timings == {}


def test_every_lessons_settings_match_its_function():
    """Each `lessons:` key names a function whose keyword arguments are its settings (plus
    data and seed): params.yaml, dlbasics.config.lessons and the code cannot drift apart."""
    from dlbasics.config.lessons import LessonsSpec
    from dlbasics.lessons import losses, networks, preliminaries

    # The on-or-off lessons (preliminaries, house_tiny) have no settings.
    names = [n for n, f in LessonsSpec.model_fields.items() if f.annotation is not bool]
    assert len(names) == 13
    for name in names:
        kwargs = defaults(name)
        module = next(m for m in (descent, gradients, losses, networks, preliminaries)
                      if hasattr(m, name))
        params = inspect.signature(getattr(module, name)).parameters
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        required = {k for k, p in params.items() if p.default is inspect.Parameter.empty}
        assert set(kwargs) <= set(params)
        assert required - set(kwargs) <= {"data", "seed"}


# ----------------------------------------------------------------------------- 1. rounding


@pytest.mark.parametrize("h_tiny", [1e-30, 1e-50])
def test_rounding_tiny_step_gives_zero_and_central_matches(h_tiny):
    xs, h = [5.0, 10.0, -3.0], 1e-4
    r = descent.rounding(x=xs, h_tiny=h_tiny, h=h)
    _check_result(r)
    v = r.values
    for x in xs:
        exact = 0.02 * x + 0.1
        assert v[f"forward_tiny_float32_x{x:g}"] == 0.0
        assert v[f"forward_tiny_float64_x{x:g}"] == 0.0
        assert abs(v[f"central_x{x:g}"] - exact) < 1e-6
        # The forward difference of a quadratic is exactly f'(x) + 0.01 h (its truncation).
        assert v[f"forward_x{x:g}"] == pytest.approx(exact + 0.01 * h, abs=1e-9)
        # float32 at h = 1e-4: rounding error (~eps32 * f / h) dwarfs float64's.
        assert abs(v[f"central_float32_x{x:g}"] - exact) > 100 * abs(v[f"central_x{x:g}"] - exact)
    assert v["partial_x0_at_3_4"] == 6.00000000000378  # file 003's printed value, bit for bit
    assert v["h_tiny_in_float32"] == (0.0 if h_tiny == 1e-50 else pytest.approx(1e-30))
    assert r.holds


def test_rounding_fails_when_the_step_is_not_tiny():
    r = descent.rounding(x=[5.0], h_tiny=1e-2, h=1e-4)
    assert r.values["forward_tiny_float64_x5"] != 0.0
    assert not r.holds


# ----------------------------------------------------------------------------- 2. GD in 2-D


def test_gradient_descent_2d_against_the_closed_form():
    start, steps = [-3.0, 4.0], 100
    r = descent.gradient_descent_2d(**defaults("gradient_descent_2d"))
    _check_result(r)
    v = r.values
    for lr in (0.1, 1e-10):
        k = f"{lr:g}"
        closed = [(1 - 2 * lr) ** steps * s for s in start]
        assert v[f"end_x0_lr{k}"] == pytest.approx(closed[0], rel=1e-6)
        assert v[f"end_x1_lr{k}"] == pytest.approx(closed[1], rel=1e-6)
    assert math.hypot(v["end_x0_lr0.1"], v["end_x1_lr0.1"]) < 1e-8
    assert v["class_lr0.1"] == "reached the minimum"
    assert v["class_lr1e-10"] == "barely moved"
    # lr 10: |x| grows 19-fold per step until x +- h rounds to x; then the gradient is 0.
    assert v["class_lr10"] == "diverged"
    assert 1e12 < v["end_distance_lr10"] < 1e14
    assert 2 <= v["gradient_zero_from_step_lr10"] <= steps
    series = next(t for t in r.tables if t.title.startswith("|x|"))
    row10 = next(row for row in series.rows if row[0] == 10.0)
    assert row10[2] == pytest.approx(19 * 5.0, rel=1e-9)  # step 1: (1 - 2 lr) |x_0|
    assert v["matches_book_lr10"] and v["matches_book_lr0.1"] and v["matches_book_lr1e-10"]
    assert r.holds
    assert set(r.figures) == {"gradient_descent_2d"}


def test_gradient_descent_2d_fails_when_the_gradient_rounds_away():
    # h = 1e-30: x +- h rounds to x, every numerical gradient is 0 and nothing moves, against
    # the closed form's prediction that lr 0.1 reaches the minimum.
    r = descent.gradient_descent_2d(start=[-3.0, 4.0], lrs=[0.1], steps=100, h=1e-30)
    assert r.values["end_x0_lr0.1"] == -3.0 and r.values["end_x1_lr0.1"] == 4.0
    assert r.values["class_lr0.1"] == "barely moved"
    assert "matches_book_lr0.1" not in r.values  # not the book's h: no comparison with its print
    assert not r.holds
    # Too few steps: part way, which the closed form also predicts.
    few = descent.gradient_descent_2d(start=[1.0, 1.0], lrs=[0.1], steps=5)
    assert few.values["class_lr0.1"] == "converging" and few.holds


# ----------------------------------------------------------------------------- 3. learning rates


def test_objective_gradient_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    for w in torch.randn(8, 2, generator=gen, dtype=torch.float64) * 3:
        leaf = w.clone().requires_grad_(True)
        j = descent.objective_j(leaf[0], leaf[1])
        j.backward()
        g = descent.objective_j_grad(float(w[0]), float(w[1]))
        assert torch.allclose(leaf.grad, torch.tensor(g, dtype=torch.float64), atol=1e-12)
    assert descent.objective_j(0.0, -1.0) == 4.0  # the minimum


def test_learning_rates_worked_example_and_classes():
    r = descent.learning_rates(**defaults("learning_rates"))
    _check_result(r)
    v = r.values
    assert v["w1_step1"] == pytest.approx(-1.6, abs=1e-12)
    assert v["w2_step1"] == pytest.approx(2.2, abs=1e-12)
    assert v["J_start"] == 24.0
    assert v["J_step1"] == pytest.approx(16.8, abs=1e-12)
    # 20 steps: w1 = 0.8^20 * (-2), w2 + 1 = 0.8^20 * 4, printed as (-0.023, -0.954).
    assert v["w1_end"] == pytest.approx(0.8**20 * -2, rel=1e-12)
    assert v["w2_end"] == pytest.approx(0.8**20 * 4 - 1, rel=1e-12)
    assert (round(v["w1_end"], 3), round(v["w2_end"], 3)) == (-0.023, -0.954)
    assert v["matches_book"] is True
    assert (v["class_too_small"], v["class_right"], v["class_oscillating"],
            v["class_diverging"]) == ("slow", "converging", "oscillating", "diverging")
    assert r.holds


def test_learning_rates_claim_fails_for_a_mislabelled_rate():
    r = descent.learning_rates(start=[-2.0, 3.0], steps=20,
                                lrs={"too small": 0.3, "diverging": 0.6})
    assert r.values["class_too_small"] == "converging"  # |1 - 0.6| = 0.4: fast, not slow
    assert r.values["class_diverging"] == "oscillating"  # 1 - 1.2 = -0.2: converges, alternating
    assert not r.holds


# ----------------------------------------------------------------------------- 4. accuracy signal


def test_accuracy_signal(digits):
    kwargs = {**defaults("accuracy_signal"), "data": digits, "seed": 0}
    r = gradients.accuracy_signal(**kwargs)
    _check_result(r)
    v = r.values
    assert v["train_accuracy"] > 0.9  # trained: a softmax regression fits digits well
    assert v["fraction_accuracy_derivative_zero"] >= 0.9
    assert v["fraction_loss_derivative_nonzero_live"] == 1.0
    assert v["loss_vs_autograd_max_abs_diff"] < 1e-6
    # Probes on constant-zero pixels are the only zero loss derivatives.
    zero_loss = round((1 - v["fraction_loss_derivative_nonzero"]) * v["probes"])
    assert zero_loss == v["probes_on_constant_inputs"]
    assert r.holds
    # Same arguments, same result, figure bytes included (seeded init, batches and probes).
    again = gradients.accuracy_signal(**kwargs)
    assert again.as_json() == r.as_json()
    assert again.figures == r.figures


def test_accuracy_signal_fails_with_a_large_step(digits):
    r = gradients.accuracy_signal(data=digits, seed=0, epochs=1, batch_size=100, lr=0.1,
                                 probes=100, h=5.0)
    # A step of 5 per weight flips predictions for most probes, and the difference quotient no
    # longer matches the gradient: the claim (about small changes) is not what this measures.
    assert r.values["fraction_accuracy_derivative_zero"] < 0.9
    assert r.values["loss_vs_autograd_max_abs_diff"] > 1e-6
    assert not r.holds


# ----------------------------------------------------------------------------- 5. two-layer net


def test_numerical_training_matches_backprop(digits):
    hidden, rows, batch, steps = 20, 100, 10, 8
    r = gradients.numerical_training(data=digits, seed=0, hidden=hidden, rows=rows,
                                    batch_size=batch, steps=steps, lr=0.1, h=1e-4)
    _check_result(r)
    v = r.values
    for name in ("W1", "b1", "W2", "b2"):
        assert v[f"gradcheck_mean_abs_diff_{name}"] < 1e-8
        assert v[f"grad_mean_abs_{name}"] > 1e-3 * 1e-3  # the gradients are not trivially 0
    assert v["loss_curve_max_abs_diff"] < 1e-8
    assert v["param_max_abs_diff_end"] < 1e-7
    assert v["train_loss_end_backprop"] < v["train_loss_start"]
    assert v["train_loss_start"] == pytest.approx(math.log(10), abs=0.01)  # tiny init: uniform
    n_params = 64 * hidden + hidden + hidden * 10 + 10
    assert v["n_params"] == n_params
    assert v["forward_passes_per_step_numerical"] == 2 * n_params
    assert v["forward_passes_total_numerical"] == 2 * n_params * steps
    assert v["test_accuracy_backprop"] == v["test_accuracy_numerical"]
    steps_table = next(t for t in r.tables if t.title.startswith("training"))
    assert len(steps_table.rows) == steps
    assert r.holds


def test_numerical_training_gradient_check_fails_with_a_coarse_step(digits):
    r = gradients.numerical_training(data=digits, seed=0, hidden=5, rows=40, batch_size=10,
                                    steps=2, lr=0.1, h=1.0)
    # h = 1 in central differences: truncation error ~ h^2 f''' / 6 is no longer negligible.
    assert max(r.values[f"gradcheck_mean_abs_diff_{k}"] for k in ("W1", "b1", "W2", "b2")) > 1e-7
    assert not r.holds
