"""scripts/compare.py (dlbasics.report.compare) against real git repositories and the real dvc CLI: what
CI posts on a pull request. Rounding-level differences are one summary line; real changes are
listed, their variants first, with learning curves drawn against the base's."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
from conftest import REPO, run

sys.path.insert(0, str(REPO / "src"))
from dlbasics.report.compare import Tolerance, diff_metrics  # noqa: E402

SCRIPT = REPO / "scripts" / "compare.py"

# The base revision's metrics: {variant: {metric: value}} as the evaluate stage writes them.
BASE = {
    "linreg": {"test_mse": 1.2082788856828453e-04, "train_mse": 8.825371499660357e-05,
               "w_error": 3.383159637451172e-04},
    "softmax": {"test_accuracy": 0.9666666666666667, "test_log_loss": 0.14531753887484436,
                "train_accuracy": 0.9936356404136834},
    "mlp": {"test_accuracy": 0.95, "test_log_loss": 0.11123796632100154,
            "train_loss": 0.017883945661274388},
}
N_METRICS = sum(len(m) for m in BASE.values())  # 9
PARAMS = "seed: 0\ntrain:\n  linreg: {lr: 0.03}\n  softmax: {lr: 0.1}\n  mlp: {lr: 0.1}\n"
SUMMARY = re.compile(r"^(\d+) metrics? within rounding \((.*?)\)(?:; largest relative difference "
                     r"(\S+) \((\S+) ([^\s,)]+)(?:, rule `[^`]+`)?\)|; all identical)?$", re.M)


def history(scale: float = 1.0, epochs: int = 3) -> list[dict]:
    """Per-epoch records like reports/history/<variant>.json; losses times `scale`."""
    return [{"epoch": e, "train_loss": scale * 2.0 / e, "val_loss": scale * 2.2 / e,
             "test_loss": scale * 2.3 / e, "val_accuracy": 0.5 + 0.1 * e}
            for e in range(1, epochs + 1)]


def write_outputs(repo: Path, metrics: dict, histories: dict[str, list[dict]]) -> None:
    (repo / "reports" / "history").mkdir(parents=True, exist_ok=True)
    (repo / "reports" / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name in list((repo / "reports" / "history").glob("*.json")):
        name.unlink()
    for variant, records in histories.items():
        (repo / "reports" / "history" / f"{variant}.json").write_text(json.dumps(records))


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """A DVC project whose main holds params, metrics and histories (a reproduced base)."""
    repo = tmp_path_factory.mktemp("origin")
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "params.yaml").write_text(PARAMS)
    # One stage reading the params: what `dvc params diff` reports on.
    (repo / "dvc.yaml").write_text(
        'stages:\n  train:\n    cmd: "true"\n    params: [seed, train]\n')
    write_outputs(repo, BASE, {v: history() for v in BASE})
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "base"], repo)
    return repo


@pytest.fixture
def clone(origin: Path, tmp_path: Path) -> Path:
    """A fresh clone on a feature branch: the test writes the workspace a `dvc repro` leaves."""
    dest = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(dest)], tmp_path)
    run(["git", "checkout", "-qb", "feature"], dest)
    return dest


def perturbed(metrics: dict, rel: float = 1e-7) -> dict:
    """Every value moved by `rel` relative: what another CPU's kernels do."""
    return {v: {k: x * (1 + rel) for k, x in m.items()} for v, m in metrics.items()}


def compare(repo: Path, *args: str, check: bool = True):
    return run([sys.executable, str(SCRIPT), "--base", "main", "--out", "compare.md", *args],
               repo, check=check)


def table_rows(markdown: str) -> list[list[str]]:
    """Rows (cells) of the metrics table: between "## Metrics" and the next section."""
    section = markdown.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in section.splitlines() if ln.startswith("|")]
    return rows[2:]  # header and rule dropped


def summary(markdown: str) -> re.Match:
    matches = list(SUMMARY.finditer(markdown))
    assert len(matches) == 1, markdown
    return matches[0]


# ----------------------------------------------------------------------------- rounding

def test_rounding_level_differences_are_one_summary_line(clone: Path):
    write_outputs(clone, perturbed(BASE), {v: history(1 + 1e-7) for v in BASE})
    proc = compare(clone)
    text = (clone / "compare.md").read_text()
    assert proc.stdout == text
    assert text.startswith("# Pipeline changes against `main`")
    assert table_rows(text) == []
    assert "No metric changed beyond rounding." in text
    m = summary(text)
    assert int(m.group(1)) == N_METRICS
    assert "rtol 1e-4, atol 1e-9" in m.group(2)
    assert float(m.group(3)) == pytest.approx(1e-7, rel=1e-2)
    assert "Learning curves" not in text
    assert not (clone / "compare").exists()  # no changed variant: no figure


def test_tolerance_options_decide_what_is_rounding(clone: Path):
    write_outputs(clone, perturbed(BASE), {v: history() for v in BASE})
    # Exact comparison: every perturbed metric is a change, every variant is listed.
    proc = compare(clone, "--rtol", "0", "--atol", "0", "--no-rules")
    rows = table_rows(proc.stdout)
    assert len(rows) == N_METRICS
    assert {r[0] for r in rows} == set(BASE)
    assert int(summary(proc.stdout).group(1)) == 0
    # Just above the perturbation: rounding again (the log-loss rules are off).
    proc = compare(clone, "--rtol", "2e-7", "--no-rules")
    assert table_rows(proc.stdout) == []
    assert int(summary(proc.stdout).group(1)) == N_METRICS


def test_bad_tolerance_is_a_usage_error(clone: Path):
    proc = compare(clone, "--rtol", "-1", check=False)
    assert proc.returncode == 2 and "rtol" in proc.stderr
    assert not (clone / "compare.md").exists()


# ----------------------------------------------------------------------------- real changes

def test_a_real_change_is_listed_with_its_variant_first_and_its_curves(clone: Path):
    new = perturbed(BASE)
    new["mlp"]["test_accuracy"] = 0.90          # 0.95 -> 0.90: a real change
    new["mlp"]["train_loss"] = BASE["mlp"]["train_loss"] * 1.5
    histories = {v: history(1 + 1e-7) for v in BASE}
    histories["mlp"] = history(1.5, epochs=4)
    write_outputs(clone, new, histories)
    (clone / "params.yaml").write_text(PARAMS.replace("mlp: {lr: 0.1}", "mlp: {lr: 0.05}"))

    proc = compare(clone)
    text = proc.stdout
    # Parameters: dvc params diff against main.
    params = text.split("## Parameters", 1)[1].split("## Metrics", 1)[0]
    param_row = next(ln for ln in params.splitlines() if "train.mlp.lr" in ln)
    assert "0.1" in param_row and "0.05" in param_row
    # Metrics: the two changed metrics of mlp, nothing else; mlp leads.
    assert "Changed variants: `mlp`." in text
    rows = table_rows(text)
    assert [(r[0], r[1]) for r in rows] == [("mlp", "test_accuracy"), ("mlp", "train_loss")]
    acc = rows[0]
    assert float(acc[2]) == pytest.approx(0.95) and float(acc[3]) == pytest.approx(0.90)
    assert float(acc[4]) == pytest.approx(-0.05)
    assert acc[5].endswith("%")
    assert float(acc[5][:-1]) == pytest.approx(-100 * 0.05 / 0.95, rel=1e-2)
    assert float(rows[1][5][:-1]) == pytest.approx(50.0)
    # The rest is one line: 7 metrics within rounding.
    m = summary(text)
    assert int(m.group(1)) == N_METRICS - 2
    assert (m.group(4), m.group(5)) not in {("mlp", "test_accuracy"), ("mlp", "train_loss")}
    # Curves: the changed variant only, drawn and linked, with its first/last epochs.
    curves = text.split("## Learning curves of the changed variants", 1)[1]
    assert "### mlp" in curves and "### softmax" not in curves and "### linreg" not in curves
    assert "](compare/mlp.png)" in curves
    png = clone / "compare" / "mlp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    height, width = matplotlib.image.imread(png).shape[:2]
    assert height > 100 and width > 100
    assert sorted(p.name for p in (clone / "compare").iterdir()) == ["mlp.png"]
    assert "Epochs: base 3, new 4." in curves
    train_row = next(ln for ln in curves.splitlines() if ln.startswith("| train_loss |"))
    cells = [c.strip() for c in train_row.strip("|").split("|")]
    assert [float(c) for c in cells[1:]] == pytest.approx([2.0, 2.0 / 3, 3.0, 3.0 / 4])


def test_new_and_removed_variants_are_changes(clone: Path):
    new = perturbed({k: v for k, v in BASE.items() if k != "softmax"})
    new = {"dropout": {"test_accuracy": 0.97, "test_log_loss": 0.098}, **new}  # new, listed first
    new["linreg"]["test_mse"] *= 1.5  # and one modified variant, after it in the workspace
    histories = {v: history() for v in ("linreg", "mlp")}
    histories["dropout"] = history(0.8)
    write_outputs(clone, new, histories)

    proc = compare(clone)
    text = proc.stdout
    assert "Changed variants: `linreg`, `dropout` (new), `softmax` (removed)." in text
    rows = table_rows(text)
    assert [r[0] for r in rows] == ["linreg", "dropout", "dropout",
                                    "softmax", "softmax", "softmax"]
    assert rows[1][2] == "—" and float(rows[1][3]) == pytest.approx(0.97)   # new: no base value
    assert {r[1] for r in rows[3:]} == set(BASE["softmax"])
    assert all(r[3] == "—" for r in rows[3:])                                  # removed: no new
    # Within rounding: linreg's other two metrics and mlp's three.
    assert int(summary(text).group(1)) == 5
    # Curves of every changed variant: base only (removed), new only (new), both (modified).
    assert sorted(p.name for p in (clone / "compare").iterdir()) == \
        ["dropout.png", "linreg.png", "softmax.png"]
    softmax = text.split("### softmax", 1)[1]
    assert "Epochs: base 3, new —." in softmax


def test_the_report_is_appended_with_its_headings_nested(clone: Path):
    write_outputs(clone, BASE, {v: history() for v in BASE})
    (clone / "reports" / "report.md").write_text(
        "# dlbasics report\n\n## Regression\n\n```\n# not a heading\n```\n")
    text = compare(clone).stdout
    m = summary(text)
    assert int(m.group(1)) == N_METRICS and m.group(0).endswith("; all identical")
    tail = text.split("## Report (`reports/report.md`)", 1)[1]
    assert "### dlbasics report" in tail and "#### Regression" in tail
    assert "\n# not a heading\n" in tail  # code fences are left alone


# ----------------------------------------------------------------------------- bad input

def _fails_with_one_line(proc, *words: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_unknown_base_fails_with_one_line_and_writes_nothing(clone: Path):
    write_outputs(clone, BASE, {v: history(2.0) for v in BASE})
    proc = run([sys.executable, str(SCRIPT), "--base", "no-such-branch", "--out", "compare.md"],
               clone, check=False)
    _fails_with_one_line(proc, "no-such-branch")
    assert not (clone / "compare.md").exists() and not (clone / "compare").exists()


@pytest.mark.parametrize("content, words", [
    (None, ("reports/metrics.json", "make pipeline")),
    ("{not json", ("reports/metrics.json", "not valid JSON")),
    ('{"mlp": 0.9}', ("reports/metrics.json", "expected")),
])
def test_unreadable_metrics_fail_with_one_line_and_write_nothing(clone: Path, content, words):
    new = perturbed(BASE)
    new["mlp"]["test_accuracy"] = 0.5  # would draw a figure, were the input readable
    write_outputs(clone, new, {v: history(2.0) for v in BASE})
    metrics = clone / "reports" / "metrics.json"
    if content is None:
        metrics.unlink()
    else:
        metrics.write_text(content)
    proc = compare(clone, check=False)
    _fails_with_one_line(proc, *words)
    assert not (clone / "compare.md").exists() and not (clone / "compare").exists()


# ----------------------------------------------------------------------------- the defaults

# Pairs measured across CPUs (see dlbasics.report.compare's docstring): rounding under the defaults.
MEASURED_ROUNDING = [
    ("mlp_rmsprop", "test_log_loss", 0.10723337830938344, 0.10723719972794758),
    ("mlp_rmsprop", "train_log_loss", 0.00018340611004842713, 0.00018361054757873137),
    ("dropout", "test_log_loss", 0.09793318834311404, 0.09793301656320505),
    ("dropout_scratch", "test_log_loss", 0.09528075016261543, 0.09533848957867003),
    ("poly20_lstsq", "test_mse", 5683.0, 5674.0),
    ("poly20_lstsq", "train_mae", 0.06774254960473627, 0.0680507133109495),
    ("poly20_few_lstsq", "train_mse", 5.35802939793939e-08, 1.4821898162153956e-07),
    ("poly20_few_lstsq", "train_rmse", 0.00023147417562094028, 0.0003849921838447367),
    ("wd_0", "train_mse", 8.313694028453008e-12, 4.606118115505105e-12),
    ("wd_0", "train_mape", 6.016857119363362e-05, 2.528204600619218e-05),
    ("house_mlp", "cv_train_rmse_std", 0.001256030169755684, 0.0012560717286063039),
]
# What a real change looks like: beyond the defaults.
REAL_CHANGES = [
    ("mlp", "test_accuracy", 0.975, 0.9722222222222222),  # one test image of 360
    ("mlp", "test_log_loss", 0.11123796632100154, 0.1250),
    ("linreg", "test_mse", 1.2082788856828453e-04, 1.3e-04),
    ("poly20_lstsq", "test_mse", 43.43, 1.12),
    ("poly20_few_lstsq", "train_mse", 1.48e-07, 0.01),
    ("wd_0", "train_mse", 4.6e-12, 1e-3),
    ("wd_0", "test_mse", 146.7, 146.6),
]


@pytest.mark.parametrize("variant, metric, old, new", MEASURED_ROUNDING)
def test_measured_cross_cpu_differences_are_rounding(variant, metric, old, new):
    assert not Tolerance().is_change(variant, metric, old, new)
    assert not Tolerance().is_change(variant, metric, new, old)


@pytest.mark.parametrize("variant, metric, old, new", REAL_CHANGES)
def test_real_changes_exceed_the_defaults(variant, metric, old, new):
    assert Tolerance().is_change(variant, metric, old, new)
    assert Tolerance().is_change(variant, metric, new, old)


def test_the_rule_is_atol_plus_rtol_times_the_larger_magnitude():
    tol = Tolerance(rtol=1e-3, atol=1e-6, rules=())
    at = 1e-6 + 1e-3 * 2.0  # the allowed difference between 2.0 and a smaller value
    assert not tol.is_change("v", "m", 2.0, 2.0 - at * 0.999)
    assert tol.is_change("v", "m", 2.0, 2.0 - at * 1.001)
    assert not tol.is_change("v", "m", 0.0, 0.9e-6) and tol.is_change("v", "m", 0.0, 1.1e-6)
    assert not tol.is_change("v", "m", math.nan, math.nan)
    assert tol.is_change("v", "m", math.nan, 1.0) and tol.is_change("v", "m", 1.0, math.inf)


@pytest.mark.parametrize("small, large", [(2.0, 2.003), (-2.003, -2.0), (0.5, 1.0)])
def test_the_tolerance_is_the_same_whichever_value_is_old(small, large):
    """The allowance scales with the larger magnitude of the two, whichever side it is on: a
    rise and the fall back by the same amount are judged alike."""
    tol = Tolerance(rtol=1e-3, atol=0.0, rules=())
    diff = abs(large - small)
    big = max(abs(small), abs(large))
    for rtol in (diff / big * 1.0001, diff / big * 0.9999):  # just enough, just too little
        t = Tolerance(rtol=rtol, atol=0.0, rules=())
        assert t.is_change("v", "m", small, large) == t.is_change("v", "m", large, small)
        assert t.is_change("v", "m", small, large) == (rtol < diff / big)
    assert tol.is_change("v", "m", 0.5, 1.0) and tol.is_change("v", "m", 1.0, 0.5)


def test_diff_counts_and_orders_in_process():
    base = {"a": {"x": 1.0, "y": 2.0}, "b": {"x": 1.0}, "gone": {"x": 1.0}}
    new = {"fresh": {"x": 1.0}, "b": {"x": 1.5, "z": 1.0}, "a": {"x": 1.0 + 1e-9, "y": 2.0}}
    d = diff_metrics(base, new, Tolerance())
    assert d.changed_variants == ["b", "fresh", "gone"]
    assert [(c.variant, c.metric) for c in d.changes] == [
        ("b", "x"), ("b", "z"), ("fresh", "x"), ("gone", "x")]
    assert d.within == 2 and d.largest[1:] == ("a", "x")


def test_the_curves_name_a_log_loss_axis_and_leave_a_linear_one_plain():
    from dlbasics.report.compare import curves_figure

    base = [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": 0.5 + e / 10} for e in (1, 2, 3)]
    new = [{**row, "train_loss": row["train_loss"] / 2} for row in base]
    loss, accuracy = curves_figure("mlp", base, new).axes
    assert (loss.get_yscale(), loss.get_ylabel()) == ("log", "loss (log scale)")
    assert (accuracy.get_yscale(), accuracy.get_ylabel()) == ("linear", "accuracy")
    # A loss that reaches 0 cannot be on a log axis: linear, and the label says nothing more.
    zero = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.0}]
    (ax,) = curves_figure("linreg", zero, zero).axes
    assert (ax.get_yscale(), ax.get_ylabel()) == ("linear", "loss")
