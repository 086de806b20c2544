"""Numerical lessons: derivatives by differences, gradient descent, and why training needs a loss.

Five lessons from file 003 ("Deep Learning from Scratch", ch. 4: numerical differentiation,
gradient descent, the two-layer net trained by numerical gradients) and file 004 (section 3.3:
the worked gradient-descent example and the learning rate). Each function is pure: it takes
keyword-only settings, draws randomness only from the seeded streams of `dlbasics.rng`, and
returns a `LessonResult` whose values and tables depend on nothing but its arguments (no
timings: the cost of numerical gradients is reported as a count of forward passes).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbasics.data import Prepared
from dlbasics.figures import png_bytes, pyplot
from dlbasics.lessons.base import LessonResult, Table
from dlbasics.rng import torch_generator
from dlbasics.scratch import numerical_gradient

__all__ = [
    "accuracy_signal",
    "gradient_descent_2d",
    "learning_rates",
    "numerical_training",
    "objective_j",
    "objective_j_grad",
    "rounding",
]

# The settings (dlbasics.config's lesson classes and params.yaml): file 003 writes h = 1e-30 for
# its "too small" step (the book it summarises uses 1e-50: both vanish against x = 5), h = 1e-4
# for the central difference, lr 0.1 and weight_init_std 0.01 for the two-layer net; 004 3.3.3
# gives the start (-2, 3), lr 0.1 and 20 steps.

# What the sources print, for the comparisons in the measured sentences and values.
_SOURCE_PARTIAL_X0_AT_3_4 = 6.00000000000378  # file 003: d/dx0 (x0^2 + 4^2) at x0 = 3, h = 1e-4
_BOOK_START_J = (-2.0, 3.0)  # file 004 3.3.3: start, lr and step count of the worked example
_BOOK_LR_J = 0.1
_BOOK_STEPS_J = 20
_BOOK_POINTS_J = [  # file 004 3.3.3: P1..P10 as printed (rounded to 3 decimals)
    (-1.6, 2.2), (-1.28, 1.56), (-1.024, 1.048), (-0.819, 0.638), (-0.655, 0.311),
    (-0.524, 0.049), (-0.419, -0.161), (-0.336, -0.329), (-0.268, -0.463), (-0.215, -0.571),
]
_BOOK_END_J = (-0.023, -0.954)  # file 004 3.3.3: "the valley is near (-0.023, -0.954)"
_J_MIN, _W_MIN = 4.0, (0.0, -1.0)
# The end points after 100 steps from (-3, 4) (h = 1e-4) as printed by the book file 003
# summarises (file 003 itself keeps only the sentence: too large diverges, too small stalls).
_BOOK_START_GD, _BOOK_STEPS_GD, _BOOK_H_GD = (-3.0, 4.0), 100, 1e-4
_BOOK_END_GD = {0.1: (-6.11110793e-10, 8.14814391e-10), 10.0: (-2.58983747e13, -1.29524862e12),
                1e-10: (-2.99999994, 3.99999992)}

_SERIES_STEPS = (0, 1, 2, 5, 10, 20, 50, 100)  # distance table of gradient_descent_2d


def _lr_key(lr: float) -> str:
    """A learning rate as it appears in value names: 0.1 -> '0.1', 1e-10 -> '1e-10'."""
    return f"{lr:g}"


# ----------------------------------------------------------------------------- 1. rounding


def _poly(x, dtype):
    """f(x) = 0.01 x^2 + 0.1 x evaluated entirely in `dtype` (numpy scalar type)."""
    x = dtype(x)
    return dtype(0.01) * x * x + dtype(0.1) * x


def _differences_at(x0: float, h_tiny: float, h: float) -> dict[str, float]:
    """f'(x0) by formula and by differences: forward with h_tiny (float32, float64), forward and
    central with h (float64) and central with h in float32."""
    out = {"analytic": 0.02 * x0 + 0.1}
    for name, dt in (("float32", np.float32), ("float64", np.float64)):
        # The numerator is where rounding strikes: x + h_tiny == x in either precision, so
        # f(x + h) - f(x) is exactly 0. Dividing in float64 keeps the quotient defined even
        # where h_tiny itself underflows in float32 (1e-50 -> 0 would give 0 / 0).
        numerator = _poly(dt(x0) + dt(h_tiny), dt) - _poly(x0, dt)
        out[f"tiny_{name}"] = float(numerator) / h_tiny
    out["forward"] = float((_poly(x0 + h, np.float64) - _poly(x0, np.float64)) / h)
    out["central"] = float((_poly(x0 + h, np.float64) - _poly(x0 - h, np.float64)) / (2 * h))
    # The central difference at the same h in float32: its rounding error eps32 * f / h
    # outweighs the truncation error.
    h32 = np.float32(h)
    out["central32"] = float((_poly(np.float32(x0) + h32, np.float32)
                              - _poly(np.float32(x0) - h32, np.float32)) / (np.float32(2) * h32))
    return out


def rounding(*, x: list[float], h_tiny: float, h: float) -> LessonResult:
    """Forward/central differences of f(x) = 0.01 x^2 + 0.1 x at each x (unitless) vs f'(x).

    f is the book's example function (file 003 keeps the text, not the function); the partial
    derivative of x0^2 + 4^2 at x0 = 3 is file 003's own example.
    """
    if not x:
        raise ValueError("rounding: x must name at least one point")
    rows, values = [], {}
    tiny_all_zero, central_errs, forward_errs = True, [], []
    for x0 in x:
        d = _differences_at(x0, h_tiny, h)
        exact = d["analytic"]
        for name in ("float32", "float64"):
            values[f"forward_tiny_{name}_x{x0:g}"] = d[f"tiny_{name}"]
            tiny_all_zero &= d[f"tiny_{name}"] == 0.0
        forward_errs.append(abs(d["forward"] - exact))
        central_errs.append(abs(d["central"] - exact))
        values[f"forward_x{x0:g}"] = d["forward"]
        values[f"central_x{x0:g}"] = d["central"]
        values[f"central_float32_x{x0:g}"] = d["central32"]
        values[f"analytic_x{x0:g}"] = exact
        rows.append([x0, exact, d["tiny_float32"], d["tiny_float64"], d["forward"],
                     forward_errs[-1], d["central"], central_errs[-1], d["central32"],
                     abs(d["central32"] - exact)])
    # File 003's own example: d/dx0 of x0^2 + 4^2 at x0 = 3 by the central difference.
    partial = ((3.0 + h) ** 2 + 4.0**2 - ((3.0 - h) ** 2 + 4.0**2)) / (2 * h)
    values.update({
        "h_tiny": h_tiny,
        "h_tiny_in_float32": float(np.float32(h_tiny)),
        "forward_abs_error_max": max(forward_errs),
        "central_abs_error_max": max(central_errs),
        "central_float32_abs_error_max": max(r[-1] for r in rows),
        "partial_x0_at_3_4": partial,
        "partial_x0_at_3_4_source": _SOURCE_PARTIAL_X0_AT_3_4,
    })
    holds = bool(tiny_all_zero and max(central_errs) < 1e-6
                 and max(central_errs) < min(forward_errs))
    return LessonResult(
        title="Numerical differentiation: rounding against truncation",
        source="file 003, numerical differentiation (4.3.1-4.3.2)",
        claim=(f"A far too small step (h = {h_tiny:g}) gives a derivative of 0 because x + h "
               f"rounds to x; the central difference with h = {h:g} matches the analytic "
               "derivative, better than the forward difference."),
        measured=_rounding_measured(values, h_tiny, h, tiny_all_zero),
        holds=holds, values=values, tables=[_rounding_table(rows, h_tiny, h)],
    )


def _rounding_measured(values: dict[str, Any], h_tiny: float, h: float,
                       tiny_all_zero: bool) -> str:
    """The measured sentences of `rounding` from its values."""
    return (
        f"With h = {h_tiny:g} the forward difference is {'exactly 0' if tiny_all_zero else 'not 0'}"
        f" at every x in float32 and float64 (x + h rounds to x). With h = {h:g} the forward "
        f"difference is off by up to {values['forward_abs_error_max']:.1e} (its truncation error "
        f"0.01 h), the central one by at most {values['central_abs_error_max']:.1e} in float64 "
        f"(but {values['central_float32_abs_error_max']:.1e} in float32); file 003's d/dx0 (x0^2 "
        f"+ 4^2) at 3 comes out {values['partial_x0_at_3_4']!r} (it prints "
        f"{_SOURCE_PARTIAL_X0_AT_3_4!r})."
    )


def _rounding_table(rows: list[list[float]], h_tiny: float, h: float) -> Table:
    """One row per x: the analytic derivative, then each difference and its absolute error."""
    return Table(
        title=f"f(x) = 0.01x^2 + 0.1x: differences against f'(x) = 0.02x + 0.1 (h = {h:g})",
        columns=["x", "analytic", f"forward h={h_tiny:g} float32", f"forward h={h_tiny:g} float64",
                 "forward", "forward abs error", "central", "central abs error",
                 "central float32", "central float32 abs error"],
        rows=rows,
    )


# ----------------------------------------------------------------------------- 2. GD in 2-D


def _power(base: float, n: int) -> float:
    """base ** n, but +-inf instead of OverflowError (a diverging closed form at many steps)."""
    try:
        return base**n
    except OverflowError:
        return math.copysign(math.inf, base if n % 2 else 1.0)


def _gd_class(start_norm: float, end_norm: float, moved: float) -> str:
    """Name what one gradient-descent run did from its start/end distances to the minimum."""
    if end_norm > start_norm:
        return "diverged"
    if moved <= 1e-6 * start_norm:
        return "barely moved"
    if end_norm <= 1e-6 * start_norm:
        return "reached the minimum"
    return "converging"


def _gd_expected(lr: float, steps: int) -> str:
    """The class the closed form x_k = (1 - 2 lr)^k x_0 predicts for f = x0^2 + x1^2."""
    factor = abs(1.0 - 2.0 * lr)
    if factor > 1.0:
        return "diverged"
    # 1 - factor^steps is the fraction of the distance covered (expm1 keeps it exact for tiny lr).
    covered = -math.expm1(steps * math.log(factor)) if factor > 0 else 1.0
    if covered <= 1e-6:
        return "barely moved"
    if 1.0 - covered <= 1e-6:
        return "reached the minimum"
    return "converging"


def _descend_numerical(x0: Tensor, lr: float, steps: int,
                       h: float) -> tuple[Tensor, list[float], int | None]:
    """`steps` updates x <- x - lr grad f by central differences from x0 [2]: the end point [2],
    the distances |x| by step [steps + 1] and the first step whose gradient was exactly 0."""
    x = x0.clone()
    dist, stall = [float(x0.norm())], None
    for step in range(1, steps + 1):
        (grad,) = numerical_gradient(lambda x=x: (x**2).sum(), [x], h)
        # Once |x| is so large that x +- h rounds to x, the central difference is exactly 0
        # and the iterate freezes: record where, it explains a finite "divergence".
        if stall is None and bool((grad == 0).all()) and bool((x != 0).any()):
            stall = step
        x -= lr * grad
        dist.append(float(x.norm()))
    return x, dist, stall


def _gd_rate(start: list[float], lr: float, steps: int, h: float,
             book: tuple[float, float] | None) -> tuple[dict[str, Any], list, list[float], bool]:
    """One learning rate's run from `start` [2]: its values (names end in lr<k>), its table row,
    its distances |x| by step, and whether it did what the closed form (and the book, where
    given) says."""
    x0 = torch.tensor(start, dtype=torch.float64)
    x, dist, stall = _descend_numerical(x0, lr, steps, h)
    closed = [_power(1.0 - 2.0 * lr, steps) * s for s in start]
    moved = float((x - x0).norm())
    measured_class, expected = _gd_class(dist[0], dist[-1], moved), _gd_expected(lr, steps)
    ok = measured_class == expected
    k = _lr_key(lr)
    values: dict[str, Any] = {}
    if book is not None:
        # The book prints 9 significant digits: agree to that (lr 10's frozen point included).
        same = all(math.isclose(float(a), b, rel_tol=1e-8) for a, b in zip(x, book))
        values[f"matches_book_lr{k}"] = same
        ok &= same
    values.update({
        f"end_x0_lr{k}": float(x[0]), f"end_x1_lr{k}": float(x[1]),
        f"end_distance_lr{k}": dist[-1], f"closed_form_x0_lr{k}": closed[0],
        f"closed_form_x1_lr{k}": closed[1], f"class_lr{k}": measured_class,
        f"gradient_zero_from_step_lr{k}": stall if stall is not None else -1,
    })
    row = [lr, float(x[0]), float(x[1]), dist[-1], closed[0], closed[1],
           measured_class, expected, stall if stall is not None else "",
           f"({book[0]:.9g}, {book[1]:.9g})" if book is not None else ""]
    return values, row, dist, ok


def gradient_descent_2d(
    *, start: list[float], lrs: list[float], steps: int, h: float = 1e-4
) -> LessonResult:
    """Gradient descent on f(x0, x1) = x0^2 + x1^2 from `start` [2] by numerical gradients."""
    if len(start) != 2 or not lrs:
        raise ValueError("gradient_descent_2d: start needs 2 coordinates and lrs at least one rate")
    rows, series_rows, values, curves = [], [], {}, {}
    holds = True
    at_book = tuple(start) == _BOOK_START_GD and steps == _BOOK_STEPS_GD and h == _BOOK_H_GD
    for lr in lrs:
        book = _BOOK_END_GD.get(lr) if at_book else None
        rate_values, row, dist, ok = _gd_rate(start, lr, steps, h, book)
        values.update(rate_values)
        holds &= ok
        rows.append(row)
        series_rows.append([lr, *[dist[s] for s in _SERIES_STEPS if s <= steps]])
        curves[_lr_key(lr)] = dist
    start_distance = float(torch.tensor(start, dtype=torch.float64).norm())
    values.update({"start_distance": start_distance, "steps": steps})
    return LessonResult(
        title="Gradient descent in two dimensions and the learning rate",
        source="file 003, gradient method (4.4.1)",
        claim=("Gradient descent with numerical gradients reaches the minimum (0, 0) of "
               "x0^2 + x1^2 at lr 0.1, diverges at lr 10 and barely moves at lr 1e-10."),
        measured=_gd_measured(start, lrs, steps, values), holds=bool(holds), values=values,
        tables=[
            Table(title=f"end points after {steps} steps", columns=[
                "lr", "x0", "x1", "|x|", "closed form x0", "closed form x1", "measured",
                "expected (closed form)", "gradient exactly 0 from step", "book prints"],
                rows=rows),
            Table(title="|x| (distance to the minimum) by step",
                  columns=["lr", *[f"step {s}" for s in _SERIES_STEPS if s <= steps]],
                  rows=series_rows),
        ],
        figures={"gradient_descent_2d": _gd_figure(curves)},
    )


def _gd_figure(curves: dict[str, list[float]]) -> bytes:
    """The distance to the minimum by step, one line per learning rate, log scale (PNG)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    for k, dist in curves.items():
        # log scale: a distance of exactly 0 (lr = 0.5 jumps to the minimum) cannot be drawn.
        ax.plot(range(len(dist)), [d if d > 0 else math.nan for d in dist], label=f"lr = {k}")
    ax.set(yscale="log", xlabel="step", ylabel="|x| (distance to the minimum)",
           title="gradient descent on x0^2 + x1^2")
    ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.15, top=0.9)
    return png_bytes(fig)


def _gd_measured(start: list[float], lrs: list[float], steps: int,
                 values: dict[str, Any]) -> str:
    """The measured sentences of gradient_descent_2d from its values."""
    parts = []
    for lr in lrs:
        k = _lr_key(lr)
        part = (f"lr {k}: ({values[f'end_x0_lr{k}']:.3g}, {values[f'end_x1_lr{k}']:.3g}), "
                f"{values[f'class_lr{k}']}")
        if values[f"gradient_zero_from_step_lr{k}"] > 0:
            part += (f" until the numerical gradient became exactly 0 at step "
                     f"{values[f'gradient_zero_from_step_lr{k}']} (x +- h rounds to x), where it "
                     "froze instead of reaching the closed form's "
                     f"{values[f'closed_form_x0_lr{k}']:.2g}")
        parts.append(part)
    compared = [k for k in values if k.startswith("matches_book_lr")]
    book_note = ""
    if compared:
        same = all(values[k] for k in compared)
        book_note = (" The end points the book behind file 003 prints are "
                     + ("all reproduced to their 9 digits." if same else "not all reproduced."))
    return (
        f"After {steps} steps from ({start[0]:g}, {start[1]:g}): " + "; ".join(parts) + ". "
        "File 003 prints no end points, only that a too large rate diverges to a large value and "
        "a too small one barely updates, as x <- (1 - 2 lr) x predicts (|1 - 2 lr| = "
        + ", ".join(f"{abs(1 - 2 * lr):g}" for lr in lrs) + ")." + book_note
    )


# ----------------------------------------------------------------------------- 3. learning rates


def objective_j(w1: float, w2: float) -> float:
    """File 004's J(w1, w2) = w1^2 + w2^2 + 2 w2 + 5 (minimum 4 at (0, -1))."""
    return w1 * w1 + w2 * w2 + 2 * w2 + 5


def objective_j_grad(w1: float, w2: float) -> tuple[float, float]:
    """The analytic gradient of J: (dJ/dw1, dJ/dw2) = (2 w1, 2 w2 + 2)."""
    return 2 * w1, 2 * w2 + 2


def _descend_j(start: Sequence[float], lr: float, steps: int) -> list[tuple[float, float]]:
    """Plain Python gradient descent on J, as 004 writes it: the points P0..P_steps."""
    w1, w2 = float(start[0]), float(start[1])
    points = [(w1, w2)]
    for _ in range(steps):
        g1, g2 = objective_j_grad(w1, w2)
        w1, w2 = w1 - lr * g1, w2 - lr * g2
        points.append((w1, w2))
    return points


def _lr_class(points: list[tuple[float, float]]) -> str:
    """diverging / oscillating / slow / converging, judged from the points alone."""
    dist = [math.hypot(a - _W_MIN[0], b - _W_MIN[1]) for a, b in points]
    if dist[-1] > dist[0]:
        return "diverging"
    signs = [math.copysign(1.0, a - _W_MIN[0]) if a != _W_MIN[0] else 0.0 for a, _ in points]
    if len(points) > 2 and all(s * t < 0 for s, t in itertools.pairwise(signs)):
        return "oscillating"
    if dist[-1] > 0.5 * dist[0]:
        return "slow"
    return "converging"


# What 004's wording leads one to expect for the caller's usual labels.
_EXPECTED_LR_CLASS = {"too small": "slow", "right": "converging", "oscillating": "oscillating",
                      "diverging": "diverging"}


def _worked_example_rows(book: list[tuple[float, float]], steps: int) -> tuple[bool, list[list]]:
    """Whether the points P0..P_steps of lr 0.1 from 004's start match what 004 prints, and
    the comparison rows (point, measured w1, w2, printed w1, w2, same)."""
    j0, j1 = objective_j(*book[0]), objective_j(*book[1])
    w_end = book[-1]
    book_ok, rows = True, []
    # Compare with 004's printed points at its own precision (3 decimals).
    for i, (p, q) in enumerate(zip(book[1:], _BOOK_POINTS_J), start=1):
        same = round(p[0], 3) == q[0] and round(p[1], 3) == q[1]
        book_ok &= same
        rows.append([f"P{i}", p[0], p[1], q[0], q[1], "yes" if same else "no"])
    end_same = round(w_end[0], 3) == _BOOK_END_J[0] and round(w_end[1], 3) == _BOOK_END_J[1]
    book_ok &= end_same and math.isclose(j0, 24.0) and math.isclose(j1, 16.8)
    rows.append([f"P{steps}", w_end[0], w_end[1], *_BOOK_END_J, "yes" if end_same else "no"])
    return book_ok, rows


def _lr_runs(start: list[float], steps: int, lrs: dict[str, float]
             ) -> tuple[dict[str, Any], list[list], dict[str, tuple], bool]:
    """Descend J at each labelled rate: its values, its table rows, {label: (lr, points
    [steps + 1], J - J_min by step)}, and whether every class is the one 004's wording leads
    one to expect."""
    values: dict[str, Any] = {}
    rows, trajectories, class_ok = [], {}, True
    for label, lr in lrs.items():
        pts = _descend_j(start, lr, steps)
        gap = [objective_j(*p) - _J_MIN for p in pts]  # = squared distance to (0, -1)
        cls = _lr_class(pts)
        expected = _EXPECTED_LR_CLASS.get(label)
        class_ok &= expected is None or cls == expected
        trajectories[label] = (lr, pts, gap)
        key = re.sub(r"\W+", "_", label).strip("_")  # "too small" -> "too_small" in names
        values[f"class_{key}"] = cls
        values[f"gap_end_{key}"] = gap[-1]
        values[f"factor_{key}"] = 1.0 - 2.0 * lr
        rows.append([label, lr, 1.0 - 2.0 * lr, gap[0], gap[1], gap[-1], pts[-1][0], pts[-1][1],
                     cls, expected or ""])
    return values, rows, trajectories, class_ok


def _lr_figure(trajectories: dict[str, tuple], start: list[float]) -> bytes:
    """w1 by step and J - J_min by step (log), one line per labelled rate (PNG)."""
    plt = pyplot()
    # J is round (both coordinates shrink by the same 1 - 2 lr), so every path runs along the one
    # line through the start and (0, -1): plot w1 by step (the sign flips show the oscillation)
    # rather than paths in the plane, which would all overlap.
    fig, (ax_w, ax_gap) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    for label, (lr, pts, gap) in trajectories.items():
        line, = ax_w.plot(range(len(pts)), [p[0] for p in pts], marker=".", markersize=3,
                          linewidth=0.8, label=f"{label} ({lr:g})")
        ax_gap.plot(range(len(gap)), [g if g > 0 else math.nan for g in gap],
                    color=line.get_color(), label=f"{label} ({lr:g})")
    ax_w.axhline(_W_MIN[0], color="black", linewidth=0.5)
    ax_w.set(xlabel="step", ylabel="w1 (optimum 0)", title="w1 by step",
             ylim=(-3 * abs(start[0]) - 1, 3 * abs(start[0]) + 1))
    ax_gap.set(yscale="log", xlabel="step", ylabel="J - J_min", title="J - J_min by step")
    ax_gap.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.3)
    return png_bytes(fig)


def _lr_tables(steps: int, rows: list[list], book_rows: list[list]) -> list[Table]:
    """The worked example against 004's print (when compared), then the labelled rates."""
    tables = [Table(title="learning rates on J (distance to (0, -1) scales by |1 - 2 lr| per step)",
                    columns=["label", "lr", "1 - 2 lr", "J - J_min start", "after 1 step",
                             f"after {steps} steps", "w1 end", "w2 end", "measured",
                             "expected"], rows=rows)]
    if book_rows:
        tables.insert(0, Table(title="worked example, lr 0.1: measured points against 004's print",
                               columns=["point", "w1", "w2", "book w1", "book w2",
                                        "same at 3 d.p."],
                               rows=book_rows))
    return tables


def learning_rates(*, start: list[float], steps: int, lrs: dict[str, float]) -> LessonResult:
    """004's worked example on J(w1, w2) (lr 0.1) and J - J_min per step for each labelled lr."""
    if steps < 1 or len(start) != 2:
        raise ValueError("learning_rates: needs steps >= 1 and a start of 2 coordinates")
    # The worked example: the book's lr 0.1 from `start` for `steps` steps.
    book = _descend_j(start, _BOOK_LR_J, steps)
    w_1, w_end = book[1], book[-1]
    j0, j1 = objective_j(*book[0]), objective_j(*w_1)
    at_book_settings = tuple(start) == _BOOK_START_J and steps == _BOOK_STEPS_J
    values: dict[str, Any] = {
        "J_start": j0, "w1_step1": w_1[0], "w2_step1": w_1[1], "J_step1": j1,
        "w1_end": w_end[0], "w2_end": w_end[1], "J_end": objective_j(*w_end), "steps": steps,
    }
    book_ok, book_rows = _worked_example_rows(book, steps) if at_book_settings else (True, [])
    values["matches_book"] = bool(book_ok) if at_book_settings else "n/a"
    lr_values, rows, trajectories, class_ok = _lr_runs(start, steps, lrs)
    values.update(lr_values)

    classes = ", ".join(f"{label} (lr {lr:g}): {row[8]}"
                        for (label, (lr, _, _)), row in zip(trajectories.items(), rows))
    measured = (
        f"One step at lr 0.1 from ({start[0]:g}, {start[1]:g}) lands on ({w_1[0]:.4g}, "
        f"{w_1[1]:.4g}) with J {j0:.4g} -> {j1:.4g}; after {steps} steps w = ({w_end[0]:.3f}, "
        f"{w_end[1]:.3f})" + (", every printed point of 004 reproduced to 3 decimals. " if
                              at_book_settings and book_ok else ". ")
        + f"Classified from the trajectories: {classes}."
    )
    return LessonResult(
        title="The gradient-descent update and the learning rate",
        source="file 004, 3.3.3 (and 3.11.1 on the learning rate)",
        claim=("One step w <- w - 0.1 grad J from (-2, 3) gives (-1.6, 2.2) and J 24 -> 16.8; "
               "20 steps end near (-0.023, -0.954). A too small rate crawls, a large one "
               "oscillates across the valley, a too large one diverges."),
        measured=measured, holds=bool((book_ok if at_book_settings else True) and class_ok),
        values=values, tables=_lr_tables(steps, rows, book_rows),
        figures={"learning_rates": _lr_figure(trajectories, start)},
    )


# ----------------------------------------------------------------------------- helpers (data)


def _n_classes(data: Prepared) -> int:
    """Number of classes: the manifest's n_outputs / n_classes / class_names, else from labels."""
    m = data.manifest
    for key in ("n_outputs", "n_classes"):
        if m.get(key):
            return int(m[key])
    if m.get("class_names"):
        return len(m["class_names"])
    return int(max(int(s.y.max()) for s in data.splits.values() if len(s.y)) + 1)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless minibatch index tensors: a fresh seeded permutation of 0..n-1 per epoch."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield perm[i:i + batch_size]


# ----------------------------------------------------------------------------- 4. accuracy signal


def _train_softmax_regression(X: Tensor, y: Tensor, n_classes: int, *, seed: int, epochs: int,
                              batch_size: int, lr: float) -> nn.Linear:
    """Softmax regression X [N, F] -> logits [N, C] (weights N(0, 0.01^2), zero bias) trained
    by minibatch SGD on cross-entropy for `epochs` epochs."""
    n, n_features = X.shape
    # skip_init: no default (global-RNG) initialisation; the weights come from a seeded stream.
    model = nn.utils.skip_init(nn.Linear, n_features, n_classes)
    gen_init = torch_generator(seed, "lessons", "accuracy_signal", "init")
    with torch.no_grad():
        model.weight.copy_(torch.randn(n_classes, n_features, generator=gen_init) * 0.01)
        model.bias.zero_()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    batches = _batches(n, batch_size,
                       torch_generator(seed, "lessons", "accuracy_signal", "batches"))
    steps = epochs * math.ceil(n / batch_size)
    for _ in range(steps):
        idx = next(batches)
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
    return model


class _LogitProbe:
    """The logits X W^T + b [N, C] of a linear model with one parameter moved at a time, and
    their accuracy and loss against labels y [N]; parameter j indexes W [C, F] flattened, then
    b [C]."""

    def __init__(self, X: Tensor, y: Tensor, W: Tensor, b: Tensor):
        self.X, self.y, self.W, self.b = X, y, W, b
        self.base = X @ W.T + b

    def moved(self, j: int, d: float) -> Tensor:
        """The logits with parameter j moved by d: only its class's column changes, by d x_j (a
        weight) or d (a bias), so one column is recomputed, not X W^T."""
        z = self.base.clone()
        if j < self.W.numel():
            c, f = divmod(j, self.W.shape[1])
            z[:, c] += d * self.X[:, f]
        else:
            z[:, j - self.W.numel()] += d
        return z

    def accuracy(self, z: Tensor | None = None) -> float:
        """Accuracy [0, 1] of logits z (default: the unmoved ones)."""
        z = self.base if z is None else z
        return float((z.argmax(dim=1) == self.y).double().mean())

    def loss(self, z: Tensor | None = None) -> float:
        """Mean cross-entropy (nats) of logits z (default: the unmoved ones)."""
        return float(F.cross_entropy(self.base if z is None else z, self.y))

    def loss_gradient(self) -> Tensor:
        """dL/dW flattened, then dL/db [C * F + C], by autograd at the unmoved parameters."""
        Wg, bg = self.W.clone().requires_grad_(True), self.b.clone().requires_grad_(True)
        F.cross_entropy(self.X @ Wg.T + bg, self.y).backward()
        return torch.cat([Wg.grad.reshape(-1), bg.grad])


def _probe_derivatives(probe: _LogitProbe, chosen: Tensor, h: float
                       ) -> tuple[dict[str, Any], list[bool]]:
    """Central differences (step h) of accuracy and loss wrt each chosen parameter [probes],
    summarised against autograd; and per probe whether it can matter (a bias, or a weight on
    an input that is not zero in every row)."""
    dead_inputs = (probe.X == 0).all(dim=0)  # constant-zero pixels: their weights cannot matter
    n_weights, n_features = probe.W.numel(), probe.W.shape[1]
    acc_d, loss_d, live = [], [], []
    for j in chosen.tolist():
        plus, minus = probe.moved(j, h), probe.moved(j, -h)
        acc_p, loss_p = probe.accuracy(plus), probe.loss(plus)
        acc_m, loss_m = probe.accuracy(minus), probe.loss(minus)
        acc_d.append((acc_p - acc_m) / (2 * h))
        loss_d.append((loss_p - loss_m) / (2 * h))
        live.append(j >= n_weights or not bool(dead_inputs[j % n_features]))
    acc_d_t, loss_d_t = torch.tensor(acc_d), torch.tensor(loss_d)
    live_t = torch.tensor(live)
    summary = {
        "fraction_accuracy_derivative_zero": float((acc_d_t == 0).double().mean()),
        "fraction_loss_derivative_nonzero": float((loss_d_t != 0).double().mean()),
        "fraction_loss_derivative_nonzero_live": (
            float((loss_d_t[live_t] != 0).double().mean()) if live_t.any() else 0.0),
        "probes_on_constant_inputs": int((~live_t).sum()),
        "loss_vs_autograd_max_abs_diff": float(
            (loss_d_t - probe.loss_gradient()[chosen]).abs().max()),
        "loss_derivative_abs_median": float(loss_d_t.abs().median()),
    }
    return summary, live


def _accuracy_slice(probe: _LogitProbe, j: int) -> tuple[np.ndarray, list[float], list[float]]:
    """Parameter j moved by 201 offsets in [-0.5, 0.5]: (offsets, accuracy, loss) at each."""
    offsets = np.linspace(-0.5, 0.5, 201)
    acc_line, loss_line = [], []
    for d in offsets:
        z = probe.moved(j, float(d))
        acc_line.append(probe.accuracy(z))
        loss_line.append(probe.loss(z))
    return offsets, acc_line, loss_line


def accuracy_signal(
    *, data: Prepared, seed: int, epochs: int, batch_size: int, lr: float, probes: int, h: float
) -> LessonResult:
    """Central differences (step h) of train accuracy [0, 1] and loss (nats) wrt `probes` weights.

    The model is a softmax regression X [N, F] -> logits [N, C] trained by minibatch SGD first.
    """
    if probes < 1 or epochs < 0 or batch_size < 1:
        raise ValueError("accuracy_signal: needs probes >= 1, epochs >= 0 and batch_size >= 1")
    X, y = data.splits["train"].X.float(), data.splits["train"].y.long()
    model = _train_softmax_regression(X, y, _n_classes(data), seed=seed, epochs=epochs,
                                      batch_size=batch_size, lr=lr)
    # Probe the trained model in float64: the question is about the functions, not float32 noise.
    probe = _LogitProbe(X.double(), y, model.weight.detach().double().clone(),
                        model.bias.detach().double().clone())
    n_params = probe.W.numel() + probe.b.numel()
    probes = min(probes, n_params)
    chosen = torch.randperm(n_params, generator=torch_generator(
        seed, "lessons", "accuracy_signal", "probes"))[:probes]
    summary, live = _probe_derivatives(probe, chosen, h)

    # A 1-D slice through the first probed parameter that can matter (not on a constant-zero
    # pixel): accuracy is a staircase of flat steps, the loss a smooth curve.
    j0 = int(chosen[live.index(True)]) if any(live) else int(chosen[0])
    offsets, acc_line, loss_line = _accuracy_slice(probe, j0)
    values = {
        "train_accuracy": probe.accuracy(), "train_loss": probe.loss(), "probes": probes,
        "n_params": n_params, **summary,
        "slice_accuracy_levels": len(set(acc_line)), "slice_points": len(offsets),
    }
    holds = (values["fraction_accuracy_derivative_zero"] >= 0.9
             and values["fraction_loss_derivative_nonzero_live"] == 1.0
             and values["loss_vs_autograd_max_abs_diff"] < 1e-6)
    return LessonResult(
        title="Why the loss, not the accuracy, is what training differentiates",
        source="file 003, why a loss function (4.2.5)",
        claim=("The accuracy's derivative with respect to a weight is zero almost everywhere "
               "(a small change flips no prediction), so it gives no direction; the loss changes "
               "continuously and its derivative does."),
        measured=_accuracy_signal_measured(values, epochs, h), holds=bool(holds), values=values,
        tables=[_accuracy_signal_table(values, h)],
        figures={"accuracy_signal": _accuracy_signal_figure(offsets, acc_line, loss_line, j0)},
    )


def _accuracy_signal_figure(offsets: np.ndarray, acc_line: list[float], loss_line: list[float],
                            j: int) -> bytes:
    """Train accuracy (steps) and loss (second axis) along the slice through parameter j (PNG)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    ax.plot(offsets, acc_line, color="tab:red", drawstyle="steps-mid", label="train accuracy")
    ax.set(xlabel=f"change of parameter #{j}", ylabel="train accuracy",
           title="one weight moved: accuracy steps, loss flows")
    ax2 = ax.twinx()
    ax2.plot(offsets, loss_line, color="tab:blue", label="train loss")
    ax2.set_ylabel("train loss")
    fig.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 0.17))
    fig.subplots_adjust(left=0.15, right=0.85, bottom=0.15, top=0.9)
    return png_bytes(fig)


def _accuracy_signal_table(values: dict[str, Any], h: float) -> Table:
    """The accuracy_signal values as one quantity per row."""
    v = values
    return Table(
        title=f"{v['probes']} randomly chosen parameters, central differences with h = {h:g}",
        columns=["quantity", "value"],
        rows=[["train accuracy", v["train_accuracy"]], ["train loss", v["train_loss"]],
              ["fraction d(accuracy) = 0", v["fraction_accuracy_derivative_zero"]],
              ["fraction d(loss) != 0", v["fraction_loss_derivative_nonzero"]],
              ["fraction d(loss) != 0, inputs not constant",
               v["fraction_loss_derivative_nonzero_live"]],
              ["probes on constant-zero inputs", v["probes_on_constant_inputs"]],
              ["max |d(loss) numerical - autograd|", v["loss_vs_autograd_max_abs_diff"]],
              ["median |d(loss)|", v["loss_derivative_abs_median"]],
              [f"accuracy levels on a {v['slice_points']}-point slice",
               v["slice_accuracy_levels"]]],
    )


def _accuracy_signal_measured(values: dict[str, Any], epochs: int, h: float) -> str:
    """The measured sentence of accuracy_signal from its values."""
    v = values
    return (
        f"After {epochs} epochs (train accuracy {v['train_accuracy']:.3f}), moving one of "
        f"{v['probes']} random parameters by +-{h:g} left the training accuracy unchanged for "
        f"{v['fraction_accuracy_derivative_zero']:.1%} of them, while the loss changed for "
        f"{v['fraction_loss_derivative_nonzero']:.1%} "
        f"({v['fraction_loss_derivative_nonzero_live']:.1%} of those not attached to a "
        f"constant-zero pixel), with central differences within "
        f"{v['loss_vs_autograd_max_abs_diff']:.1e} of autograd's gradient."
    )


# ----------------------------------------------------------------------------- 5. two-layer net


_TWO_LAYER_NAMES = ("W1", "b1", "W2", "b2")  # the order of params below
_MNIST_NET_PARAMS = 784 * 50 + 50 + 50 * 10 + 10  # file 003's 784-50-10 net


def _two_layer_loss(params: Sequence[Tensor], X: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of the net X [N, F] -> sigmoid(X W1 + b1) W2 + b2 [N, C] -> scalar."""
    W1, b1, W2, b2 = params
    return F.cross_entropy(torch.sigmoid(X @ W1 + b1) @ W2 + b2, y)


def _two_layer_accuracy(params: Sequence[Tensor], X: Tensor, y: Tensor) -> float:
    """Accuracy [0, 1] of the same net's argmax prediction on X [N, F] against y [N]."""
    W1, b1, W2, b2 = params
    with torch.no_grad():
        return float(((torch.sigmoid(X @ W1 + b1) @ W2 + b2).argmax(dim=1) == y).double().mean())


def _two_layer_init(n_features: int, hidden: int, n_classes: int, seed: int) -> list[Tensor]:
    """W1 [F, hidden], b1 [hidden], W2 [hidden, C], b2 [C] in float64, as file 003 initialises
    them: weight_init_std 0.01 for both weight matrices, zero biases."""
    gen = torch_generator(seed, "lessons", "numerical_training", "init")
    return [torch.randn(n_features, hidden, generator=gen, dtype=torch.float64) * 0.01,
            torch.zeros(hidden, dtype=torch.float64),
            torch.randn(hidden, n_classes, generator=gen, dtype=torch.float64) * 0.01,
            torch.zeros(n_classes, dtype=torch.float64)]


def _backprop_grads(params: Sequence[Tensor], X: Tensor, y: Tensor) -> tuple[float, list[Tensor]]:
    """The two-layer net's loss at params and its gradients (shaped like params) by autograd."""
    leaves = [p.clone().requires_grad_(True) for p in params]
    loss = _two_layer_loss(leaves, X, y)
    return float(loss.detach()), list(torch.autograd.grad(loss, leaves))


def _gradient_check(params: list[Tensor], X: Tensor, y: Tensor,
                    h: float) -> dict[str, dict[str, float]]:
    """Numerical (step h) against backprop gradients at params on one batch X [B, F]: per
    parameter name, the mean and max |difference| and the mean |backprop gradient|."""
    probe = [p.clone() for p in params]
    num = numerical_gradient(lambda: _two_layer_loss(probe, X, y), probe, h)
    _, bp = _backprop_grads(params, X, y)
    names = _TWO_LAYER_NAMES
    return {"mean": {k: float((a - b).abs().mean()) for k, a, b in zip(names, num, bp)},
            "max": {k: float((a - b).abs().max()) for k, a, b in zip(names, num, bp)},
            "scale": {k: float(b.abs().mean()) for k, b in zip(names, bp)}}


def _train_both(init: list[Tensor], X: Tensor, y: Tensor, order: list[Tensor], lr: float,
                h: float) -> tuple[list[Tensor], list[Tensor], list[float], list[float]]:
    """SGD from `init` over the batches `order`, once by numerical gradients (step h), once by
    backprop: (end parameters numerical, backprop, batch losses numerical, backprop)."""
    p_num = [p.clone() for p in init]
    p_bp = [p.clone() for p in init]
    loss_num, loss_bp = [], []
    for idx in order:
        Xb, yb = X[idx], y[idx]
        with torch.no_grad():
            loss_num.append(float(_two_layer_loss(p_num, Xb, yb)))
        grads = numerical_gradient(lambda Xb=Xb, yb=yb: _two_layer_loss(p_num, Xb, yb),
                                   p_num, h)
        with torch.no_grad():
            for p, g in zip(p_num, grads):
                p -= lr * g
        loss, grads = _backprop_grads(p_bp, Xb, yb)
        loss_bp.append(loss)
        with torch.no_grad():
            for p, g in zip(p_bp, grads):
                p -= lr * g
    return p_num, p_bp, loss_num, loss_bp


def _end_of_training(init: list[Tensor], p_num: list[Tensor], p_bp: list[Tensor],
                     splits: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Train loss at the start and at the end, train and test accuracy at the end, of both
    trainings; splits: {"train": (X, y) used for training, "test": (X, y)}."""
    (X, y), (X_test, y_test) = splits["train"], splits["test"]
    with torch.no_grad():
        return {
            "train_loss_start": float(_two_layer_loss(init, X, y)),
            "train_loss_end_backprop": float(_two_layer_loss(p_bp, X, y)),
            "train_loss_end_numerical": float(_two_layer_loss(p_num, X, y)),
            "train_accuracy_backprop": _two_layer_accuracy(p_bp, X, y),
            "train_accuracy_numerical": _two_layer_accuracy(p_num, X, y),
            "test_accuracy_backprop": _two_layer_accuracy(p_bp, X_test, y_test),
            "test_accuracy_numerical": _two_layer_accuracy(p_num, X_test, y_test),
        }


def numerical_training(
    *, data: Prepared, seed: int, hidden: int, rows: int, batch_size: int, steps: int, lr: float,
    h: float,
) -> LessonResult:
    """F-hidden-C sigmoid net (float64): gradient check, then SGD by numerical grads vs backprop.

    Uses the first `rows` training rows [rows, F]; losses are mean cross-entropy (nats).
    """
    if min(hidden, rows, batch_size) < 1 or steps < 0:
        raise ValueError("numerical_training: hidden, rows, batch_size >= 1 and steps >= 0")
    X = data.splits["train"].X[:rows].double()
    y = data.splits["train"].y[:rows].long()
    n, n_features = X.shape
    n_classes = _n_classes(data)
    init = _two_layer_init(n_features, hidden, n_classes, seed)
    n_params = sum(p.numel() for p in init)
    batches = _batches(n, batch_size, torch_generator(seed, "lessons", "numerical_training",
                                                      "batches"))
    order = [next(batches) for _ in range(steps)]  # one batch order shared by both nets

    # (a) Gradient check at the start, on the first batch.
    check_idx = order[0] if order else torch.arange(min(batch_size, n))
    check = _gradient_check(init, X[check_idx], y[check_idx], h)
    # (b) The same start and batches, trained once by numerical gradients, once by backprop.
    p_num, p_bp, loss_num, loss_bp = _train_both(init, X, y, order, lr, h)
    end = _end_of_training(init, p_num, p_bp, {
        "train": (X, y), "test": (data.splits["test"].X.double(), data.splits["test"].y.long())})

    forwards_num = 2 * n_params  # two loss evaluations per parameter per step
    curve_diff = max((abs(a - b) for a, b in zip(loss_num, loss_bp)), default=0.0)
    values: dict[str, Any] = {
        **{f"gradcheck_mean_abs_diff_{k}": v for k, v in check["mean"].items()},
        **{f"gradcheck_max_abs_diff_{k}": v for k, v in check["max"].items()},
        **{f"grad_mean_abs_{k}": v for k, v in check["scale"].items()},
        "loss_curve_max_abs_diff": curve_diff,
        "param_max_abs_diff_end": max(float((a - b).abs().max()) for a, b in zip(p_num, p_bp)),
        "batch_loss_first": loss_bp[0] if loss_bp else math.nan,
        "batch_loss_last": loss_bp[-1] if loss_bp else math.nan,
        **end,
        "n_params": n_params, "forward_passes_per_step_numerical": forwards_num,
        "forward_passes_per_step_backprop": 1,
        "forward_passes_total_numerical": forwards_num * steps,
        "forward_passes_per_step_numerical_784_50_10": 2 * _MNIST_NET_PARAMS,
        "steps": steps,
    }
    holds = (max(check["mean"].values()) < 1e-7 and curve_diff < 1e-7
             and end["train_loss_end_backprop"] < end["train_loss_start"])
    return LessonResult(
        title="Training a two-layer net by numerical gradients, checked against backprop",
        source="file 003, implementing the learning algorithm (4.5)",
        claim=("Numerical gradients (central differences) agree with backpropagation, so a net "
               "trained with either follows the same path; backpropagation is far cheaper, since "
               "numerical gradients need two forward passes per parameter per step."),
        measured=_numerical_training_measured(values, check, (n_features, hidden, n_classes)),
        holds=bool(holds), values=values,
        tables=_numerical_training_tables(values, check, init, len(check_idx), h,
                                          loss_num, loss_bp),
        figures={"numerical_training": _numerical_training_figure(loss_num, loss_bp)},
    )


def _numerical_training_figure(loss_num: list[float], loss_bp: list[float]) -> bytes:
    """The two batch-loss curves by step, and their absolute difference (log scale) (PNG)."""
    plt = pyplot()
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(8.0, 3.0))
    ax.plot(range(1, len(loss_bp) + 1), loss_bp, label="backprop", linewidth=2.5, alpha=0.5)
    ax.plot(range(1, len(loss_num) + 1), loss_num, label="numerical", linestyle="--")
    ax.set(xlabel="step", ylabel="batch loss", title="two trainings, same start and batches")
    ax.legend(fontsize=7)
    diffs = [abs(a - b) for a, b in zip(loss_num, loss_bp)]
    ax_d.plot(range(1, len(diffs) + 1), [d if d > 0 else math.nan for d in diffs], marker=".")
    ax_d.set(yscale="log", xlabel="step", ylabel="|loss numerical - loss backprop|",
             title="difference of the curves")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.3)
    return png_bytes(fig)


def _numerical_training_tables(values: dict[str, Any], check: dict[str, dict[str, float]],
                               init: list[Tensor], check_rows: int, h: float,
                               loss_num: list[float], loss_bp: list[float]) -> list[Table]:
    """The gradient check per parameter, the two loss curves by step, the end and the cost."""
    v = values
    return [
        Table(title=f"gradient check at the start, one batch of {check_rows}, h = {h:g}",
              columns=["parameter", "shape", "mean |numerical - backprop|",
                       "max |numerical - backprop|", "mean |backprop grad|"],
              rows=[[k, "x".join(str(s) for s in p.shape), check["mean"][k], check["max"][k],
                     check["scale"][k]] for k, p in zip(_TWO_LAYER_NAMES, init)]),
        Table(title="training by numerical gradients against backprop",
              columns=["step", "batch loss numerical", "batch loss backprop", "|difference|"],
              rows=[[i + 1, a, b, abs(a - b)] for i, (a, b) in enumerate(zip(loss_num, loss_bp))]),
        Table(title="end of training and cost",
              columns=["", "numerical", "backprop"],
              rows=[["train loss", v["train_loss_end_numerical"], v["train_loss_end_backprop"]],
                    ["train accuracy", v["train_accuracy_numerical"],
                     v["train_accuracy_backprop"]],
                    ["test accuracy", v["test_accuracy_numerical"],
                     v["test_accuracy_backprop"]],
                    ["forward passes per step", v["forward_passes_per_step_numerical"], 1]]),
    ]


def _numerical_training_measured(values: dict[str, Any], check: dict[str, dict[str, float]],
                                 sizes: tuple[int, int, int]) -> str:
    """The measured sentences of numerical_training; sizes: (F, hidden, C)."""
    v = values
    ta_bp, ta_num = v["test_accuracy_backprop"], v["test_accuracy_numerical"]
    test_acc = (f"{ta_bp:.3f} for both" if ta_bp == ta_num
                else f"{ta_num:.3f} numerical, {ta_bp:.3f} backprop")
    return (
        f"Numerical and backprop gradients of the {'-'.join(map(str, sizes))} net differ "
        f"by {min(check['mean'].values()):.1e} to {max(check['mean'].values()):.1e} on average "
        f"per parameter (W1, b1, W2, b2); over {v['steps']} SGD steps the two loss curves differ "
        f"by at most {v['loss_curve_max_abs_diff']:.1e} (training loss "
        f"{v['train_loss_start']:.4f} -> {v['train_loss_end_backprop']:.4f}, "
        f"test accuracy {test_acc}). Numerical gradients "
        f"cost {v['forward_passes_per_step_numerical']} forward passes per step "
        f"({2 * _MNIST_NET_PARAMS} for file 003's "
        "784-50-10 net) against one forward and one backward pass."
    )
