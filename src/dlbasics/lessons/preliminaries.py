"""Lessons on the tensor preliminaries (d2l ch. 2) and two worked examples of d2l ch. 3.

Each lesson computes a small mechanism with torch and checks it against an independent
oracle (NumPy, an analytic result, scikit-learn) inside the lesson; the tests repeat those
checks from the outside. Everything but `vectorisation`'s wall times is deterministic.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from dlbasics.lessons.base import LessonResult, Table
from dlbasics.rng import torch_generator

SOURCE_CH2 = "file 002"


def _rows(t: torch.Tensor) -> list[list[float]]:
    """A 2-D tensor as table rows of plain floats."""
    return [[float(v) for v in row] for row in t.detach().reshape(t.shape[0], -1)]


def _shape(t) -> str:
    return str(list(t.shape))


# ----------------------------------------------------------------------------- 2.1 data operations


def broadcasting() -> LessonResult:
    """a [3, 1] + b [1, 2] -> [3, 2] by broadcasting, against NumPy and explicit expansion."""
    a = torch.arange(3).reshape((3, 1))
    b = torch.arange(2).reshape((1, 2))
    c = a + b
    # Broadcasting copies along every axis of length 1 up to the other operand's length.
    expanded = a.expand(3, 2) + b.expand(3, 2)
    oracle = a.numpy() + b.numpy()
    diff_numpy = float(np.abs(c.numpy() - oracle).max())
    diff_expand = float((c - expanded).abs().max())
    # A second, three-axis case: [2, 3, 1] + [4] -> [2, 3, 4] (trailing axes are aligned).
    p = torch.arange(6.0).reshape(2, 3, 1)
    q = torch.arange(4.0)
    pq = p + q
    diff_3d = float(np.abs(pq.numpy() - (p.numpy() + q.numpy())).max())
    holds = (tuple(c.shape) == (3, 2) and diff_numpy == 0 and diff_expand == 0
             and tuple(pq.shape) == (2, 3, 4) and diff_3d == 0)
    return LessonResult(
        title="Broadcasting: element-wise operations on different shapes",
        source=f"{SOURCE_CH2}, 2.1.3",
        claim=("Tensors of different shapes are combined element-wise by first copying each "
               "along its length-1 axes until the shapes agree: [3, 1] + [1, 2] gives [3, 2]."),
        measured=(f"a {_shape(a)} + b {_shape(b)} has shape {_shape(c)} and equals NumPy's result "
                  f"and the explicitly expanded sum exactly (max difference {diff_numpy:g}); "
                  f"[2, 3, 1] + [4] gives {_shape(pq)}, also equal to NumPy's."),
        holds=bool(holds),
        values={"a_shape": _shape(a), "b_shape": _shape(b), "result_shape": _shape(c),
                "max_abs_diff_numpy": diff_numpy, "max_abs_diff_expanded": diff_expand,
                "three_axis_shape": _shape(pq), "three_axis_max_abs_diff_numpy": diff_3d,
                "result_sum": int(c.sum())},
        tables=[Table(title="a [3, 1] + b [1, 2]", columns=["col 0", "col 1"], rows=_rows(c))],
    )


def indexing_in_place() -> LessonResult:
    """Slicing, element and block assignment on X [3, 4], and which updates keep X's storage."""
    X = torch.arange(12, dtype=torch.float32).reshape((3, 4))
    last_row, middle = X[-1].clone(), X[1:3].clone()
    X[1, 2] = 9
    after_element = X.clone()
    X[0:2, :] = 12
    after_block = X.clone()
    # Oracles: the same writes on a NumPy array.
    N = np.arange(12, dtype=np.float32).reshape(3, 4)
    slices_ok = (np.array_equal(last_row.numpy(), N[-1])
                 and np.array_equal(middle.numpy(), N[1:3]))
    N[1, 2] = 9
    element_ok = np.array_equal(after_element.numpy(), N)
    N[0:2, :] = 12
    block_ok = np.array_equal(after_block.numpy(), N)

    # Memory: data_ptr is the address of the first element of the tensor's storage.
    X = torch.arange(12, dtype=torch.float32).reshape((3, 4))
    Y = torch.tensor([[2.0, 1, 4, 3], [1, 2, 3, 4], [4, 3, 2, 1]])
    Z = torch.zeros_like(Y)
    z_before = Z.data_ptr()
    Z[:] = X + Y  # the sum is a temporary, then copied into Z's own storage
    slice_keeps = Z.data_ptr() == z_before
    x_before = X.data_ptr()
    X += Y  # in place
    iadd_keeps = X.data_ptr() == x_before
    old = X  # keep the old tensor alive so the new one cannot reuse its address by chance
    X = X + Y
    rebinding_allocates = X.data_ptr() != old.data_ptr()
    values_ok = torch.equal(Z, torch.arange(12.0).reshape(3, 4) + Y) and torch.equal(
        X, torch.arange(12.0).reshape(3, 4) + 2 * Y)

    holds = (slices_ok and element_ok and block_ok and slice_keeps and iadd_keeps
             and rebinding_allocates and values_ok)
    return LessonResult(
        title="Indexing, slicing and saving memory",
        source=f"{SOURCE_CH2}, 2.1.4-2.1.5",
        claim=("X[-1] and X[1:3] read rows; X[1, 2] = 9 and X[0:2, :] = 12 write in place. "
               "Z[:] = X + Y and X += Y write into the existing storage, while X = X + Y "
               "allocates new memory and rebinds the name."),
        measured=(f"The reads and both writes equal the same operations on a NumPy array "
                  f"({'all equal' if slices_ok and element_ok and block_ok else 'MISMATCH'}); "
                  f"data_ptr is unchanged after Z[:] = X + Y ({slice_keeps}) and X += Y "
                  f"({iadd_keeps}) and changes after X = X + Y ({rebinding_allocates})."),
        holds=bool(holds),
        values={"slices_match_numpy": bool(slices_ok),
                "element_write_matches_numpy": bool(element_ok),
                "block_write_matches_numpy": bool(block_ok),
                "slice_assign_keeps_storage": bool(slice_keeps),
                "iadd_keeps_storage": bool(iadd_keeps),
                "rebinding_allocates": bool(rebinding_allocates),
                "in_place_values_correct": bool(values_ok),
                "after_element_write_sum": float(after_element.sum()),
                "after_block_write_sum": float(after_block.sum())},
        tables=[Table(title="X after X[1, 2] = 9", columns=[f"col {j}" for j in range(4)],
                      rows=_rows(after_element)),
                Table(title="X after X[0:2, :] = 12", columns=[f"col {j}" for j in range(4)],
                      rows=_rows(after_block))],
    )


def numpy_round_trip() -> LessonResult:
    """torch -> NumPy -> torch: which conversions share memory; .item() / float() / int()."""
    X = torch.arange(12, dtype=torch.float32).reshape((3, 4))
    A = X.numpy()  # shares X's storage
    A[0, 0] = 100.0
    numpy_shares = float(X[0, 0]) == 100.0
    X[0, 1] = -7.0
    numpy_shares_back = float(A[0, 1]) == -7.0
    B = torch.from_numpy(A)  # shares A's buffer (and so X's)
    B[2, 3] = 42.0
    from_numpy_shares = float(A[2, 3]) == 42.0 and float(X[2, 3]) == 42.0
    C = torch.tensor(A)  # the notes' way back: torch.tensor always copies
    C[1, 1] = -1.0
    tensor_copies = float(A[1, 1]) != -1.0
    same_address = A.__array_interface__["data"][0] == X.data_ptr() == B.data_ptr()

    a = torch.tensor([3.5])
    item, as_float, as_int = a.item(), float(a), int(a)
    scalars_ok = item == 3.5 and as_float == 3.5 and as_int == 3  # int() truncates
    holds = numpy_shares and numpy_shares_back and from_numpy_shares and not tensor_copies
    return LessonResult(
        title="Converting between torch and NumPy",
        source=f"{SOURCE_CH2}, 2.1.6",
        claim=("A torch tensor and the NumPy array converted from it share their memory, so an "
               "in-place change to one changes the other (the notes convert with X.numpy() and "
               "back with torch.tensor(A)); a size-1 tensor becomes a Python number with "
               ".item(), float() or int()."),
        measured=(f"X.numpy() and torch.from_numpy(A) share memory (one address; writes show "
                  f"both ways: {numpy_shares and numpy_shares_back and from_numpy_shares}), but "
                  f"torch.tensor(A), the notes' way back, copies: a write to it does not reach A "
                  f"({tensor_copies}). tensor([3.5]) gives .item() {item}, float {as_float}, "
                  f"int {as_int}; the sharing claim holds for X.numpy() and torch.from_numpy "
                  f"only."),
        holds=bool(holds),
        values={"numpy_shares_memory": bool(numpy_shares and numpy_shares_back),
                "from_numpy_shares_memory": bool(from_numpy_shares),
                "torch_tensor_copies": bool(tensor_copies),
                "same_address": bool(same_address),
                "item": item, "float": as_float, "int": as_int,
                "scalars_correct": bool(scalars_ok)},
    )


# ----------------------------------------------------------------------------- 2.3 reductions


def reductions() -> LessonResult:
    """Sums along axes, keepdim, mean = sum / numel and cumsum of A [5, 4], against NumPy."""
    A = torch.arange(20, dtype=torch.float32).reshape(5, 4)
    N = A.numpy().astype(np.float64)
    checks = {
        "sum": (A.sum(), N.sum()),
        "sum_axis0": (A.sum(axis=0), N.sum(axis=0)),
        "sum_axis1": (A.sum(axis=1), N.sum(axis=1)),
        "sum_keepdim": (A.sum(axis=1, keepdim=True), N.sum(axis=1, keepdims=True)),
        "mean": (A.mean(), N.sum() / N.size),
        "mean_axis0": (A.mean(axis=0), N.sum(axis=0) / N.shape[0]),
        "normalised_rows": (A / A.sum(axis=1, keepdim=True), N / N.sum(axis=1, keepdims=True)),
        "cumsum_axis0": (A.cumsum(axis=0), N.cumsum(axis=0)),
    }
    diffs, shapes_ok = {}, True
    for name, (t, o) in checks.items():
        o = np.asarray(o)
        shapes_ok &= tuple(t.shape) == o.shape
        diffs[f"{name}_max_abs_diff"] = float(np.abs(t.numpy().astype(np.float64) - o).max())
    sum_A = A.sum(axis=1, keepdim=True)
    # The same identities inside torch: a reduced axis disappears unless keepdim keeps it.
    identities = (tuple(A.sum(axis=0).shape) == (4,) and tuple(sum_A.shape) == (5, 1)
                  and tuple(A.cumsum(axis=0).shape) == (5, 4)
                  and float(A.mean()) == float(A.sum() / A.numel())
                  and torch.allclose(A.sum(axis=[0, 1]), A.sum()))
    holds = shapes_ok and identities and max(diffs.values()) < 1e-5
    return LessonResult(
        title="Reductions: sum, mean and cumulative sum along axes",
        source=f"{SOURCE_CH2}, 2.3.6",
        claim=("Summing along an axis removes it (keepdim keeps it with length 1, so the sum "
               "broadcasts back); the mean is the sum over the number of elements; cumsum keeps "
               "the shape."),
        measured=(f"On A = arange(20) as [5, 4] every reduction equals NumPy's to "
                  f"{max(diffs.values()):.1e} with the same shapes (sum {float(A.sum()):g}, "
                  f"mean {float(A.mean()):g} = {float(A.sum()):g} / {A.numel()}; keepdim "
                  f"shape {_shape(sum_A)}; normalised rows sum to 1)."),
        holds=bool(holds),
        values={"sum": float(A.sum()), "mean": float(A.mean()), "numel": int(A.numel()),
                "sum_axis0_shape": _shape(A.sum(axis=0)), "keepdim_shape": _shape(sum_A),
                "cumsum_last_row_sum": float(A.cumsum(axis=0)[-1].sum()),
                "shapes_match_numpy": bool(shapes_ok), **diffs},
        tables=[Table(title="A.cumsum(axis=0)", columns=[f"col {j}" for j in range(4)],
                      rows=_rows(A.cumsum(axis=0)))],
    )


# ----------------------------------------------------------------------------- 2.5 autograd


def _f_control_flow(a: torch.Tensor) -> torch.Tensor:
    """d2l's f: doubles a until the norm reaches 1000, then keeps it or scales it by 100."""
    b = a * 2
    while b.norm() < 1000:
        b = b * 2
    if b.sum() > 0:
        c = b
    else:
        c = 100 * b
    return c


def _tensor_gradient_diffs() -> dict[str, float]:
    """Max |autograd - analytic gradient| at x = [0, 1, 2, 3] for y = 2 x.x, y = x * x through
    y.sum() (also against the explicit vector-Jacobian product), and z = detach(x * x) * x."""
    x = torch.arange(4.0, requires_grad=True)
    y = 2 * torch.dot(x, x)
    y.backward()
    dot_diff = float((x.grad - 4 * x.detach()).abs().max())

    # Non-scalar y: backward of y.sum() is the vector-Jacobian product with a vector of ones.
    x.grad = None
    y = x * x
    y.sum().backward()
    sum_grad = x.grad.clone()
    jac = torch.autograd.functional.jacobian(lambda t: t * t, x.detach())  # [4, 4]
    vjp = torch.ones(4) @ jac

    # detach: u has y's values but no history, so z = u * x has dz/dx = u.
    x.grad = None
    y = x * x
    u = y.detach()
    z = u * x
    z.sum().backward()
    detach_diff = float((x.grad - u).abs().max())
    x.grad = None
    y.sum().backward()  # y itself still has its graph: d(x*x)/dx = 2x
    return {"dot_grad_max_abs_diff": dot_diff,
            "sum_vjp_max_abs_diff": float((sum_grad - vjp).abs().max()),
            "sum_grad_vs_2x_max_abs_diff": float((sum_grad - 2 * x.detach()).abs().max()),
            "detach_max_abs_diff": detach_diff,
            "detached_y_grad_max_abs_diff": float((x.grad - 2 * x.detach()).abs().max())}


def _control_flow_rows() -> tuple[float, list[list[float]]]:
    """The drawn a of d2l's example and one row per a: [a, f(a), df/da, f(a) / a, relative
    difference of the two]."""
    # f is piecewise linear, f(a) = k a, so df/da = k = f(a) / a. A drawn value (fixed stream)
    # as in d2l, its negative so both branches of the `if` run, and a small value that needs
    # many passes of the loop.
    drawn = float(torch.randn((), generator=torch_generator(0, "lesson", "autograd")))
    rows = []
    for start in (drawn, -drawn, 0.003):
        a = torch.tensor(start, requires_grad=True)
        d = _f_control_flow(a)
        d.backward()
        grad, ratio = float(a.grad), float(d.detach() / start)
        rows.append([round(start, 6), float(d.detach()), grad, ratio,
                     abs(grad - ratio) / abs(grad)])
    return drawn, rows


def autograd() -> LessonResult:
    """Gradients by autograd against analytic ones: 2 x.x, y.sum(), detach, control flow."""
    diffs = _tensor_gradient_diffs()
    drawn, flow_rows = _control_flow_rows()
    flow_diff = max(row[-1] for row in flow_rows)
    holds = max(diffs.values()) == 0.0 and flow_diff < 1e-6
    return LessonResult(
        title="Automatic differentiation",
        source=f"{SOURCE_CH2}, 2.5.1-2.5.4",
        claim=("Autograd gives the gradient of y = 2 x.x as 4x; for a non-scalar y, backward of "
               "y.sum() gives the gradient; a detached u is a constant, so z = u * x has "
               "gradient u; gradients flow through Python loops and branches (df/da = f(a)/a "
               "for d2l's f)."),
        measured=(f"All four gradients equal their analytic values exactly (4x, 2x, the "
                  f"explicit vector-Jacobian product with ones, u); for d2l's f the gradient "
                  f"equals f(a) / a to {flow_diff:.1e} (relative) at a = {drawn:.4f}, "
                  f"{-drawn:.4f} (both branches of the if) and 0.003."),
        holds=bool(holds),
        values={**diffs, "control_flow_max_rel_diff": flow_diff, "control_flow_a": drawn},
        tables=[Table(title="d2l's f(a) with a while loop and an if",
                      columns=["a", "d = f(a)", "autograd df/da", "d / a", "relative diff"],
                      rows=flow_rows)],
    )


# ----------------------------------------------------------------------------- 3.1.2 vectorisation


def _vectors(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch_generator(0, "lesson", "vectorisation")
    return torch.randn(n, generator=g), torch.randn(n, generator=g)


def _loop_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c = torch.zeros(len(a))
    for i in range(len(a)):  # one Python-level operation per element: what vectorising removes
        c[i] = a[i] + b[i]
    return c


def vectorisation_times(n: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` wall seconds of adding two length-n vectors by a Python loop and by one
    vectorised add: {"loop_s", "vectorised_s", "ratio" (loop / vectorised)}."""
    a, b = _vectors(n)
    loop_s = vec_s = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        _loop_add(a, b)
        loop_s = min(loop_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        _ = a + b
        vec_s = min(vec_s, time.perf_counter() - t0)
    return {"loop_s": loop_s, "vectorised_s": vec_s,
            "ratio": loop_s / vec_s if vec_s > 0 else math.inf}


def vectorisation(*, n: int, repeats: int) -> LessonResult:
    """A Python loop and one vectorised add of two length-n vectors give the same result; the
    speed ratio is measured into `timings` only (wall time is not reproducible)."""
    a, b = _vectors(n)
    diff = float((_loop_add(a, b) - (a + b)).abs().max())
    timings = vectorisation_times(n, repeats)
    return LessonResult(
        title="Vectorisation: one library call instead of a Python loop",
        source=f"{SOURCE_CH2}, 3.1.2",
        claim=("Vectorised code computes the same thing as an element-by-element Python loop and "
               "is usually orders of magnitude faster."),
        measured=(f"Adding two vectors of {n} elements element by element and with one a + b "
                  f"gives identical results (max difference {diff:g}). The speed ratio is wall "
                  f"time, so it is measured by the benchmark and logged to MLflow, not recorded "
                  f"here."),
        holds=diff == 0.0,
        values={"n": n, "max_abs_diff": diff, "equal": diff == 0.0},
        timings=timings,
    )


# ----------------------------------------------------------------------------- 3.6 worked examples


def pick_and_accuracy() -> LessonResult:
    """d2l's y_hat [2, 3] and y [2]: the picked probabilities, their cross-entropy, accuracy."""
    from sklearn.metrics import accuracy_score

    y = torch.tensor([0, 2])
    y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]], dtype=torch.float64)
    picked = y_hat[[0, 1], y]  # row i, column y[i]: the probability given to the true class
    ce = -torch.log(picked)
    pred = y_hat.argmax(dim=1)
    acc = float((pred == y).sum()) / len(y)
    sk_acc = float(accuracy_score(y.numpy(), pred.numpy()))
    expected_ce = [-math.log(0.1), -math.log(0.5)]
    ce_diff = max(abs(float(c) - e) for c, e in zip(ce, expected_ce))
    picks_ok = [float(v) for v in picked] == [0.1, 0.5]
    holds = picks_ok and ce_diff < 1e-12 and acc == 0.5 and sk_acc == acc
    return LessonResult(
        title="Picking the true class's probability; cross-entropy and accuracy by hand",
        source=f"{SOURCE_CH2}, 3.6.4-3.6.5",
        claim=("With y_hat = [[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]] and y = [0, 2], y_hat[[0, 1], y] "
               "picks [0.1, 0.5], the cross-entropy is -log of those, and the accuracy of the "
               "argmax predictions is 0.5."),
        measured=(f"Picked [{float(picked[0]):g}, {float(picked[1]):g}], cross-entropy "
                  f"[{float(ce[0]):.4f}, {float(ce[1]):.4f}] (= -log 0.1, -log 0.5), predictions "
                  f"{pred.tolist()}, accuracy {acc} (scikit-learn: {sk_acc})."),
        holds=bool(holds),
        values={"pick_0": float(picked[0]), "pick_1": float(picked[1]),
                "cross_entropy_0": float(ce[0]), "cross_entropy_1": float(ce[1]),
                "mean_cross_entropy": float(ce.mean()), "accuracy": acc,
                "sklearn_accuracy": sk_acc, "pred_0": int(pred[0]), "pred_1": int(pred[1])},
        tables=[Table(title="per example", columns=["label", "picked", "-log picked", "argmax"],
                      rows=[[int(y[i]), float(picked[i]), round(float(ce[i]), 6), int(pred[i])]
                            for i in range(2)])],
    )


def cross_entropy_is_nll(*, seed: int, n: int, classes: int) -> LessonResult:
    """cross_entropy(z [n, classes], y [n]) against -mean(log_softmax(z)[i, y_i]) and
    nll_loss(log_softmax(z), y), on seeded random logits and labels."""
    g = torch_generator(seed, "lesson", "cross_entropy_is_nll")
    z = torch.randn(n, classes, generator=g) * 3.0  # spread so the softmax is far from uniform
    y = torch.randint(0, classes, (n,), generator=g)
    ce = F.cross_entropy(z, y)
    logp = F.log_softmax(z, dim=1)
    manual = -logp[torch.arange(n), y].mean()
    nll = F.nll_loss(logp, y)
    # An oracle outside torch: NumPy in float64 with the max-shift of d2l 3.7.2.
    zn = z.numpy().astype(np.float64)
    shifted = zn - zn.max(axis=1, keepdims=True)
    lp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    numpy_nll = float(-lp[np.arange(n), y.numpy()].mean())
    d_manual = abs(float(ce) - float(manual))
    d_nll = abs(float(ce) - float(nll))
    d_numpy = abs(float(ce) - numpy_nll)
    holds = max(d_manual, d_nll, d_numpy) < 1e-5
    return LessonResult(
        title="Cross-entropy is the negative log-likelihood of the softmax",
        source=f"{SOURCE_CH2}, 3.4.3 and 3.7.2",
        claim=("The cross-entropy loss of logits z and labels y is the mean negative log of the "
               "softmax probability of the true class, i.e. nll_loss applied to log_softmax."),
        measured=(f"On {n} random rows of {classes} logits, cross_entropy = {float(ce):.6f}; "
                  f"-mean(log_softmax(z)[i, y_i]) differs by {d_manual:.1e}, nll_loss(log_softmax) "
                  f"by {d_nll:.1e} and a float64 NumPy computation by {d_numpy:.1e}."),
        holds=bool(holds),
        values={"cross_entropy": float(ce), "manual_nll": float(manual), "nll_loss": float(nll),
                "numpy_nll": numpy_nll, "diff_manual": d_manual, "diff_nll_loss": d_nll,
                "diff_numpy": d_numpy},
    )


# ----------------------------------------------------------------------------- 2.2 preprocessing

# d2l 2.2.1's four-row table, as its CSV text ("NA" is a missing value to pandas).
HOUSE_TINY_CSV = "NumRooms,Alley,Price\nNA,Pave,127500\n2,NA,106000\n4,NA,178100\nNA,NA,140000\n"


def house_tiny() -> LessonResult:
    """d2l 2.2: read the table with pandas, fill the missing NumRooms with the column mean,
    one-hot encode Alley with a column for its missing value, and turn both parts into tensors
    X [4, 3] and y [4]; checked value by value against the table worked out by hand."""
    import io

    import pandas as pd

    data = pd.read_csv(io.StringIO(HOUSE_TINY_CSV))
    inputs, outputs = data.iloc[:, 0:2], data.iloc[:, 2]
    inputs = inputs.fillna(inputs.mean(numeric_only=True))  # NumRooms: mean of 2 and 4 is 3
    inputs = pd.get_dummies(inputs, dummy_na=True, dtype=float)  # Alley_Pave, Alley_nan
    X = torch.tensor(inputs.to_numpy(dtype=np.float64))
    y = torch.tensor(outputs.to_numpy(dtype=np.float64))
    # By hand: the mean of the known NumRooms (2, 4) is 3; only row 0 has an alley (Pave).
    X_hand = torch.tensor([[3.0, 1, 0], [2, 0, 1], [4, 0, 1], [3, 0, 1]], dtype=torch.float64)
    y_hand = torch.tensor([127500.0, 106000, 178100, 140000], dtype=torch.float64)
    columns = list(inputs.columns)
    same = (columns == ["NumRooms", "Alley_Pave", "Alley_nan"] and X.shape == (4, 3)
            and bool(torch.equal(X, X_hand)) and bool(torch.equal(y, y_hand)))
    return LessonResult(
        title="Data preprocessing: missing values, one-hot columns, tensors",
        source=f"{SOURCE_CH2}, 2.2",
        claim=("pandas reads the four-row house_tiny table; missing NumRooms become the column "
               "mean, Alley becomes one-hot columns with one for its missing value, and both "
               "parts become tensors."),
        measured=(f"Columns {columns}, X {_shape(X)} and y {_shape(y)}: every value equals the "
                  f"table worked out by hand (NumRooms filled with 3, the mean of 2 and 4; "
                  f"Alley_Pave 1 only in the first row, Alley_nan 1 in the other three)."),
        holds=bool(same),
        values={"n_missing_filled": int(data["NumRooms"].isna().sum()),
                "fill_value": float(inputs["NumRooms"].iloc[0]), "columns": ", ".join(columns)},
        tables=[Table("X and y as tensors", [*columns, "Price"],
                      [[*map(float, X[i]), float(y[i])] for i in range(4)])],
    )
