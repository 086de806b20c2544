"""The preliminaries lessons against oracles computed here: NumPy, analytic gradients,
scikit-learn's accuracy and hand-worked values from d2l's examples."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlbasics.lessons import preliminaries as P
from dlbasics.lessons import defaults


def _json_ok(result) -> None:
    """Values are flat scalars, the result is strict JSON, and no wall time leaks into it."""
    assert all(isinstance(v, (bool, int, float, str)) for v in result.values.values())
    text = json.dumps(result.as_json(), allow_nan=False)
    assert "timings" not in text


def test_broadcasting_equals_numpy():
    r = P.broadcasting()
    oracle = np.arange(3).reshape(3, 1) + np.arange(2).reshape(1, 2)
    assert np.array_equal(np.array(r.tables[0].rows), oracle)
    assert r.values["result_shape"] == str(list(oracle.shape)) == "[3, 2]"
    assert r.values["three_axis_shape"] == str(list(
        (np.arange(6.0).reshape(2, 3, 1) + np.arange(4.0)).shape))
    assert r.values["result_sum"] == int(oracle.sum())
    assert r.values["max_abs_diff_numpy"] == 0.0 and r.holds
    _json_ok(r)


def test_indexing_and_in_place_storage():
    r = P.indexing_in_place()
    A = np.arange(12, dtype=np.float32).reshape(3, 4)
    A[1, 2] = 9
    assert np.array_equal(np.array(r.tables[0].rows), A)  # d2l's printed matrix
    A[0:2, :] = 12
    assert np.array_equal(np.array(r.tables[1].rows), A)
    assert r.values["after_block_write_sum"] == float(A.sum())
    v = r.values
    assert v["slice_assign_keeps_storage"] and v["iadd_keeps_storage"]
    assert v["rebinding_allocates"] and v["in_place_values_correct"]
    assert r.holds
    _json_ok(r)


def test_numpy_round_trip_sharing_as_torch_does_it():
    r = P.numpy_round_trip()
    v = r.values
    # Independent facts the lesson's flags must agree with.
    X = torch.zeros(2, 3)
    A = X.numpy()
    assert np.shares_memory(A, torch.from_numpy(A).numpy()) == v["from_numpy_shares_memory"]
    assert (A.__array_interface__["data"][0] == X.data_ptr()) == v["numpy_shares_memory"]
    assert (torch.tensor(A).data_ptr() != X.data_ptr()) == v["torch_tensor_copies"]
    assert (v["item"], v["float"], v["int"]) == (3.5, 3.5, 3)
    # The notes' way back (torch.tensor) copies, so the sharing claim as written fails.
    assert v["torch_tensor_copies"] and not r.holds
    _json_ok(r)


def test_reductions_equal_numpy():
    r = P.reductions()
    A = np.arange(20, dtype=np.float64).reshape(5, 4)
    assert r.values["sum"] == A.sum() == 190
    assert r.values["mean"] == A.sum() / A.size == 9.5
    assert r.values["keepdim_shape"] == "[5, 1]" and r.values["sum_axis0_shape"] == "[4]"
    assert np.array_equal(np.array(r.tables[0].rows), A.cumsum(axis=0))
    assert all(v < 1e-6 for k, v in r.values.items() if k.endswith("_max_abs_diff"))
    assert r.holds
    _json_ok(r)


def _k_of_f(a: float) -> float:
    """d2l's f(a) = k a analytically: b = 2a doubled until |b| >= 1000, times 100 if b < 0."""
    k = 2.0
    while abs(a) * k < 1000:
        k *= 2
    return k if a > 0 else 100 * k


def test_autograd_against_analytic_gradients():
    r = P.autograd()
    v = r.values
    for key in ("dot_grad_max_abs_diff", "sum_vjp_max_abs_diff", "sum_grad_vs_2x_max_abs_diff",
                "detach_max_abs_diff", "detached_y_grad_max_abs_diff"):
        assert v[key] == 0.0, key
    rows = r.tables[0].rows  # a, d, autograd grad, d / a, relative diff
    assert {row[0] > 0 for row in rows} == {True, False}  # both branches of the `if`
    for a, d, grad, ratio, _ in rows:
        k = _k_of_f(a)
        assert grad == pytest.approx(k, rel=1e-6)
        assert ratio == pytest.approx(k, rel=1e-6)
    assert v["control_flow_max_rel_diff"] < 1e-6 and r.holds
    _json_ok(r)


def test_vectorisation_results_equal_and_timings_stay_out():
    r = P.vectorisation(n=500, repeats=1)
    assert r.values["equal"] and r.values["max_abs_diff"] == 0.0 and r.holds
    assert set(r.timings) == {"loop_s", "vectorised_s", "ratio"}
    assert all(t > 0 for t in r.timings.values())
    # No wall-clock number in the prose: only n and the zero difference appear.
    assert set(re.findall(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", r.measured)) <= {"500", "0"}
    _json_ok(r)


def test_vectorisation_times_shape():
    t = P.vectorisation_times(200, 2)
    assert set(t) == {"loop_s", "vectorised_s", "ratio"}
    assert t["ratio"] == pytest.approx(t["loop_s"] / t["vectorised_s"])


def test_pick_and_accuracy_worked_example():
    from sklearn.metrics import accuracy_score

    r = P.pick_and_accuracy()
    v = r.values
    assert (v["pick_0"], v["pick_1"]) == (0.1, 0.5)
    assert v["cross_entropy_0"] == pytest.approx(-math.log(0.1))
    assert v["cross_entropy_1"] == pytest.approx(-math.log(0.5))
    y_hat = np.array([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
    assert v["accuracy"] == accuracy_score([0, 2], y_hat.argmax(axis=1)) == 0.5
    assert v["sklearn_accuracy"] == 0.5 and r.holds
    _json_ok(r)


def test_cross_entropy_is_nll():
    r = P.cross_entropy_is_nll(seed=0, **defaults("cross_entropy_is_nll"))
    v = r.values
    assert max(v["diff_manual"], v["diff_nll_loss"], v["diff_numpy"]) < 1e-5 and r.holds
    assert v["cross_entropy"] == pytest.approx(v["numpy_nll"], rel=1e-6)
    other = P.cross_entropy_is_nll(seed=1, **defaults("cross_entropy_is_nll"))
    assert other.values["cross_entropy"] != v["cross_entropy"]  # the seed is used
    # The identity itself, on logits where the answer is known: uniform logits give log C.
    z, y = torch.zeros(4, 7), torch.tensor([0, 3, 6, 2])
    assert float(F.cross_entropy(z, y)) == pytest.approx(math.log(7))
    _json_ok(r)


@pytest.mark.parametrize("name", ["broadcasting", "indexing_in_place", "numpy_round_trip",
                                  "reductions", "autograd", "pick_and_accuracy"])
def test_lessons_are_deterministic(name):
    assert getattr(P, name)().as_json() == getattr(P, name)().as_json()
