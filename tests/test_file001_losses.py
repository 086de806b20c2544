"""File 001's losses and optimisers as variants and lessons (issue 30): L1 against MSE on
outliers, an explicit Sigmoid + BCELoss against BCEWithLogitsLoss, NLLLoss on log_softmax, class
weights on rare classes, RMSprop at the notebook's settings; and d2l 2.2's house_tiny table.

Oracles: each loss's formula written out by hand, scikit-learn's mean_absolute_error and
compute_class_weight, float32 arithmetic in NumPy; the variants are trained at params.yaml's
settings through fit_variant, as the train stage does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import prepared_data, trained_variants
from sklearn.metrics import mean_absolute_error, recall_score
from sklearn.utils.class_weight import compute_class_weight

from dlbasics.config.loading import parse_params
from dlbasics.data.sources import data_identity
from dlbasics.errors import ConfigError
from dlbasics.learn.tasks import predicted_labels
from dlbasics.learn.training import build_loss, build_optimizer, class_weights, predict
from dlbasics.lessons import losses, preliminaries
from dlbasics.report.content import contrast_rows
from dlbasics.report.html import render_html
from dlbasics.report.markdown import render_markdown
from dlbasics.rng import torch_generator

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
PARAMS = parse_params(RAW)


def _g(name: str) -> torch.Generator:
    return torch_generator(0, "tests", name)


# --------------------------------------------------------------------------- losses by formula


def test_l1_loss_is_the_mean_absolute_error():
    out, y = torch.randn(200, 1, generator=_g("l1")), torch.randn(200, 1, generator=_g("l1y"))
    loss = float(build_loss("l1")(out, y))
    by_hand = float((out - y).abs().sum() / out.numel())  # 1/n sum |x_i - y_i|
    assert loss == pytest.approx(by_hand, rel=1e-6)
    assert loss == pytest.approx(mean_absolute_error(y.numpy(), out.numpy()), rel=1e-6)


def test_explicit_sigmoid_bce_equals_bce_with_logits_on_ordinary_logits():
    z = torch.randn(300, 1, generator=_g("bce")) * 3
    t = torch.randint(0, 2, (300,), generator=_g("bcet"))
    explicit, fused = build_loss("bce")(z, t), build_loss("bce_with_logits")(z, t)
    o, tf = torch.sigmoid(z.reshape(-1)).double(), t.double()
    by_hand = float(-(tf * torch.log(o) + (1 - tf) * torch.log(1 - o)).mean())
    assert float(explicit) == pytest.approx(by_hand, rel=1e-5)
    assert float(fused) == pytest.approx(by_hand, rel=1e-5)


def test_the_lesson_finds_where_the_explicit_form_stops_learning():
    """The smallest z on the scan where float32's sigmoid is exactly 1 is where BCELoss's
    gradient must vanish: found here with NumPy's float32 arithmetic, independently."""
    r = losses.bce_saturation(seed=0, n=256, logit_sd=3.0, scan_max=120.0, scan_step=0.5)
    scan = np.arange(0.0, 120.25, 0.5, dtype=np.float32)
    one = np.float32(1) / (np.float32(1) + np.exp(-scan, dtype=np.float32))
    first_one = float(scan[one == np.float32(1)][0])
    assert r.values["positive_grad_lost_from"] == first_one
    assert r.values["positive_loss_breaks_at"] <= first_one
    assert r.values["ordinary_max_loss_diff"] < 1e-4
    assert r.values["ordinary_max_grad_diff"] < 1e-6
    row = next(row for row in r.tables[0].rows if row[0].startswith("z > 0") and row[1] == 20.0)
    assert row[2] == 100.0 and row[3] == pytest.approx(20.0) and row[4] == 0.0
    assert not r.holds  # the claim is stated without its limit: the report says so


def test_nll_on_log_softmax_and_class_weights_match_the_notebook_formula():
    x = torch.randn(64, 4, generator=_g("nll"), dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=_g("nlly"))
    w = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64)
    per_row = w[y] * (-x[torch.arange(64), y] + torch.log(torch.exp(x).sum(1)))
    # torch's mean of a weighted loss divides by the weights of the rows, not by n.
    by_hand = float(per_row.sum() / w[y].sum())
    assert float(build_loss("nll", w)(x, y)) == pytest.approx(by_hand, rel=1e-12)
    assert float(build_loss("cross_entropy", w)(x, y)) == pytest.approx(by_hand, rel=1e-12)
    assert float(build_loss("nll")(x, y)) == pytest.approx(
        float(build_loss("cross_entropy")(x, y)), rel=1e-12)
    r = losses.weighted_cross_entropy(seed=0, n=256, weights=[1.0, 2.0, 0.5])
    assert r.holds and r.values["max_row_diff"] < 1e-12
    assert r.values["weighted_mean"] != pytest.approx(r.values["plain_mean_by_hand"], rel=1e-3)


def test_balanced_class_weights_are_scikit_learns():
    spec = PARAMS.train["softmax_rare_weighted"]
    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 20 + [3] * 1)
    ours = class_weights(spec, y, 4).double().numpy()
    theirs = compute_class_weight("balanced", classes=np.arange(4), y=y.numpy())
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert class_weights(PARAMS.train["softmax_rare"], y, 4) is None


def test_rmsprop_at_the_notebooks_settings():
    from torch import nn

    opt = build_optimizer(PARAMS.train["mlp_rmsprop_notebook"].optimizer, nn.Linear(3, 2))
    assert isinstance(opt, torch.optim.RMSprop)
    assert (opt.defaults["lr"], opt.defaults["alpha"]) == (0.01, 0.99)
    assert PARAMS.train["mlp_rmsprop"].optimizer.lr == 0.001


# --------------------------------------------------------------------------- bad settings


def _with(edit) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(raw)
    return raw


@pytest.mark.parametrize("edit, key", [
    (lambda r: r["train"]["line"].update(class_weight="balanced"), "train.line.class_weight"),
    (lambda r: r["data"]["digits_rare"]["imbalance"].update(classes=[3, 12]),
     "data.digits_rare.imbalance.classes"),
    (lambda r: r["data"]["line_outliers"]["outliers"].update(fraction=0.9),
     "data.line_outliers.outliers.fraction"),
    (lambda r: r["report"]["contrasts"][1].update(a="softmax"), "report.contrasts.1.a"),
    (lambda r: r["select"]["searches"]["book"].update(base="softmax_rare_weighted"),
     "select.searches.book.base"),
])
def test_a_bad_setting_is_one_line_naming_its_key(edit, key):
    with pytest.raises(ConfigError) as err:
        parse_params(_with(edit))
    line = str(err.value)
    assert "\n" not in line and key in line, line


# --------------------------------------------------------------------------- data


def test_new_settings_leave_the_old_sets_identity_alone():
    """A set without outliers (or imbalance) keeps the identity it had before the keys existed:
    the digest of its settings without them."""
    import hashlib

    spec = PARAMS.data["line"]
    fields = {k: v for k, v in spec.model_dump(mode="json").items() if k != "outliers"}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    assert data_identity(spec) == f"synthetic_linear-{digest}"
    assert data_identity(PARAMS.data["images"]) == "digits"
    assert data_identity(PARAMS.data["digits_rare"]) != "digits"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    keep = ("line_outliers", "digits_rare", "images", "breast_cancer")
    raw = dict(RAW)
    raw["data"] = {k: RAW["data"][k] for k in keep}
    raw["prepare"] = {k: RAW["prepare"][k] for k in keep}
    raw["train"] = {k: v for k, v in RAW["train"].items() if v["dataset"] in keep}
    raw["report"] = {"contrasts": RAW["report"]["contrasts"]}
    raw["select"] = None
    params = parse_params(raw)
    return params, prepared_data(params, tmp_path_factory.mktemp("file001"))


@pytest.fixture(scope="module")
def trained(prepared):
    params, root = prepared
    yield from trained_variants(params, root)


def test_generated_outliers_and_rare_classes(prepared):
    _, root = prepared
    meta = json.loads((root.parent / "raw" / "line_outliers" / "meta.json").read_text())
    X = np.load(root.parent / "raw" / "line_outliers" / "X.npy")[:, 0].astype(np.float64)
    y = np.load(root.parent / "raw" / "line_outliers" / "y.npy").astype(np.float64)
    rows = meta["outlier_rows"]
    assert len(rows) == 32  # 10% of 320
    residual = y - (5 * X + 7)
    assert (residual[rows] > 20 - 5 * 0.25).all()
    others = np.setdiff1d(np.arange(320), rows)
    assert np.abs(residual[others]).max() < 5 * 0.25
    y_rare = np.load(root.parent / "raw" / "digits_rare" / "y.npy")
    from sklearn.datasets import load_digits

    full = np.bincount(load_digits().target, minlength=10)
    counts = np.bincount(y_rare, minlength=10)
    for c in range(10):
        assert counts[c] == (round(0.1 * full[c]) if c in (3, 8, 9) else full[c])


# --------------------------------------------------------------------------- trained variants


def test_l1_is_pulled_less_by_the_outliers_than_mse(trained):
    l1, _, _ = trained("line_outliers_l1")
    mse, _, _ = trained("line_outliers_mse")
    b_l1, b_mse = float(l1.bias.detach()), float(mse.bias.detach())
    # The outliers (+20 on 10% of the rows) lift the least-squares intercept by about 2.
    assert b_mse - 7 > 1.0
    assert abs(b_l1 - 7) < 0.25 < abs(b_mse - 7)
    assert abs(float(l1.weight.detach()) - 5) < abs(float(mse.weight.detach()) - 5)


def test_class_weights_raise_the_recall_of_the_rare_classes(trained):
    recalls = {}
    for name in ("softmax_rare", "softmax_rare_weighted"):
        model, _, data = trained(name)
        test = data.splits["test"]
        pred = predicted_labels(predict(model, test.X), "classification")
        recalls[name] = recall_score(test.y.numpy(), pred.numpy(), labels=[3, 8, 9],
                                     average=None)
    assert recalls["softmax_rare_weighted"].mean() > recalls["softmax_rare"].mean()


@pytest.mark.parametrize("a, b", [("softmax_nll", "softmax"), ("logistic_bce", "logistic")])
def test_two_spellings_of_one_loss_train_the_same_model(trained, a, b):
    ma, _, _ = trained(a)
    mb, _, _ = trained(b)
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_rmsprop_at_lr_0_01_fits_the_training_rows_closer_and_the_test_rows_worse(trained):
    """What docs/pipeline.md states of the two RMSprop settings, on the same data and start."""
    _, fast, _ = trained("mlp_rmsprop_notebook")
    _, slow, _ = trained("mlp_rmsprop")
    assert fast[-1]["train_loss"] < slow[-1]["train_loss"]
    assert fast[-1]["test_loss"] > slow[-1]["test_loss"]


# --------------------------------------------------------------------------- report


def test_both_reports_state_each_contrast_with_its_verdict():
    metrics = {
        "line_outliers_l1": {"w_error": 0.05, "b_error": 0.03, "w_0": 5.05, "b": 7.03,
                             "test_rmse": 6.0},
        "line_outliers_mse": {"w_error": 0.2, "b_error": 2.1, "w_0": 4.8, "b": 9.1,
                              "test_rmse": 5.8},
        "softmax_rare_weighted": {"test_accuracy": 0.97}, "softmax_rare": {"test_accuracy": 0.97},
        "softmax_nll": {"test_accuracy": 0.9667}, "softmax": {"test_accuracy": 0.9667},
        "logistic_bce": {"test_accuracy": 0.98}, "logistic": {"test_accuracy": 0.99},
        "mlp_rmsprop_notebook": {"test_accuracy": 0.97}, "mlp_rmsprop": {"test_accuracy": 0.98},
    }
    per = {str(c): {"recall": 1.0} for c in range(10)}
    details = {"softmax_rare_weighted": {"per_class": {**per, "3": {"recall": 0.8},
                                                         "8": {"recall": 0.6}}},
               "softmax_rare": {"per_class": {**per, "3": {"recall": 0.6}, "8": {"recall": 0.2}}}}
    rows = {r.a: r for r in contrast_rows(PARAMS, metrics, details)}
    assert rows["line_outliers_l1"].verdict is True
    assert rows["softmax_rare_weighted"].verdict is True
    assert "3: 0.8 against 0.6" in rows["softmax_rare_weighted"].measured
    assert rows["softmax_nll"].verdict is True
    assert rows["logistic_bce"].verdict is False  # 0.98 against 0.99: not the same
    assert rows["mlp_rmsprop_notebook"].verdict is None
    swapped = {**metrics, "line_outliers_l1": metrics["line_outliers_mse"],
               "line_outliers_mse": metrics["line_outliers_l1"]}
    assert {r.a: r for r in contrast_rows(PARAMS, swapped, details)}[
        "line_outliers_l1"].verdict is False
    md = render_markdown(PARAMS, metrics, details=details)
    html = render_html(PARAMS, metrics, details=details)
    for text in (md, html):
        assert "Claims about pairs of variants" in text
        assert "L1 against MSE on outliers" in text and "does not hold as stated" in text
    assert md.index("## The answer") < md.index("## Claims about pairs")


# --------------------------------------------------------------------------- d2l 2.2


def test_house_tiny_value_by_value():
    r = preliminaries.house_tiny()
    assert r.holds
    table = r.tables[0]
    assert table.columns == ["NumRooms", "Alley_Pave", "Alley_nan", "Price"]
    assert table.rows == [[3.0, 1.0, 0.0, 127500.0], [2.0, 0.0, 1.0, 106000.0],
                          [4.0, 0.0, 1.0, 178100.0], [3.0, 0.0, 1.0, 140000.0]]
    assert r.values["fill_value"] == 3.0 and r.values["n_missing_filled"] == 2


# --------------------------------------------------------------------------- the data-and-fit figure


def test_the_fit_figure_draws_the_points_and_the_models_line():
    from torch import nn

    from dlbasics.data.prepared import Split
    from dlbasics.report.evaluation import fit_line
    from dlbasics.report.figures import fit_png

    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(5.0)
        model.bias.fill_(7.0)
    X = torch.rand(50, 1, generator=_g("fit"))
    train = Split(X, (5 * X + 7 + 0.1).reshape(-1, 1))
    x, y, grid, fitted = fit_line(model, train, points=11)
    np.testing.assert_allclose(x, X[:, 0].double().numpy())
    np.testing.assert_allclose(grid, np.linspace(x.min(), x.max(), 11))
    np.testing.assert_allclose(fitted, 5 * grid + 7, rtol=1e-6)  # the line, by hand
    png = fit_png("line", x, y, grid, fitted, (5.0, 7.0))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png == fit_png("line", x, y, grid, fitted,
                                                              (5.0, 7.0))


def test_both_reports_show_the_fit_figures_in_their_own_section():
    from dlbasics.report.markdown import figures_section

    png = b"\x89PNG\r\n\x1a\n" + b"0" * 16
    md = figures_section({"line_fit.png": "figures/line_fit.png",
                          "images_samples.png": "figures/images_samples.png"})
    assert md.index("## Data and fit") < md.index("![line_fit](figures/line_fit.png)")
    assert md.index("## Image grids") < md.index("[images_samples]")
    assert "line_fit" not in md[md.index("## Image grids"):]
    html = render_html(PARAMS, {}, figures={"line_fit.png": png, "images_samples.png": png})
    fits, grids = html.index('<h2 id="fits">'), html.index('<h2 id="figures">')
    assert fits < html.index("line_fit") < grids < html.index("images_samples")
