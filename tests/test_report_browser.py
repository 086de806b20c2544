"""report.html in a real browser (headless Chromium) at a laptop's 1366 x 768: the page never
scrolls sideways, every figure loads and fits its column, a table wider than the text scrolls
inside its own box with its first column in view, and each search states its choice above its
table."""

from __future__ import annotations

import copy
import re
import shutil

import pytest
from test_html_report import _history, report_inputs

from dlbasics.learn.tasks import PRIMARY
from dlbasics.report.content import variant_task
from dlbasics.report.html import render_html

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: the browser test drives Debian's chromium "
    "package (CI installs it with apt)")

LAPTOP = {"width": 1366, "height": 768}
AXES = {"model.dropout": [0.5, 0.7], "model.hidden": ["[]", "[1024, 1024]"],
        "optimizer.lr": [0.01, 0.03], "optimizer.weight_decay": [0.0, 0.01]}


def _book_search(tiny: dict) -> dict:
    """A search shaped like the shipped select@book: four grid axes, sixteen configurations,
    three folds (a table as wide as the shipped one)."""
    rows = []
    for c in range(16):
        values = {a: v[(c >> i) & 1] for i, (a, v) in enumerate(AXES.items())}
        n = 650 if values["model.hidden"] == "[]" else 1126410
        for f in range(3):
            rows.append({"config": c, **values, "diverged": False, "n_parameters": n,
                         "path": "batched" if n == 650 else "sequential", "epochs_chosen": 10,
                         "fold": f, "train_accuracy": 0.9123 - c / 1000,
                         "val_accuracy": 0.8616 - c / 997 + f / 311})
    info = copy.deepcopy(tiny["info"])
    info["chosen"] |= {"config": 0, "folds": [r for r in rows if r["config"] == 0],
                       "epochs_chosen": 10, "epochs_max": 10}
    info["chosen_words"] = "no hidden layer, dropout 0.5; sgd lr 0.01, no weight decay"
    return {"info": info, "rows": rows}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """report.html for every variant of params.yaml (the overview as long and wide as the
    shipped one) and two searches, written to a file as the report stage writes it."""
    inputs = report_inputs()
    params, metrics, histories = inputs["params"], inputs["metrics"], inputs["histories"]
    for i, name in enumerate(params.train):
        task = variant_task(params, name)
        m = PRIMARY[task].name
        histories.setdefault(name, _history(5, 2.0 + i / 10, 0.6, task == "classification"))
        metrics.setdefault(name, {f"train_{m}": 8.898e-05 * (i + 1), f"test_{m}": 0.01099 + i})
    inputs["searches"]["book"] = _book_search(inputs["searches"]["tiny"])
    metrics["select@book"] = {"test_accuracy": 0.8972}
    # As many lessons as the shipped lessons stage runs (20), titles as long as its longest (73
    # characters), and the row counts the real classifiers' confusion matrices give.
    for name, n in (("logistic", 114), ("softmax_rare_weighted", 394)):
        if name in params.train:
            inputs["details"][name] = {"confusion_matrix": [[n]]}
    inputs["lessons"] = [{"id": f"lesson_{i}", "title": f"Lesson {i:2d}: training a two-layer "
                          "net by numerical gradients, checked",
                          "source": "file 003", "claim": "a claim.", "measured": "a value.",
                          "holds": i % 5 != 0, "tables": [], "figures": []} for i in range(20)]
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(**inputs))
    return path


@pytest.fixture(scope="module")
def page(report):
    """The report open in headless Chromium at 1366 x 768, every <details> opened (as a reader
    would: their tables lay out only when open)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport=LAPTOP)
            tab.goto(report.as_uri(), wait_until="load")
            tab.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            yield tab
        finally:
            browser.close()


def test_the_page_does_not_scroll_sideways(page):
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] == LAPTOP["width"], f"scrollWidth {width[0]} at {width[1]} px"
    assert page.evaluate("window.scrollTo(200, 0), window.scrollX") == 0


def test_every_figure_loads_and_fits_its_column(page, report):
    images = page.evaluate("""() => [...document.images].map(i => ({
        alt: i.alt, loaded: i.complete && i.naturalWidth > 0,
        width: i.getBoundingClientRect().width, right: i.getBoundingClientRect().right,
        room: i.closest('section').clientWidth}))""")
    assert len(images) == report.read_text().count("<img") > 20
    assert [i["alt"] for i in images if not i["loaded"]] == []
    too_wide = [i["alt"] for i in images
                if i["width"] > i["room"] + 0.5 or i["right"] > LAPTOP["width"]]
    assert too_wide == []


def test_a_wide_table_scrolls_inside_its_own_box(page):
    boxes = page.evaluate("""() => [...document.querySelectorAll('table')].map(t => {
        const box = t.parentElement, before = t.rows[1].cells[0].getBoundingClientRect().left;
        const wide = t.offsetWidth > box.clientWidth;
        box.scrollLeft = 60;
        return {head: t.rows[0].cells[0].textContent, cls: box.className, wide: wide,
                overflow: getComputedStyle(box).overflowX, scrolled: box.scrollLeft,
                right: box.getBoundingClientRect().right,
                firstColumnMoved: t.rows[1].cells[0].getBoundingClientRect().left - before};
    })""")
    assert boxes and all(b["cls"] == "scroll" for b in boxes)
    wide = [b for b in boxes if b["wide"]]
    # The overview (every variant) and select@book's fold table are wider than 1366 px allows.
    assert {"variant", "config"} <= {b["head"] for b in wide}
    for b in wide:
        assert b["overflow"] == "auto" and b["scrolled"] > 0, b
        assert b["right"] <= LAPTOP["width"], b
        assert abs(b["firstColumnMoved"]) <= 1, b  # the variant / configuration stays in view
    assert page.evaluate("window.scrollX") == 0


def test_each_search_states_its_choice_above_its_table(page):
    """The chosen configuration in words, in the first lines of its search, before the table."""
    searches = page.evaluate("""() => [...document.querySelectorAll('section h3')]
        .filter(h => h.textContent.startsWith('select@')).map(h => {
            const lines = [];
            for (let e = h.nextElementSibling; e && e.tagName === 'P'; e = e.nextElementSibling)
                lines.push(e.textContent);
            return {name: h.textContent, lines: lines, top: h.getBoundingClientRect().top};
        })""")
    assert [s["name"] for s in searches] == ["select@tiny", "select@book"]
    for s in searches:
        chosen = [i for i, line in enumerate(s["lines"])
                  if re.search(r"Chosen from \d+ configurations .*: configuration \d+, \w", line)]
        assert chosen and chosen[0] <= 1, s


def test_the_first_screen_holds_the_answer(page):
    """At 1366 x 768, before any scrolling: the best model of every dataset, each search's
    winner against its base, every lesson's verdict; the full tables start below."""
    box = page.evaluate("""() => {
        const s = document.getElementById('answer').closest('section');
        const r = s.getBoundingClientRect();
        return {top: r.top + scrollY, bottom: r.bottom + scrollY,
                rows: s.querySelectorAll('tbody tr').length,
                items: [...s.querySelectorAll('li')].map(li => li.textContent),
                verdicts: s.querySelectorAll('ul.verdicts li.yes, ul.verdicts li.no').length,
                overview: document.getElementById('overview').getBoundingClientRect().top
                          + scrollY};
    }""")
    datasets = {spec.dataset for spec in report_inputs()["params"].train.values()}
    assert box["rows"] == len(datasets)
    assert sum("select@" in i for i in box["items"]) == 2
    assert box["verdicts"] == 20
    assert box["bottom"] <= LAPTOP["height"], box
    assert box["overview"] > box["bottom"]
