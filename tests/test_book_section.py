"""The report's book section: the sources' Fashion-MNIST figures (params.report.book) beside the
measured test accuracy, in both reports.

Oracles: mean and sd against numpy (ddof 1), the paired difference against numpy and
scipy.stats.ttest_rel, the verdicts against the tolerance worked by hand (the boundary
included). Params come from the repository's params.yaml, under the `fashion` profile that
`make fashion` runs (validation reads no image file).
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import yaml
from conftest import REPO
from scipy import stats

from dlbasics.config.loading import load_params, parse_params
from dlbasics.config.params import Params
from dlbasics.report.content import BOOK_TITLE, book_rows, book_section, book_sentences, fmt
from dlbasics.report.html import SECTIONS, render_html
from dlbasics.report.markdown import render_markdown

SEEDS = [0, 1, 2, 3, 4]
# Per-seed test accuracy of each book variant (made up, shaped like reports/details.json).
SCORES = {
    "softmax_scratch": [0.829, 0.832, 0.826, 0.834, 0.830],
    "softmax": [0.831, 0.833, 0.828, 0.835, 0.829],
    "mlp_scratch": [0.842, 0.851, 0.848, 0.845, 0.850],
    "mlp": [0.846, 0.850, 0.849, 0.847, 0.852],
    "dropout_scratch": [0.812, 0.818, 0.815, 0.809, 0.820],  # 3.5 points below 0.85
    "dropout": [0.871, 0.874, 0.869, 0.876, 0.872],  # 2.2 points above 0.85
}


def _raw(profile: str | None = "fashion") -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = profile
    return raw


@pytest.fixture(scope="module")
def fashion() -> Params:
    """params.yaml under `make fashion`'s profile: every book variant on Fashion-MNIST, 5 seeds."""
    return parse_params(_raw(), source="params.yaml (profile fashion)")


def _outputs(scores: dict[str, list[float]]) -> tuple[dict, dict]:
    """(metrics, details) as the report stage writes them for variants trained over SEEDS."""
    metrics = {v: {"test_accuracy": x[0], "seeds_test_accuracy_mean": float(np.mean(x)),
                   "seeds_test_accuracy_sd": float(np.std(x, ddof=1)), "seeds_n": len(x)}
               for v, x in scores.items()}
    details = {v: {"seeds": {"seeds": SEEDS, "metric": "accuracy",
                             "test": {"accuracy": list(x)}}} for v, x in scores.items()}
    return metrics, details


def _with_book(params: Params, **update) -> Params:
    """params with every report.book entry updated (e.g. value=0.9)."""
    book = [f.model_copy(update=update) for f in params.report.book]
    return params.model_copy(update={"report": params.report.model_copy(update={"book": book})})


def test_mean_and_sd_over_seeds_are_numpys(fashion: Params):
    metrics, details = _outputs(SCORES)
    rows = book_rows(fashion, metrics, details)
    assert [r["variant"] for r in rows] == [f.variant for f in fashion.report.book]
    for r in rows:
        x = SCORES[r["variant"]]
        assert r["dataset"] == "fashion_mnist" and r["n"] == len(SEEDS)
        assert r["mean"] == pytest.approx(np.mean(x), abs=1e-15)
        assert r["sd"] == pytest.approx(np.std(x, ddof=1), rel=1e-12)
        assert r["difference"] == pytest.approx(np.mean(x) - r["value"], abs=1e-15)


def test_verdicts_inside_above_and_below_the_tolerance(fashion: Params):
    metrics, details = _outputs(SCORES)
    verdicts = {r["variant"]: r["verdict"] for r in book_rows(fashion, metrics, details)}
    assert verdicts == {
        "softmax_scratch": "reproduces", "softmax": "reproduces", "mlp_scratch": "reproduces",
        "mlp": "reproduces",
        "dropout_scratch": "below the stated figure (-3.5 points)",
        "dropout": "above the stated figure (+2.2 points)",
    }


@pytest.mark.parametrize(("offset", "verdict"), [
    (0.02, "reproduces"),  # exactly the tolerance away, above
    (-0.02, "reproduces"),  # and below
    (0.0, "reproduces"),
    (0.021, "above the stated figure (+2.1 points)"),
    (-0.021, "below the stated figure (-2.1 points)"),
    (-0.1, "below the stated figure (-10.0 points)"),
])
def test_the_tolerance_boundary_reproduces(fashion: Params, offset: float, verdict: str):
    """One run per variant (no seeds): its test accuracy is the mean, with no sd. 0.85 - 0.83
    is 0.02 plus a rounding error in floats: still exactly the tolerance away."""
    raw = _raw()
    raw["report"]["compare"] = []  # its pairs need seeds
    for f in raw["report"]["book"]:
        raw["train"][f["variant"]]["seeds"] = None
    raw["profiles"]["fashion"]["overrides"] = {
        k: v for k, v in raw["profiles"]["fashion"]["overrides"].items()
        if not k.endswith(".seeds")}
    params = parse_params(raw)
    assert all(params.train[f.variant].seeds is None for f in params.report.book)
    metrics = {f.variant: {"test_accuracy": f.value + offset} for f in params.report.book}
    rows = book_rows(params, metrics, {})
    for r in rows:
        assert (r["n"], r["sd"], r["mean"]) == (1, None, r["value"] + offset)
        assert r["verdict"] == verdict
    assert all(r["value"] in (0.83, 0.85) for r in rows)  # the stated figures of params.yaml


def test_a_tighter_tolerance_changes_the_verdict(fashion: Params):
    metrics, details = _outputs(SCORES)
    params = _with_book(fashion, tolerance=0.001)
    verdicts = {r["variant"]: r["verdict"] for r in book_rows(params, metrics, details)}
    assert verdicts["mlp"] == "below the stated figure (-0.1 points)"  # mean 0.8488
    assert verdicts["softmax"] == "above the stated figure (+0.1 points)"  # mean 0.8312


def test_not_measured_on_the_digits_and_not_trained():
    params = load_params(REPO / "params.yaml")  # the default image set: the 8x8 digits
    assert params.data["images"].kind == "digits"
    metrics, details = _outputs(SCORES)
    rows = book_rows(params, metrics, details)
    for r in rows:
        assert r["dataset"] == "digits"
        assert (r["n"], r["mean"], r["sd"]) == (None, None, None)
        assert r["verdict"] == ("not measured: trained on digits (`make fashion` trains it on "
                                "Fashion-MNIST)")
    book = book_section(params, metrics, details)
    assert "so none is measured here" in book.intro
    assert "batch" not in book.intro and "official test set" not in book.intro
    assert "within ±0.02" in book.intro  # the verdict rule is said either way
    md = render_markdown(params, metrics, details=details)
    assert ("| d2l 3.7 (concise) | about 0.83 | `softmax` | digits |  |  |  | not measured: "
            "trained on digits") in md


def test_a_variant_not_trained_yet(fashion: Params):
    scores = {k: v for k, v in SCORES.items() if k != "mlp"}
    metrics, details = _outputs(scores)
    rows = {r["variant"]: r for r in book_rows(fashion, metrics, details)}
    assert rows["mlp"]["verdict"] == "not trained" and rows["mlp"]["mean"] is None
    assert rows["softmax"]["verdict"] == "reproduces"
    # The mlp pair has no sentence; the other two pairs do.
    assert [s.split(",")[0] for s in book_sentences(fashion, details)] == [
        "softmax_scratch against softmax", "dropout_scratch against dropout"]


def test_the_intro_says_the_settings_measured_at(fashion: Params):
    metrics, details = _outputs(SCORES)
    intro = book_section(fashion, metrics, details).intro
    assert ("measured at batch 256, 10 epochs, lr 0.1, pixels in [0, 1], the official test set"
            in intro)
    assert "within ±0.02 (±2.0 points)" in intro


@pytest.mark.parametrize(("a", "b"), [("softmax_scratch", "softmax"), ("mlp_scratch", "mlp"),
                                      ("dropout_scratch", "dropout")])
def test_the_paired_sentence_matches_scipy(fashion: Params, a: str, b: str):
    metrics, details = _outputs(SCORES)
    (sentence,) = [s for s in book_sentences(fashion, details) if s.startswith(f"{a} against")]
    xa, xb = np.array(SCORES[a]), np.array(SCORES[b])
    d = xa - xb
    mean, sd = d.mean(), d.std(ddof=1)
    ci = stats.ttest_rel(xa, xb).confidence_interval(0.95)
    # Every pair here has the concise twin ahead: the sentence names it first.
    assert mean < 0
    expected = (f"{a} against {b}, test accuracy on Fashion-MNIST over seeds 0, 1, 2, 3, 4: "
                f"{b} beats {a} by {-100 * mean:.1f} +/- {100 * sd:.1f} points (95% interval "
                f"{-100 * ci.high:.1f} to {-100 * ci.low:.1f}); the interval ")
    assert sentence.startswith(expected)
    excludes = ci.low > 0 or ci.high < 0
    assert sentence.endswith("excludes zero" if excludes else "includes zero: no difference shown")
    assert excludes == (a == "dropout_scratch")  # 5.8 points apart; the others agree


def test_no_sentence_unless_both_list_the_same_seeds(fashion: Params):
    metrics, details = _outputs(SCORES)
    details["softmax"]["seeds"] = {**details["softmax"]["seeds"], "seeds": [0, 1, 2, 3, 9]}
    assert not any(s.startswith("softmax_scratch") for s in book_sentences(fashion, details))
    assert len(book_sentences(fashion, details)) == 2


class _Section(HTMLParser):
    """The text of every table cell of one <section> (found by its h2 id), row by row."""

    def __init__(self, sid: str):
        super().__init__()
        self.sid, self.inside, self.depth = sid, False, 0
        self.rows: list[list[str]] = []
        self.paragraphs: list[str] = []
        self._cell: list[str] | None = None
        self._p: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth += 1
        if tag == "h2" and dict(attrs).get("id") == self.sid:
            self.inside = True
        if not self.inside:
            return
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p":
            self._p = []

    def handle_endtag(self, tag):
        if tag == "section":
            self.inside = False
        if not self.inside:
            return
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "p":
            self.paragraphs.append("".join(self._p))
            self._p = None

    def handle_data(self, data):
        for buf in (self._cell, self._p):
            if buf is not None:
                buf.append(data)


def _cells(r: dict) -> list[str]:
    return [r["source"], r["stated"], r["variant"], r["dataset"],
            *("" if r[k] is None else fmt(r[k]) for k in ("n", "mean", "sd")), r["verdict"]]


def test_both_reports_show_every_row_and_sentence(fashion: Params):
    metrics, details = _outputs(SCORES)
    book = book_section(fashion, metrics, details)
    series = {"width": [{"x": 1.0, "variant": "mlp", "test_accuracy": 0.8}]}

    md = render_markdown(fashion, metrics, series=series, details=details)
    section = md.split(f"## {BOOK_TITLE}\n")[1].split("\n## ")[0]
    assert book.intro in section
    for r in book.rows:
        cells = _cells(r)
        cells[2] = f"`{cells[2]}`"
        assert "| " + " | ".join(cells) + " |" in section
    for s in book.sentences:
        assert f"- {s}" in section
    # Right after the answer, before the variant tables.
    assert md.index("## The answer") < md.index(f"## {BOOK_TITLE}") < md.index("## Regression")

    page = render_html(fashion, metrics, details=details)
    parsed = _Section("book")
    parsed.feed(page)
    assert parsed.rows[0] == ["source", "stated", "variant", "data set", "n", "mean", "sd",
                              "verdict"]
    assert parsed.rows[1:] == [_cells(r) for r in book.rows]
    assert parsed.paragraphs == [book.intro, *book.sentences]
    # Right after the answer (the first screen), and in the contents list.
    assert list(SECTIONS)[:2] == ["answer", "book"]
    assert re.findall(r'<h2 id="([^"]+)"', page)[:2] == ["answer", "book"]
    assert f'<a href="#book">{html.escape(BOOK_TITLE)}</a>' in page.split("</nav>")[0]


def test_nothing_rendered_without_book_figures_or_their_runs(fashion: Params):
    metrics, details = _outputs(SCORES)
    empty = fashion.model_copy(update={"report": fashion.report.model_copy(update={"book": []})})
    assert book_rows(empty, metrics, details) == [] and book_sentences(empty, details) == []
    assert book_section(empty, metrics, details) is None
    # None of the book's variants trained: nothing to set beside the figures.
    others = {"linreg": {"test_mse": 1e-4}}
    for params, m in ((empty, metrics), (fashion, others)):
        md = render_markdown(params, m, details=details)
        page = render_html(params, m, details=details)
        assert BOOK_TITLE not in md and html.escape(BOOK_TITLE) not in page
        assert 'id="book"' not in page and 'href="#book"' not in page
    # The same inputs with the figures listed do render it (the check above can fail).
    assert BOOK_TITLE in render_markdown(fashion, metrics, details=details)
