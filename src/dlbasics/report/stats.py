"""How sure a comparison is: paired differences over folds or seeds, with a t interval.

Two variants scored on the same folds (or the same seeds) are paired: fold i of one is compared
with fold i of the other, so the spread that both share (an easy fold, a lucky seed) cancels.
The interval is the t interval of the mean paired difference, the same as scipy.stats.t.interval
and scipy.stats.ttest_rel's confidence interval: the quantiles come from scipy.special.stdtrit,
the function scipy.stats.t.ppf calls (importing scipy.stats takes about 2 s, scipy.special a
tenth of that; the report stage pays it on every edit).
"""

from __future__ import annotations

import math
from typing import Sequence


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of a[i] - b[i] and its t interval.

    a, b: one score per fold or seed, [n] each, in the same order (n >= 2).
    Returns {mean, sd (of the differences, ddof 1), ci_low, ci_high, n, confidence,
    excludes_zero}.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same length, found {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, found {len(a)}")
    res = mean_interval([float(x) - float(y) for x, y in zip(a, b)], confidence)
    return {**res, "excludes_zero": bool(res["ci_low"] > 0 or res["ci_high"] < 0)}


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of `values` (n >= 2), their sd (ddof 1) and the t interval of the mean:
    {mean, sd, ci_low, ci_high, n, confidence}."""
    from scipy import special

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), found {confidence}")
    v = [float(x) for x in values]
    n = len(v)
    if n < 2:
        raise ValueError(f"an interval needs at least 2 values, found {n}")
    mean = math.fsum(v) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    if sd == 0.0:
        # Every value the same: no spread, the interval is the point.
        low = high = mean
    else:
        # As scipy.stats.t.interval computes it: ppf(q) * scale + loc at the two tails.
        scale = sd / math.sqrt(n)
        low, high = (special.stdtrit(n - 1, q) * scale + mean
                     for q in ((1.0 - confidence) / 2, (1.0 + confidence) / 2))
    return {"mean": mean, "sd": sd, "ci_low": float(low), "ci_high": float(high), "n": n,
            "confidence": confidence}


def _num(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s  # no "-0.0"


def describe_difference(name_a: str, name_b: str, result: dict, unit: str = "points",
                        scale: float = 100, digits: int = 1, higher_is_better: bool = True) -> str:
    """One sentence on a paired_difference result, e.g. "dropout beats no dropout by 0.8 +/- 0.3
    points (95% interval 0.2 to 1.4); the interval excludes zero".

    scale turns the score's units into the sentence's (100: fractions to percentage points);
    +/- is the sd of the paired differences. For a loss pass higher_is_better=False.
    """
    mean, sd = result["mean"] * scale, result["sd"] * scale
    low, high = result["ci_low"] * scale, result["ci_high"] * scale
    unit = f" {unit}" if unit else ""
    level = f"{result.get('confidence', 0.95) * 100:g}%"
    if float(_num(mean, digits)) == 0:
        head = f"{name_a} and {name_b} differ by {_num(0, digits)} +/- {_num(sd, digits)}{unit}"
    else:
        if not higher_is_better:  # a lower loss is the better one
            mean, low, high = -mean, -high, -low
        if mean < 0:  # name the better one first, so the gap reads as a positive number
            name_a, name_b, mean, low, high = name_b, name_a, -mean, -high, -low
        head = f"{name_a} beats {name_b} by {_num(mean, digits)} +/- {_num(sd, digits)}{unit}"
    return (f"{head} ({level} interval {_num(low, digits)} to {_num(high, digits)}); "
            + ("the interval excludes zero" if result["excludes_zero"]
               else "the interval includes zero: no difference shown"))
