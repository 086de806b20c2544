"""Derivatives by differences and gradient descent on a function of two variables.

Three lessons from file 003 ("Deep Learning from Scratch", ch. 4: numerical differentiation and
gradient descent) and file 004 (section 3.3: the worked gradient-descent example and the learning
rate): `rounding` (forward and central differences, and the step too small for float32),
`gradient_descent_2d` (descent by numerical gradients at several learning rates) and
`learning_rates` (the book's worked example, and a rate too small, right, oscillating, too large).
Each function is pure: keyword-only settings in, a `LessonResult` out that depends on nothing but
its arguments.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dlbasics.learn.scratch import numerical_gradient
from dlbasics.lessons.base import LessonResult, Table
from dlbasics.report.figures import png_bytes, pyplot

__all__ = ["gradient_descent_2d", "learning_rates", "objective_j", "objective_j_grad", "rounding"]

# The settings (dlbasics.config.lessons and params.yaml): file 003 writes h = 1e-30 for
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
