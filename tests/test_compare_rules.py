"""compare's decisions on their own, in-process (tests/test_compare.py runs them through git and
the dvc CLI): what counts as a number, the tolerance at its exact boundary, the relative
difference, the diff's order and values, the metrics file's checks and the summary line.
Mutation testing (make mutate) found these untested at their edges."""

from __future__ import annotations

import math

import pytest

from dlbasics.report.compare import (
    CompareError,
    MetricChange,
    Rule,
    Tolerance,
    _is_nan,
    _is_number,
    diff_metrics,
    parse_metrics,
    relative_difference,
    summary_line,
)

PLAIN = Tolerance(rtol=0.25, atol=0.5, rules=())


def test_numbers_are_ints_and_floats_not_booleans():
    assert _is_number(1) and _is_number(1.5) and _is_number(math.nan)
    assert not _is_number(True) and not _is_number("1") and not _is_number(None)
    assert _is_nan(math.nan) and not _is_nan(1.0) and not _is_nan("nan") and not _is_nan(None)


def test_the_tolerance_boundary_itself_is_within():
    # |2 - 1| = 1 = atol 0.5 + rtol 0.25 * max(1, 2): exactly at the allowance, not beyond it.
    assert not PLAIN.is_change("v", "m", 1.0, 2.0) and not PLAIN.is_change("v", "m", 2.0, 1.0)
    assert PLAIN.is_change("v", "m", 1.0, 2.0 + 2 ** -40)


@pytest.mark.parametrize("old, new, changed", [
    ("a", "a", False), ("a", "b", True), (None, 1.0, True), (1.0, None, True),
    (True, False, True), (1, 1.0, False), (math.nan, math.nan, False), (math.nan, 0.0, True),
    (0.0, math.nan, True), (math.inf, math.inf, False), (math.inf, -math.inf, True),
    (1.0, math.inf, True), (-math.inf, 1.0, True)])
def test_what_counts_as_a_change_beyond_numbers(old, new, changed):
    assert PLAIN.is_change("v", "m", old, new) is changed


def test_a_rule_sets_the_tolerance_of_its_metrics_first_match_first():
    tol = Tolerance(rtol=0.0, atol=0.0, rules=(Rule("a/*", 0.5, 0.0, "x"),
                                               Rule("*/m", 0.0, 0.0, "y")))
    assert tol.rule_for("a", "m").pattern == "a/*" and tol.rule_for("b", "m").pattern == "*/m"
    assert tol.rule_for("b", "n") is None
    assert tol.for_metric("a", "m") == (0.5, 0.0) and tol.for_metric("b", "n") == (0.0, 0.0)
    assert not tol.is_change("a", "m", 1.0, 1.5) and tol.is_change("b", "m", 1.0, 1.5)


@pytest.mark.parametrize("name, value", [("rtol", -1e-9), ("atol", -1), ("rtol", math.inf),
                                         ("atol", math.nan), ("rtol", "0.1"), ("atol", None)])
def test_a_bad_tolerance_is_one_line(name, value):
    with pytest.raises(CompareError) as info:
        Tolerance(**{name: value})
    assert str(info.value) == f"{name} must be a finite number >= 0, got {value!r}"


def test_zero_tolerances_are_allowed():
    tol = Tolerance(rtol=0, atol=0.0, rules=())
    assert not tol.is_change("v", "m", 1.5, 1.5) and tol.is_change("v", "m", 1.5, 1.5000001)


@pytest.mark.parametrize("old, new, want", [
    (1.0, 1.0, 0.0), (1.0, 3.0, 2 / 3), (3.0, 1.0, 2 / 3), (-2.0, 2.0, 2.0), (0.0, 0.0, 0.0),
    (0, 4, 1.0), (math.nan, math.nan, 0.0), ("a", "a", 0.0), (math.inf, math.inf, 0.0),
    (None, None, 0.0)])
def test_relative_difference(old, new, want):
    assert relative_difference(old, new) == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize("old, new", [(math.nan, 1.0), (1.0, math.nan), (math.inf, 1.0),
                                      (1.0, -math.inf), ("a", "b"), (None, 1.0), (1.0, "1")])
def test_relative_difference_is_nan_when_not_comparable(old, new):
    assert math.isnan(relative_difference(old, new))


def test_the_diff_keeps_the_values_and_orders_changed_new_removed():
    base = {"a": {"x": 1.0, "y": 2.0, "only_old": 3.0}, "b": {"x": 1.0},
            "gone": {"x": 4.0, "y": 5.0}, "gone2": {"z": 6.0}}
    new = {"fresh": {"x": 7.0, "y": 8.0}, "b": {"x": 1.5, "only_new": 9.0},
           "a": {"x": 1.0, "y": 2.0}, "fresh2": {"w": 0.5}}
    d = diff_metrics(base, new, PLAIN)
    assert d.changes == [
        MetricChange("b", "only_new", None, 9.0),
        MetricChange("a", "only_old", 3.0, None),
        MetricChange("fresh", "x", None, 7.0), MetricChange("fresh", "y", None, 8.0),
        MetricChange("fresh2", "w", None, 0.5),
        MetricChange("gone", "x", 4.0, None), MetricChange("gone", "y", 5.0, None),
        MetricChange("gone2", "z", 6.0, None)]
    assert d.new_variants == ["fresh", "fresh2"] and d.removed_variants == ["gone", "gone2"]
    # b's x: 1 -> 1.5 is within 0.5 + 0.25 * 1.5; a's x and y are equal: three within, and the
    # largest relative difference is b's.
    assert d.within == 3 and d.largest == (pytest.approx(1 / 3), "b", "x")
    assert d.changed_variants == ["b", "a", "fresh", "fresh2", "gone", "gone2"]


def test_a_change_beyond_tolerance_keeps_both_values():
    d = diff_metrics({"v": {"m": 1.0}}, {"v": {"m": 3.0}}, PLAIN)
    assert d.changes == [MetricChange("v", "m", 1.0, 3.0)] and d.within == 0
    assert d.largest is None
    # The rule of that variant and metric is the one applied, not another's.
    tol = Tolerance(rtol=0.0, atol=0.0, rules=(Rule("v/m", 1.0, 0.0, "loose"),))
    d = diff_metrics({"v": {"m": 1.0, "n": 1.0}, "w": {"m": 1.0}},
                     {"v": {"m": 3.0, "n": 1.5}, "w": {"m": 1.5}}, tol)
    assert d.changes == [MetricChange("v", "n", 1.0, 1.5), MetricChange("w", "m", 1.0, 1.5)]
    assert d.within == 1 and d.largest == (pytest.approx(2 / 3), "v", "m")


def test_the_largest_difference_is_the_first_of_equals_and_never_zero():
    same = {"a": {"m": 1.0}, "b": {"m": 1.0}}
    assert diff_metrics(same, same, PLAIN).largest is None
    d = diff_metrics({"a": {"m": 1.0}, "b": {"m": 1.0}, "c": {"m": 2.0}},
                     {"a": {"m": 1.25}, "b": {"m": 1.25}, "c": {"m": 2.0}}, PLAIN)
    assert d.largest == (pytest.approx(0.2), "a", "m") and d.within == 3
    d = diff_metrics({"a": {"m": 1.0}, "b": {"m": 1.0}}, {"a": {"m": 1.1}, "b": {"m": 1.25}},
                     PLAIN)
    assert d.largest[1:] == ("b", "m")


def test_parse_metrics_accepts_the_table_and_names_the_file_otherwise():
    assert parse_metrics(b'{"v": {"m": 1.5}}', "x.json") == {"v": {"m": 1.5}}
    assert parse_metrics(b"{}", "x.json") == {}
    with pytest.raises(CompareError) as info:
        parse_metrics(b"{not json", "base:reports/metrics.json")
    assert str(info.value).startswith("base:reports/metrics.json: not valid JSON (")
    for data, found in [(b"[1, 2]", "list"), (b"3", "int"), (b"null", "NoneType"),
                        (b'{"v": 5}', "a variant holding int"),
                        (b'{"v": {"m": 1}, "w": [1]}', "a variant holding list")]:
        with pytest.raises(CompareError) as info:
            parse_metrics(data, "m.json")
        assert str(info.value) == (
            "m.json: expected {variant: {metric: value}}, found " + found), data


def test_the_summary_line():
    tol = Tolerance(rtol=1e-3, atol=1e-6, rules=(Rule("v/*", 0.1, 0.0, "why"),))
    d = diff_metrics({"a": {"m": 1.0}}, {"a": {"m": 1.0}}, tol)
    assert summary_line(d, tol) == (
        "1 metric within rounding (rtol 0.001, atol 1e-6; looser for `v/*`); all identical")
    d = diff_metrics({"a": {"m": 1.0, "n": 2.0}}, {"a": {"m": 1.0, "n": 2.0002}}, tol)
    assert summary_line(d, tol) == (
        "2 metrics within rounding (rtol 0.001, atol 1e-6; looser for `v/*`); largest relative "
        "difference 1e-4 (a n)")
    d = diff_metrics({"v": {"m": 1.0}}, {"v": {"m": 1.05}}, tol)
    assert summary_line(d, tol).endswith("; largest relative difference 0.048 (v m, rule `v/*`)")
    empty = diff_metrics({}, {}, PLAIN)
    assert summary_line(empty, PLAIN) == "0 metrics within rounding (rtol 0.25, atol 0.5)"
    two = Tolerance(rtol=0.1, atol=0.0, rules=(Rule("a", 0, 0, ""), Rule("b", 0, 0, "")))
    assert two.describe() == "rtol 0.1, atol 0; looser for `a`, `b`"


def test_a_metric_null_on_one_side_and_absent_on_the_other_is_a_change():
    d = diff_metrics({"v": {"m": None, "n": 1.0}}, {"v": {"n": 1.0}}, PLAIN)
    assert d.changes == [MetricChange("v", "m", None, None)] and d.within == 1


def test_the_summary_names_the_rule_of_that_metric():
    tol = Tolerance(rtol=1e-3, atol=0.0, rules=(Rule("*/m", 0.1, 0.0, "why"),))
    d = diff_metrics({"v": {"m": 1.0, "n": 1.0}}, {"v": {"m": 1.05, "n": 1.0}}, tol)
    assert summary_line(d, tol).endswith("(v m, rule `*/m`)")
