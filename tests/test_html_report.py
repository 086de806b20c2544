"""The HTML report: one self-contained page (every image embedded, nothing fetched), a section
only for the variants that ran, the same bytes for the same inputs; the Markdown report saying
the same about each search; and the paired statistics both quote, against scipy."""

from __future__ import annotations

import base64
import html
import re

import numpy as np
import pytest
from conftest import REPO
from scipy import stats

from dlbasics.config.loading import load_params
from dlbasics.learn.tasks import PRIMARY
from dlbasics.report.content import search_summary
from dlbasics.report.figures import image_grid
from dlbasics.report.html import SECTIONS, render_html
from dlbasics.report.markdown import render_markdown
from dlbasics.report.stats import describe_difference, paired_difference

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXTERNAL = re.compile(r"https?://|src=[\"']?http|<link\b|<script[^>]*\bsrc", re.IGNORECASE)
CLASSIFIERS = ("mlp", "mlp_sigmoid", "dropout", "dropout_off", "softmax")


def _history(epochs: int, start: float, rate: float, accuracy: bool) -> list[dict]:
    """A made-up but shaped reports/history/<variant>.json: loss decays, accuracy rises."""
    out = []
    for e in range(1, epochs + 1):
        loss = start * np.exp(-rate * e)
        r = {"epoch": e, "train_loss": loss, "test_loss": 1.2 * loss + 0.01}
        if accuracy:
            r |= {"val_loss": 1.1 * loss + 0.01, "val_accuracy": 1 - 0.5 * np.exp(-rate * e),
                  "test_accuracy": 1 - 0.55 * np.exp(-rate * e)}
        out.append({k: float(v) if k != "epoch" else v for k, v in r.items()})
    return out


def report_inputs() -> dict:
    """render_html's arguments, shaped like the report stage's DVC outputs: polynomial and
    classifier variants with histories, a confusion matrix, a three-configuration search, image
    grids, a dataset manifest, the environment."""
    params = load_params(REPO / "params.yaml")
    histories = {"poly3": _history(6, 20.0, 0.5, False), "poly20": _history(6, 25.0, 0.3, False)}
    metrics = {"poly3": {"train_mse": 0.0118, "test_mse": 0.0098, "w_norm": 8.28},
               "poly20": {"train_mse": 0.0128, "test_mse": 0.0111, "w_norm": 8.13}}
    details = {}
    for i, name in enumerate(CLASSIFIERS):
        histories[name] = _history(5, 2.0 + i / 10, 0.6, True)
        metrics[name] = {"train_accuracy": 0.99 - i / 100, "test_accuracy": 0.97 - i / 100,
                         "test_top_1_accuracy": 0.97 - i / 100, "test_top_3_accuracy": 0.99,
                         "train_top_1_accuracy": 0.99, "train_top_3_accuracy": 1.0}
    details["softmax"] = {
        "accuracy": 0.9, "class_names": ["0", "1", "2"],
        "confusion_matrix": [[9, 1, 0], [0, 8, 2], [1, 0, 9]],
        "per_class": {c: {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 10}
                      for c in "012"},
        "macro_avg": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 30},
    }
    rows = [
        {"config": c, "model.hidden": h, "optimizer.lr": lr, "diverged": False,
         "n_parameters": n, "path": "batched", "epochs_max": 2, "epochs_chosen": 2,
         "epochs_trained": 2, "fold": f, "train_accuracy": acc + 0.02,
         "val_accuracy": acc + 0.01 * f, "epochs": 2}
        for c, (h, lr, n, acc) in enumerate([("[]", "0.01", 650, 0.80), ("[]", "0.03", 650, 0.84),
                                             ("[64]", "0.01", 4810, 0.90)])
        for f in range(3)
    ]
    chosen = {"config": 2, "values": {"model.hidden": [64], "optimizer.lr": 0.01},
              "n_parameters": 4810, "diverged": False, "epochs_max": 2, "epochs_chosen": 2,
              "epochs_trained": 2, "path": "batched",
              "folds": [r for r in rows if r["config"] == 2],
              "val_accuracy_mean": 0.91, "val_accuracy_std": 0.01,
              "train_accuracy_mean": 0.92, "train_accuracy_std": 0.0}
    info = {"chosen": chosen, "chosen_words": "1 hidden layer of 64 relu units", "base": "mlp",
            "description": "A small grid.", "patience": None, "paths": {"batched": 3},
            "spec": {"epochs": 2}}
    selection = {"tiny": {"info": info, "rows": rows}}
    metrics["select@tiny"] = {"test_accuracy": 0.915}
    grid = np.arange(2 * 16, dtype=float).reshape(2, 4, 4)
    figures = {"samples.png": image_grid(grid, ["a", "b"], ncols=2),
               "predictions.png": image_grid(grid[::-1], ["b", "a"], ncols=2)}
    environment = {"python": "3.11.9", "torch": "2.14.1", "dvc": "3.67.1", "device": "cpu",
                   "threads": 2, "git commit": "0123abc"}
    manifests = {"images": {"name": "images", "kind": "digits",
                            "source": "https://example.org/digits.tar.gz", "task": "classification",
                            "n_features": 64, "sizes": {"train": 10, "val": 2, "test": 3},
                            "sha256": {"X_train.npy": "ab" * 32, "y_train.npy": "cd" * 32}}}
    return {"params": params, "metrics": metrics, "series": {}, "searches": selection,
            "details": details, "histories": histories, "figures": figures,
            "environment": environment, "manifests": manifests}


@pytest.fixture(scope="module")
def inputs() -> dict:
    return report_inputs()


@pytest.fixture(scope="module")
def page(inputs) -> str:
    return render_html(**inputs)


def test_page_references_nothing_outside_itself(page: str):
    assert EXTERNAL.search(page) is None, EXTERNAL.search(page).group(0)
    assert "<script" not in page.lower()
    # The manifest's download address is still shown, as text that is not a link.
    assert "example.org/digits.tar.gz" in page


def test_every_table_scrolls_in_its_own_box(page: str):
    """A table wider than the page scrolls inside a box of its own, never the page (the
    browser test measures it at a laptop's width)."""
    tables = page.count("<table")
    assert tables and page.count('<div class="scroll"><table>') == tables
    assert re.search(r"div\.scroll\{[^}]*overflow-x:auto", page)
    assert re.search(r"img\{[^}]*max-width:100%", page)


def test_every_image_is_an_embedded_png(page: str, inputs: dict):
    srcs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", page)
    assert len(srcs) >= len(inputs["figures"]) + len(inputs["histories"])
    assert len(srcs) == page.count("<img")
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"),
                                validate=True).startswith(PNG_SIGNATURE)
    # The image grids passed in are embedded byte for byte.
    for png in inputs["figures"].values():
        assert base64.b64encode(png).decode() in page


def test_sections_follow_the_variants_that_ran(page: str):
    ids = re.findall(r"<h2 id=\"([^\"]+)\"", page)
    present = {"answer", "overview", "book", "learning-curves", "fitting", "dropout", "activations",
               "confusion", "top-k", "selection", "figures", "provenance", "environment"}
    # book: mlp, dropout and softmax of report.book ran (on the digits: not measured).
    # Absent: no weight-decay series, no sparse_* variants, only `mlp` of the optimisers and
    # initialisations (a comparison needs two), no multi-label variant.
    assert set(ids) == present
    assert ids == [s for s in SECTIONS if s in present]  # in page order, each once
    for sid in present:  # the contents list links each one
        assert f'href="#{sid}"' in page


def test_sections_show_their_numbers(page: str, inputs: dict):
    overview = page.split('id="overview"')[1].split("<h2")[0]
    for name in ("poly3", "poly20", "mlp", "dropout_off", "softmax"):
        assert f">{name}<" in overview
    assert "mlp_adam" not in overview  # did not run
    selection = page.split('id="selection"')[1].split("<h2")[0]
    # Configuration 2 has the best mean validation accuracy (0.91) and is marked chosen.
    assert re.search(r'<tr class="chosen"><td class=l>2<', selection)
    assert "0.915" in selection
    assert "configuration 2 beats configuration 1 by 6.0 +/- 0.0 points" in selection
    # The chosen configuration in words, and its test score against the base variant's.
    assert "configuration 2, 1 hidden layer of 64 relu units (2 epochs, fixed" in selection
    base = inputs["metrics"]["mlp"]["test_accuracy"]
    assert f"the hand-set base variant `mlp` ({base:.4g})" in selection.replace("&#x60;", "`")
    # The choice is stated before the search's table and figure: a reader meets it first.
    search = selection.split("<h3>select@tiny</h3>")[1]
    assert search.index("configuration 2, 1 hidden layer of 64 relu units") < search.index("<table")
    confusion = page.split('id="confusion"')[1].split("<h2")[0]
    assert "softmax" in confusion and "macro avg" in confusion


def test_both_reports_state_the_same_search(inputs: dict, page: str):
    """report.md and report.html say the same about a search: the same sentences, the same
    chosen configuration (the select stage's), the same mean and sd per configuration."""
    md = render_markdown(inputs["params"], inputs["metrics"], searches=inputs["searches"],
                         details=inputs["details"])
    summary = search_summary("tiny", inputs["searches"]["tiny"], inputs["metrics"],
                             inputs["details"])
    assert summary.chosen == inputs["searches"]["tiny"]["info"]["chosen"]["config"] == 2
    assert summary.sentences
    for sentence in summary.sentences:
        assert sentence in md
        assert html.escape(sentence) in page
    assert "configuration 2, 1 hidden layer of 64 relu units" in md
    assert md.index("configuration 2, 1 hidden layer of 64 relu units") < md.index("| config |")
    selection = page.split('id="selection"')[1].split("<h2")[0]
    for c in summary.configs:
        val = [r["val_accuracy"] for r in inputs["searches"]["tiny"]["rows"]
               if r["config"] == c.config]
        assert (c.mean, c.sd) == pytest.approx((np.mean(val), np.std(val, ddof=1)))
        assert f"{c.mean:.4f} +/- {c.sd:.4f}" in md
        assert f">{c.mean:.4g}<" in selection


def test_the_runner_up_is_the_selection_rules_pick_from_the_rest(inputs: dict):
    """Two configurations tie behind the chosen one: the runner-up is the smaller model, as
    tasks.choose breaks ties."""
    search = inputs["searches"]["tiny"]
    rows = [{**r, "val_accuracy": 0.8 + 0.01 * r["fold"]} if r["config"] != 2 else r
            for r in search["rows"]]
    rows = [{**r, "n_parameters": 700} if r["config"] == 0 else r for r in rows]
    summary = search_summary("tiny", {**search, "rows": rows}, inputs["metrics"], {})
    assert summary.runner_up.startswith("Against the runner-up, fold by fold: configuration 2 "
                                        "beats configuration 1 by")


def test_the_overview_states_each_tasks_primary_metric(inputs: dict):
    metrics = {"poly3": {"train_rmse": 0.11, "test_rmse": 0.0987, "train_mse": 0.0121}}
    page = render_html(inputs["params"], metrics, histories={"poly3": _history(3, 1, 1, False)})
    overview = page.split('id="overview"')[1].split("<h2")[0]
    assert PRIMARY["regression"].name == "rmse"
    assert "<td class=l>rmse</td><td>0.11</td><td></td><td>0.0987</td>" in overview


def test_a_group_of_params_is_a_section_with_no_report_code(inputs: dict):
    """Listing variants under report.groups.optimisers is all a comparison needs."""
    params = inputs["params"]
    groups = params.report.groups.model_copy(update={"optimisers": ["dropout", "softmax"]})
    params = params.model_copy(update={"report": params.report.model_copy(
        update={"groups": groups})})
    page = render_html(**{**inputs, "params": params})
    optimisers = page.split('id="optimisers"')[1].split("<h2")[0]
    assert "dropout, softmax" in optimisers and ">mlp<" not in optimisers


def test_same_inputs_same_bytes(inputs: dict, page: str):
    assert render_html(**inputs) == page


def test_without_optional_inputs_only_the_overview_and_curves():
    params = load_params(REPO / "params.yaml")
    page = render_html(params, {"linreg": {"train_mse": 1e-4, "test_mse": 1.1e-4}}, {}, [], {},
                       {"linreg": _history(3, 1.0, 1.0, False)}, {}, {})
    assert re.findall(r"<h2 id=\"([^\"]+)\"", page) == ["overview", "learning-curves"]
    assert EXTERNAL.search(page) is None


# ----------------------------------------------------------------------------- paired statistics

A = [0.912, 0.905, 0.921, 0.899, 0.915, 0.908]
B = [0.903, 0.901, 0.909, 0.897, 0.904, 0.902]


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_paired_difference_matches_scipy(confidence: float):
    r = paired_difference(A, B, confidence)
    d = np.subtract(A, B)
    low, high = stats.t.interval(confidence, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    ci = stats.ttest_rel(A, B).confidence_interval(confidence)
    assert r["mean"] == pytest.approx(d.mean())
    assert r["sd"] == pytest.approx(d.std(ddof=1))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((low, high))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert r["n"] == 6
    # The interval excludes zero exactly when the two-sided paired test rejects at 1 - level.
    assert r["excludes_zero"] == (stats.ttest_rel(A, B).pvalue < 1 - confidence)


def test_the_interval_is_scipy_stats_t_interval_to_the_bit():
    """mean_interval takes its quantiles from scipy.special (a lighter import): the same bits
    as scipy.stats.t.interval on the same mean and scale, so no report byte moves."""
    import math
    import random

    from dlbasics.report.stats import mean_interval

    rnd = random.Random(0)
    for _ in range(2000):
        n = rnd.randint(2, 40)
        v = [rnd.gauss(0, rnd.choice([1e-3, 1.0, 100.0])) for _ in range(n)]
        c = rnd.choice([0.9, 0.95, 0.99, rnd.uniform(0.01, 0.99)])
        mean = math.fsum(v) / n
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
        low, high = stats.t.interval(c, n - 1, loc=mean, scale=sd / math.sqrt(n))
        r = mean_interval(v, c)
        assert (r["ci_low"], r["ci_high"]) == (float(low), float(high))


def test_an_interval_across_zero_shows_no_difference():
    a, b = [0.90, 0.91, 0.89, 0.92], [0.91, 0.90, 0.90, 0.91]
    r = paired_difference(a, b)
    assert r["ci_low"] < 0 < r["ci_high"] and not r["excludes_zero"]
    assert stats.ttest_rel(a, b).pvalue > 0.05


def test_describe_difference_in_words():
    r = paired_difference(A, B)
    words = describe_difference("dropout", "no dropout", r)
    low, high = r["ci_low"] * 100, r["ci_high"] * 100
    assert words == (f"dropout beats no dropout by {r['mean'] * 100:.1f} +/- {r['sd'] * 100:.1f} "
                     f"points (95% interval {low:.1f} to {high:.1f}); the interval excludes zero")
    # Either order reads the same: the better one is named first.
    assert describe_difference("no dropout", "dropout", paired_difference(B, A)) == words
    flat = describe_difference("a", "b", paired_difference([0.90, 0.91, 0.89, 0.92],
                                                           [0.91, 0.90, 0.90, 0.91]))
    assert flat.endswith("the interval includes zero: no difference shown")
    # For a loss, lower wins.
    loss = describe_difference("adam", "sgd", paired_difference([0.1, 0.2, 0.15], [0.2, 0.3, 0.26]),
                               unit="", scale=1, digits=3, higher_is_better=False)
    assert loss.startswith("adam beats sgd by 0.103 +/- 0.006 (95% interval")


def test_paired_difference_needs_pairs():
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([1.0], [1.0])


def test_a_stale_history_of_a_removed_variant_is_left_out():
    params = load_params(REPO / "params.yaml")
    page = render_html(params, {}, {}, [], {}, {"mlp": _history(3, 1.0, 1.0, True),
                                                 "gone_variant": _history(3, 1.0, 1.0, True)},
                       {}, {})
    assert "gone_variant" not in page and "mlp" in page


def test_the_activation_formulas_equal_autograd_of_the_models_modules():
    """The report draws the activations from numpy formulas (no torch in the report stage):
    each value and derivative equals the model's own module and torch autograd on a grid that
    includes 0, where the derivative conventions differ most."""
    import numpy as np
    import torch

    from dlbasics.learn.models import ACTIVATION_LAYERS
    from dlbasics.report.charts import ACTIVATION_FORMULAS

    assert set(ACTIVATION_FORMULAS) == set(ACTIVATION_LAYERS)
    grid = torch.cat([torch.linspace(-6.0, 6.0, 241, dtype=torch.float64),
                      torch.tensor([0.0, -1e-300, 1e-300], dtype=torch.float64)])
    x = grid.requires_grad_()
    from dlbasics.config.variants import ModelSpec

    for name, make in ACTIVATION_LAYERS.items():
        # The slope the shipped mlp_leaky_relu uses (the book's); PReLU at its initial slope.
        y = make(ModelSpec(kind="mlp", hidden=[1], activation=name, negative_slope=0.2)
                 ).double()(x)
        (grad,) = torch.autograd.grad(y.sum(), x)  # elementwise: f'(x_i)
        f, df = ACTIVATION_FORMULAS[name]
        xs = x.detach().numpy()
        np.testing.assert_allclose(f(xs), y.detach().numpy(), rtol=1e-12, atol=1e-15,
                                   err_msg=name)
        np.testing.assert_allclose(df(xs), grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)


def test_the_answer_names_the_best_per_dataset_ties_included_and_leads_both_reports():
    from dlbasics.report.content import answer
    from dlbasics.report.markdown import render_markdown

    inputs = report_inputs()
    params, metrics = inputs["params"], dict(inputs["metrics"])
    metrics["mlp"] = {"test_accuracy": 0.99, "seeds_test_accuracy_sd": 0.002, "seeds_n": 5.0}
    metrics["dropout"] = {"test_accuracy": 0.99}  # a tie at the top
    metrics["poly20"] = {"test_rmse": 0.2}
    metrics["poly3"] = {"test_rmse": 0.1}  # lower is better
    a = answer(params, metrics, inputs["details"], inputs["searches"],
               [{"title": "A lesson", "holds": False}])
    rows = {r.dataset: r for r in a.best}
    images = [n for n in metrics if n in params.train and params.train[n].dataset == "images"]
    top = max(metrics[n]["test_accuracy"] for n in images)
    assert sorted(rows["images"].best) == sorted(
        n for n in images if metrics[n]["test_accuracy"] == top) == ["dropout", "mlp"]
    assert rows["images"].spread in ("sd 0.002 over 5 seeds", "one run")
    assert rows["poly"].best == ["poly3"] and rows["poly"].metric == "rmse"
    assert rows["images"].of == len(images)
    # select@tiny (0.915) against its base mlp (0.99): 7.5 points worse
    assert a.searches == ["select@tiny chose 1 hidden layer of 64 relu units: test accuracy "
                          "0.915, 7.5 points worse than its hand-set base mlp (0.99)."]
    assert a.lessons == [("A lesson", False)]
    md = render_markdown(params, metrics, searches=inputs["searches"],
                         details=inputs["details"],
                         lessons=[{"title": "A lesson", "holds": False, "id": "x", "source": "s",
                                   "claim": "c", "measured": "m"}])
    assert re.findall(r"(?m)^## (.+)$", md)[0] == "The answer"
    assert "| images | classification | `mlp`, `dropout` |" in md or \
        "| images | classification | `dropout`, `mlp` |" in md
    assert "- **does not hold as stated**: A lesson" in md
