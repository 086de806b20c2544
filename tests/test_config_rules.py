"""Each cross-field rule of a variant (config.variants: ModelSpec, VariantSpec), one case each:
the one line a user reads, whole (the key path, what was expected, what was found), and the
setting one step away that the rule lets through. Mutation testing (make mutate) found the
rules' messages, key paths and several of their conditions untested before these."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from conftest import REPO

from dlbasics.config.loading import parse_params
from dlbasics.config.variants import LOSS_TASKS
from dlbasics.errors import ConfigError

# A valid mlp_manual variant (the book's hand-written network, small).
MANUAL_MODEL = {"kind": "mlp_manual", "hidden": [8], "activation": "sigmoid",
                "output": "softmax", "init": "normal", "init_std": 0.1}
MANUAL = {"model": MANUAL_MODEL, "loss": "cross_entropy_scratch",
          "optimizer": {"name": "sgd_scratch", "lr": 0.1}}


def model(**keys) -> dict:
    return {"model": keys}


def manual(**keys) -> dict:
    return {**MANUAL, "model": {**MANUAL_MODEL, **keys}}


# (id, keys of variant `v` over params.yaml's mlp, the message after "p.yaml: train.v.")
RULES = [
    ("scratch_needs_normal_init", model(kind="mlp_scratch", hidden=[8]),
     "model.init: expected normal (the scratch models draw N(0, init_std^2)), found 'default'"),
    ("only_linear_drops_its_bias", model(kind="mlp", hidden=[8], bias=False),
     "model.bias: expected true (only kind linear can drop its bias), found False"),
    ("mlp_manual_has_no_dropout", manual(dropout=[0.5]),
     "model.dropout: expected no dropout for mlp_manual, found [0.5]"),
    ("mlp_manual_has_no_prelu", manual(activation="prelu"),
     "model.activation: expected relu, sigmoid, tanh or leaky_relu for mlp_manual, "
     "found 'prelu'"),
    ("only_mlp_manual_has_a_softmax_output", model(kind="mlp", hidden=[8], output="softmax"),
     "model.output: expected linear (only kind mlp_manual has a softmax output of its own), "
     "found 'softmax'"),
    ("prelu_is_for_kind_mlp",
     model(kind="mlp_scratch", hidden=[8], init="normal", activation="prelu"),
     "model.activation: expected one of relu, sigmoid, tanh, leaky_relu (prelu is "
     "torch.nn.PReLU: kind mlp only), found 'prelu'"),
    ("linear_has_no_hidden", model(kind="linear", hidden=[8]),
     "model.hidden: expected a linear model has no hidden layers (use kind: mlp), found [8]"),
    ("linear_scratch_has_no_hidden", model(kind="linear_scratch", init="normal", hidden=[8]),
     "model.hidden: expected a linear model has no hidden layers (use kind: mlp), found [8]"),
    ("softmax_scratch_has_no_dropout",
     model(kind="softmax_scratch", init="normal", dropout=[0.5]),
     "model.dropout: expected a linear model has no dropout (use kind: mlp), found [0.5]"),
    ("linear_has_no_dropout", model(kind="linear", dropout=[0.5]),
     "model.dropout: expected a linear model has no dropout (use kind: mlp), found [0.5]"),
    ("mlp_scratch_needs_a_hidden_layer", model(kind="mlp_scratch", init="normal"),
     "model.hidden: expected kind mlp_scratch needs at least one hidden layer size, found []"),
    ("mlp_manual_needs_a_hidden_layer", manual(hidden=[]),
     "model.hidden: expected kind mlp_manual needs at least one hidden layer size, found []"),
    ("one_dropout_per_hidden_layer", model(kind="mlp", hidden=[8, 4], dropout=[0.5]),
     "model.dropout: expected one probability per hidden layer (2), found [0.5]"),
    ("seeds_are_distinct", {"seeds": [1, 2, 1]},
     "seeds: expected distinct seeds, found [1, 2, 1]"),
    ("lstsq_fits_linear_only", {"solver": "lstsq"},
     "solver: expected gradient (lstsq fits kind linear only), found 'lstsq'"),
    ("mlp_manual_sets_its_own_gradients", {**MANUAL, "optimizer": {"name": "sgd", "lr": 0.1}},
     "optimizer.name: expected sgd_scratch (mlp_manual sets its own gradients), found 'sgd'"),
    ("mlp_manual_takes_no_penalty", {**MANUAL, "penalty": {"kind": "l2", "strength": 0.1}},
     "penalty: expected no penalty (mlp_manual's hand-written gradients are of the loss alone; "
     "use optimizer.weight_decay), found one"),
    ("mlp_manual_softmax_loss", {**MANUAL, "loss": "cross_entropy"},
     "loss: expected cross_entropy_scratch (the loss mlp_manual with a softmax output "
     "differentiates by hand), found 'cross_entropy'"),
    ("class_weight_needs_a_weighted_loss", {"class_weight": "balanced", "loss": "one_vs_all"},
     "class_weight: expected no class_weight (only cross_entropy and nll take one), "
     "found 'balanced'"),
    ("mlp_manual_linear_loss", manual(output="linear"),
     "loss: expected squared_loss_scratch (the loss mlp_manual with a linear output "
     "differentiates by hand), found 'cross_entropy_scratch'"),
]

# The neighbours the rules let through: (id, keys of variant `v`).
ALLOWED = [
    ("linear_drops_its_bias", model(kind="linear", bias=False)),
    ("scratch_with_normal_init", model(kind="mlp_scratch", hidden=[8], init="normal")),
    ("mlp_with_prelu", model(kind="mlp", hidden=[8], activation="prelu")),
    ("mlp_manual_leaky_relu", manual(activation="leaky_relu")),
    ("mlp_without_hidden_is_linear", model(kind="mlp")),
    ("mlp_dropout_per_layer", model(kind="mlp", hidden=[8, 4], dropout=[0.5, 0.1])),
    ("distinct_seeds", {"seeds": [1, 2, 3]}),
    ("class_weight_with_cross_entropy", {"class_weight": "balanced"}),
    ("class_weight_with_nll", {"class_weight": "balanced", "loss": "nll"}),
    ("lstsq_on_linear", {"solver": "lstsq", "model": {"kind": "linear"}}),
    ("mlp_manual_linear_output", {**manual(output="linear"), "loss": "squared_loss_scratch",
                                  "dataset": "synthetic_linear"}),
    ("mlp_manual_as_written", MANUAL),
]


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))


def _with_variant(raw: dict, keys: dict) -> dict:
    r = copy.deepcopy(raw)
    r["train"]["v"] = {**copy.deepcopy(r["train"]["mlp"]), **copy.deepcopy(keys)}
    return r


@pytest.mark.parametrize("keys, message", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_is_one_whole_line(raw, keys, message):
    with pytest.raises(ConfigError) as info:
        parse_params(_with_variant(raw, keys), source="p.yaml")
    assert str(info.value) == f"p.yaml: train.v.{message}"


@pytest.mark.parametrize("keys", [a[1] for a in ALLOWED], ids=[a[0] for a in ALLOWED])
def test_the_neighbours_pass(raw, keys):
    parse_params(_with_variant(raw, keys), source="p.yaml")


@pytest.mark.parametrize("dropout, want", [(0.5, [0.5, 0.5]), (0, [0.0, 0.0]),
                                           ([0.1, 0.2], [0.1, 0.2])])
def test_one_dropout_number_is_one_per_hidden_layer(raw, dropout, want):
    p = parse_params(_with_variant(raw, model(kind="mlp", hidden=[8, 4], dropout=dropout)),
                     source="p.yaml")
    got = p.train["v"].model.dropout
    assert got == want and all(type(x) is float for x in got)


def test_a_boolean_dropout_is_refused_not_expanded(raw):
    with pytest.raises(ConfigError) as info:
        parse_params(_with_variant(raw, model(kind="mlp", hidden=[8], dropout=True)),
                     source="p.yaml")
    assert str(info.value).startswith("p.yaml: train.v.model.dropout: ")


def test_training_settings_are_json_without_the_report_only_keys(raw):
    keys = {"series": {"name": "lr sweep", "x": 0.1}, "seeds": [3, 4]}
    spec = parse_params(_with_variant(raw, keys), source="p.yaml").train["v"]
    got = spec.training_settings()
    assert "series" not in got and got["seeds"] == [3, 4]
    assert got == json.loads(json.dumps(spec.model_dump(mode="json", exclude={"series"})))
    assert got["model"] == spec.model.model_dump(mode="json")
    assert got["optimizer"]["betas"] == [0.9, 0.999] and got["dataset"] == "images"


# --------------------------------------------------------------------------- config.settings


@pytest.mark.parametrize("name, ok", [("a/b", False), ("-ab", False), (".ab", False),
                                      ("a-b.c_1", True), ("9x", True), ("A", True)])
def test_the_registered_name_fits_a_models_uri(raw, name, ok):
    r = copy.deepcopy(raw)
    r["tracking"]["registry"]["model"] = name
    if ok:
        assert parse_params(r, source="p.yaml").tracking.registry.model == name
        return
    with pytest.raises(ConfigError) as info:
        parse_params(r, source="p.yaml")
    assert str(info.value) == (
        "p.yaml: tracking.registry.model: expected letters, digits, '.', '_' or '-', starting "
        f"with a letter or digit (it is written models:/<model>@champion), found {name!r}")


# --------------------------------------------------------------------------- config.params

NAME_RULE = "a name of a letter then letters, digits or underscores"
IN_TRAIN = "expected the name of a variant under train, found 'nope'"
PAIRED = ("expected two different variants with the same `seeds`, or the same `kfold` on the "
          "same dataset (a paired comparison), found")


def _copy(r: dict, section: str, name: str, to: str) -> None:
    r[section][to] = copy.deepcopy(r[section][name])


def _search_on_softmax(r: dict, class_weight: str | None = None) -> None:
    """Search `book` over softmax's learning rate, softmax given `class_weight` (None: none)."""
    if class_weight is not None:
        r["train"]["softmax"]["class_weight"] = class_weight
    r["select"]["searches"]["book"] = {"base": "softmax", "grid": {"optimizer.lr": [0.1, 0.2]}}


# (id, edit of a copy of params.yaml, the message after "p.yaml: ", {data}/{train}/{searches}
# standing for the sorted names of the edited file)
SECTION_RULES = [
    ("data_name", lambda r: (_copy(r, "data", "sine", "bad-name"),
                             _copy(r, "prepare", "sine", "bad-name")),
     f"data.bad-name: expected {NAME_RULE} (it becomes a directory and file name), "
     "found 'bad-name'"),
    ("train_name", lambda r: _copy(r, "train", "mlp", "9lives"),
     f"train.9lives: expected {NAME_RULE} (it becomes a directory and file name), "
     "found '9lives'"),
    ("prepare_missing", lambda r: _copy(r, "data", "sine", "extra"),
     "prepare.extra: expected an entry for every dataset under data, found nothing"),
    ("official_keeps_its_test_set", lambda r: r["data"].update(images={"kind": "mnist"}),
     "prepare.images: expected no test_fraction / n_test: mnist keeps its official test set, "
     "found a test size"),
    ("test_size_needed", lambda r: [r["prepare"]["sine"].pop(k, None)
                                    for k in ("test_fraction", "n_test")],
     "prepare.sine.test_fraction: expected a test fraction (or n_test), found nothing"),
    ("prepare_not_in_data", lambda r: _copy(r, "prepare", "sine", "ghost"),
     "prepare.ghost: expected the name of a dataset under data {data}, found 'ghost'"),
    ("variant_dataset", lambda r: r["train"]["mlp"].update(dataset="nope"),
     "train.mlp.dataset: expected one of the datasets under data {data}, found 'nope'"),
    ("loss_fits_the_task", lambda r: r["train"]["linreg"].update(loss="cross_entropy"),
     "train.linreg.loss: expected a loss for the regression dataset 'synthetic_linear': one of "
     "{regression_losses}, found 'cross_entropy'"),
    ("search_name", lambda r: r["select"]["searches"].update(
        {"bad-s": copy.deepcopy(next(iter(r["select"]["searches"].values())))}),
     f"select.searches.bad-s: expected {NAME_RULE} (it becomes a DVC stage and file name), "
     "found 'bad-s'"),
    ("search_base", lambda r: r["select"]["searches"]["book"].update(base="nope"),
     "select.searches.book.base: expected a variant under train {train}, found 'nope'"),
    ("search_base_weighted", lambda r: _search_on_softmax(r, class_weight="balanced"),
     "select.searches.book.base: expected a variant without class_weight (a search's folds "
     "train the unweighted loss), found 'softmax'"),
    ("search_override_weighted", lambda r: (
        _search_on_softmax(r), r["select"]["searches"]["book"].update(
            overrides={"class_weight": "balanced"})),
     "select.searches.book.overrides.class_weight: expected no class_weight (a search's folds "
     "train the unweighted loss), found 'balanced'"),
    ("search_grid_weighted", lambda r: (
        _search_on_softmax(r), r["select"]["searches"]["book"]["grid"].update(
            class_weight=[None, "balanced"])),
     "select.searches.book.grid.class_weight: expected no class_weight (a search's folds "
     "train the unweighted loss), found 'balanced'"),
    ("search_grid", lambda r: r["select"]["searches"]["book"].update(
        grid={"optimizer.lr": [0.1, -1.0]}),
     "select.searches.book.grid: expected settings that make a valid variant (optimizer.lr: "
     "Input should be greater than 0), found {{'optimizer.lr': -1.0}}"),
    ("lesson_dataset", lambda r: r["lessons"]["accuracy_signal"].update(dataset="nope"),
     "lessons.accuracy_signal.dataset: expected one of the datasets under data {data}, "
     "found 'nope'"),
    ("lesson_needs_classification",
     lambda r: r["lessons"]["stacked_linear"].update(dataset="sine"),
     "lessons.stacked_linear.dataset: expected a classification dataset: one of "
     "{classifiers}, found 'sine'"),
    ("note", lambda r: r["report"]["notes"].update(nope="x"), "report.notes.nope: " + IN_TRAIN),
    ("group", lambda r: r["report"]["groups"]["dropout"].append("nope"),
     "report.groups.dropout.{last_dropout}: " + IN_TRAIN),
    ("book_variant", lambda r: r["report"]["book"][1].update(variant="nope"),
     "report.book.1.variant: " + IN_TRAIN),
    ("book_same_as", lambda r: r["report"]["book"][1].update(same_as="nope"),
     "report.book.1.same_as: " + IN_TRAIN),
    ("contrast_a", lambda r: r["report"]["contrasts"][0].update(a="nope"),
     "report.contrasts.0.a: " + IN_TRAIN),
    ("contrast_b", lambda r: r["report"]["contrasts"][0].update(b="nope"),
     "report.contrasts.0.b: " + IN_TRAIN),
    ("rare_recall_needs_rare_classes", lambda r: r["report"]["contrasts"][0].update(
        a="mlp", measure="rare_recall"),
     "report.contrasts.0.a: expected a variant on a dataset with `imbalance` (rare_recall "
     "needs its rare classes), found 'mlp'"),
    # A dataset kind with no `imbalance` key at all (synthetic_linear), not only a digits set
    # without one.
    ("rare_recall_on_a_kind_without_imbalance", lambda r: r["report"]["contrasts"][0].update(
        a="linreg", measure="rare_recall"),
     "report.contrasts.0.a: expected a variant on a dataset with `imbalance` (rare_recall "
     "needs its rare classes), found 'linreg'"),
    ("compare_variant", lambda r: r["report"]["compare"].append(["mlp", "nope"]),
     "report.compare.{last_compare}.1: " + IN_TRAIN),
    ("compare_first_variant", lambda r: r["report"]["compare"].append(["nope", "mlp"]),
     "report.compare.{last_compare}.0: " + IN_TRAIN),
    ("compare_itself", lambda r: r["report"]["compare"].append(["dropout", "dropout"]),
     "report.compare.{last_compare}: " + PAIRED + " ['dropout', 'dropout']"),
    ("compare_unpaired", lambda r: r["report"]["compare"].append(["mlp", "dropout"]),
     "report.compare.{last_compare}: " + PAIRED + " ['mlp', 'dropout']"),
    ("compare_other_seeds", lambda r: (r["train"]["linreg"].update(seeds=[1, 2]),
                                       r["train"]["linreg_scratch"].update(seeds=[1, 3]),
                                       r["report"]["compare"].append(["linreg", "linreg_scratch"])),
     "report.compare.{last_compare}: " + PAIRED + " ['linreg', 'linreg_scratch']"),
    ("compare_kfold_other_dataset", lambda r: (
        r["train"]["linreg"].update(kfold=5), r["train"]["house"].update(kfold=5),
        r["report"]["compare"].append(["linreg", "house"])),
     "report.compare.{last_compare}: " + PAIRED + " ['linreg', 'house']"),
    ("compare_other_kfold", lambda r: (
        r["train"]["linreg"].update(kfold=5), r["train"]["linreg_scratch"].update(kfold=7),
        r["report"]["compare"].append(["linreg", "linreg_scratch"])),
     "report.compare.{last_compare}: " + PAIRED + " ['linreg', 'linreg_scratch']"),
    ("registry_search", lambda r: r["tracking"]["registry"].update(searches=["book", "nope"]),
     "tracking.registry.searches.1: expected a search under select.searches {searches}, "
     "found 'nope'"),
    ("registry_variant", lambda r: r["tracking"]["registry"].update(variants=["mlp", "nope"]),
     "tracking.registry.variants.1: " + IN_TRAIN),
    ("registry_one_dataset", lambda r: r["tracking"]["registry"].update(
        searches=["book"], variants=["linreg"]),
     "tracking.registry: expected models of one dataset (the champion is chosen by test "
     "score), found select@book on images, linreg on synthetic_linear"),
]


@pytest.mark.parametrize("edit, message", [r[1:] for r in SECTION_RULES],
                         ids=[r[0] for r in SECTION_RULES])
def test_each_cross_section_rule_is_one_whole_line(raw, edit, message):
    r = copy.deepcopy(raw)
    edit(r)
    with pytest.raises(ConfigError) as info:
        parse_params(r, source="p.yaml")
    classifiers = sorted(n for n, d in r["data"].items()
                         if d["kind"] in ("digits", "mnist", "fashion_mnist"))
    want = message.format(data=sorted(r["data"]), train=sorted(r["train"]),
                          searches=sorted(r["select"]["searches"]), classifiers=classifiers,
                          last_dropout=len(r["report"]["groups"]["dropout"]) - 1,
                          last_compare=len(r["report"]["compare"]) - 1,
                          regression_losses=sorted(k for k, tasks in LOSS_TASKS.items()
                                                   if "regression" in tasks))
    assert str(info.value) == f"p.yaml: {want}"


# The neighbours the cross-section rules let through.
SECTION_ALLOWED = [
    ("compare_same_seeds", lambda r: (r["train"]["linreg"].update(seeds=[1, 2]),
                                      r["train"]["linreg_scratch"].update(seeds=[1, 2]),
                                      r["report"]["compare"].append(["linreg", "linreg_scratch"]))),
    ("compare_same_kfold_and_dataset", lambda r: (
        r["train"]["linreg"].update(kfold=3), r["train"]["linreg_scratch"].update(kfold=3),
        r["report"]["compare"].append(["linreg", "linreg_scratch"]))),
    ("search_base_unweighted", lambda r: _search_on_softmax(r)),
    ("search_grid_unweighted", lambda r: (_search_on_softmax(r), r["select"]["searches"]["book"][
        "grid"].update(class_weight=[None]))),
    ("rare_recall_on_imbalanced_digits", lambda r: r["report"]["contrasts"][0].update(
        a="softmax_rare", b="softmax_rare_weighted", measure="rare_recall")),
    ("registry_of_one_dataset", lambda r: r["tracking"]["registry"].update(
        searches=["book"], variants=["mlp"])),
    ("registry_every_search", lambda r: r["tracking"]["registry"].update(searches=None)),
    ("no_registry", lambda r: r["tracking"].pop("registry")),
    ("no_select", lambda r: (r.pop("select"), r["tracking"]["registry"].update(searches=[]))),
]


@pytest.mark.parametrize("edit", [a[1] for a in SECTION_ALLOWED],
                         ids=[a[0] for a in SECTION_ALLOWED])
def test_the_cross_section_neighbours_pass(raw, edit):
    r = copy.deepcopy(raw)
    edit(r)
    parse_params(r, source="p.yaml")


def test_params_error_names_the_file_and_key(raw):
    p = parse_params(copy.deepcopy(raw), source="mine.yaml")
    err = p.error("train.mlp", "no such thing")
    assert isinstance(err, ConfigError) and str(err) == "mine.yaml: train.mlp: no such thing"


def test_grid_variants_are_the_grid_product_over_the_base(raw):
    from dlbasics.config.params import grid_variants

    r = copy.deepcopy(raw)
    r["train"]["mlp"].update(seeds=[1, 2], kfold=3)
    r["select"]["searches"]["book"] = {
        "base": "mlp", "overrides": {"epochs": 2, "optimizer.momentum": 0.5},
        "grid": {"optimizer.lr": [0.1, 0.01], "model.hidden": [[4], [8, 2]]}}
    got = grid_variants(parse_params(r, source="p.yaml"), "book")
    assert [g for g, _ in got] == [
        {"optimizer.lr": 0.1, "model.hidden": [4]}, {"optimizer.lr": 0.1, "model.hidden": [8, 2]},
        {"optimizer.lr": 0.01, "model.hidden": [4]},
        {"optimizer.lr": 0.01, "model.hidden": [8, 2]}]
    for values, spec in got:
        assert spec.optimizer.lr == values["optimizer.lr"]
        assert spec.model.hidden == values["model.hidden"]
        assert spec.epochs == 2 and spec.optimizer.momentum == 0.5
        assert spec.seeds is None and spec.kfold is None  # one fit per fold, no repeats
        assert spec.loss == r["train"]["mlp"]["loss"] and spec.dataset == "images"


def test_submission_candidates_are_the_kfold_variants_on_the_house_prices_table(raw):
    """What the submit stage chooses among: the variants on the dataset of kind house_prices
    that have kfold, in params.train's order (a tie goes to the earlier)."""
    from dlbasics.config.params import kfold_variants, submission_candidates

    r = copy.deepcopy(raw)
    r["train"]["house"]["kfold"] = 5  # K-fold, on `house`: a synthetic_linear set, not the table
    r["train"]["house_once"] = {k: v for k, v in copy.deepcopy(r["train"]["house_linear"]).items()
                                if k != "kfold"}  # on the table, not cross-validated
    r["train"]["a_house"] = copy.deepcopy(r["train"]["house_mlp"])  # last in train, first by name
    p = parse_params(r, source="p.yaml")
    assert submission_candidates(p) == ("house_prices", ["house_linear", "house_mlp", "a_house"])
    assert kfold_variants(p, "house_prices") == ["house_linear", "house_mlp", "a_house"]
    assert kfold_variants(p, "house") == ["house"]
    assert kfold_variants(p, "images") == []


def test_submission_candidates_without_kfold_variants_or_without_the_table(raw):
    from dlbasics.config.params import kfold_variants, submission_candidates

    r = copy.deepcopy(raw)
    r["report"]["compare"].remove(["house_mlp", "house_linear"])  # paired by their kfold
    for name in ("house_linear", "house_mlp"):
        del r["train"][name]["kfold"]
    p = parse_params(r, source="p.yaml")
    assert submission_candidates(p) == ("house_prices", [])
    assert kfold_variants(p, "house_prices") == []

    for name in ("house_linear", "house_mlp"):
        del r["train"][name]
        del r["report"]["notes"][name]
    del r["data"]["house_prices"], r["prepare"]["house_prices"]
    assert submission_candidates(parse_params(r, source="p.yaml")) == (None, [])


# --------------------------------------------------------------------------- config.datasets

LINE = {"kind": "synthetic_linear", "n_samples": 100, "true_w": [1.0, 2.0]}
HOUSE_CSV = {"kind": "house_prices", "source": "csv", "path": "t.csv"}
FRACTIONS = "val_fraction + test_fraction < 0.9, so training keeps at least 10% of the rows"

# (id, section, the entry `sine` of that section, the message after "p.yaml: <section>.sine")
DATASET_RULES = [
    ("two_ways_to_give_w", "data", {**LINE, "w_fill": 1.0},
     ": expected exactly one of true_w, w_fill, w_std, found true_w, w_fill"),
    ("three_ways_to_give_w", "data", {**LINE, "w_fill": 1.0, "w_std": 1.0, "n_features": 2},
     ": expected exactly one of true_w, w_fill, w_std, found true_w, w_fill, w_std"),
    ("no_way_to_give_w", "data", {"kind": "synthetic_linear", "n_features": 2},
     ": expected exactly one of true_w, w_fill, w_std, found none"),
    ("n_features_is_len_true_w", "data", {**LINE, "n_features": 3},
     ".n_features: expected len(true_w) = 2, found 3"),
    ("w_fill_needs_n_features", "data", {"kind": "synthetic_linear", "w_fill": 0.5},
     ".n_features: expected a feature count with w_fill, found nothing"),
    ("w_std_needs_n_features", "data", {"kind": "synthetic_linear", "w_std": 1.0},
     ".n_features: expected a feature count with w_std, found nothing"),
    ("uniform_needs_a_range", "data", {**LINE, "x_dist": "uniform", "x_low": 1.0, "x_high": 1.0},
     ".x_high: expected a value > x_low (1.0), found 1.0"),
    ("polynomial_w_fits", "data", {"kind": "polynomial", "max_degree": 2, "true_w": [1.0] * 3},
     ".true_w: expected at most max_degree (2) weights, found [1.0, 1.0, 1.0]"),
    ("sine_needs_a_range", "data", {"kind": "sine", "x_low": 3.0, "x_high": 3.0},
     ".x_high: expected a value > x_low (3.0), found 3.0"),
    ("local_images_need_a_path", "data", {"kind": "mnist", "source": "local"},
     ".path: expected the directory holding the four IDX files, found nothing"),
    ("csv_needs_a_path", "data", {"kind": "house_prices", "source": "csv"},
     ".path: expected the path of a train.csv, found nothing"),
    ("digit_classes", "data", {"kind": "digits", "imbalance": {"classes": [3, 10], "keep": 0.5}},
     ".imbalance.classes: expected digit classes 0 to 9, found [3, 10]"),
    ("csv_takes_no_n_test_rows", "data", {**HOUSE_CSV, "n_test_rows": 5},
     ".n_test_rows: expected no n_test_rows with source csv (give test_path), found 5"),
    ("generated_takes_no_test_path", "data", {"kind": "house_prices", "test_path": "test.csv"},
     ".test_path: expected no test_path with source generated (give n_test_rows), "
     "found 'test.csv'"),
    ("a_test_csv_needs_an_id", "data", {**HOUSE_CSV, "test_path": "x.csv", "id_column": None},
     ".id_column: expected an id column (a submission is keyed by it), found nothing"),
    ("test_rows_need_an_id", "data", {"kind": "house_prices", "n_test_rows": 5,
                                      "id_column": None},
     ".id_column: expected an id column (a submission is keyed by it), found nothing"),
    ("fractions_or_counts", "prepare", {"n_train": 10, "test_fraction": 0.2},
     ": expected fractions or counts, not both, found both"),
    ("counts_need_n_train", "prepare", {"n_val": 3, "n_test": 4},
     ".n_train: expected n_train with n_val / n_test, found nothing"),
    ("fractions_leave_training_rows", "prepare", {"val_fraction": 0.5, "test_fraction": 0.4},
     f": expected {FRACTIONS}, found 0.5 + 0.4"),
    ("a_test_fraction_alone_too", "prepare", {"test_fraction": 0.9},
     f": expected {FRACTIONS}, found None + 0.9"),
]

DATASET_ALLOWED = [
    ("true_w", "data", {**LINE, "n_features": 2}),
    ("w_fill", "data", {"kind": "synthetic_linear", "w_fill": 0.5, "n_features": 3}),
    ("uniform", "data", {**LINE, "x_dist": "uniform", "x_low": 0.0, "x_high": 1e-9}),
    ("normal_ignores_the_range", "data", {**LINE, "x_low": 1.0, "x_high": 1.0}),
    ("polynomial_at_max_degree", "data", {"kind": "polynomial", "max_degree": 3,
                                          "true_w": [1.0] * 3}),
    ("sine", "data", {"kind": "sine", "x_low": -1e-9, "x_high": 0.0}),
    ("download_without_path", "data", {"kind": "mnist", "source": "download"}),
    ("local_with_path", "data", {"kind": "fashion_mnist", "source": "local", "path": "/x"}),
    ("csv_with_path", "data", {"kind": "house_prices", "source": "csv", "path": "t.csv"}),
    ("generated_house", "data", {"kind": "house_prices"}),
    ("digit_nine", "data", {"kind": "digits", "imbalance": {"classes": [0, 9], "keep": 0.5}}),
    ("no_id_without_a_test_set", "data", {"kind": "house_prices", "id_column": None}),
    ("csv_with_a_test_csv", "data", {**HOUSE_CSV, "test_path": "x.csv"}),
    ("generated_with_test_rows", "data", {"kind": "house_prices", "n_test_rows": 5}),
    ("counts", "prepare", {"n_train": 10, "n_test": 4}),
    ("fractions_just_under", "prepare", {"val_fraction": 0.5, "test_fraction": 0.3999}),
]


def _dataset_edit(raw: dict, section: str, entry: dict) -> dict:
    r = copy.deepcopy(raw)
    r[section]["sine"] = copy.deepcopy(entry)
    # Lessons and variants on `sine` stay valid whatever it becomes: only the rule speaks.
    if section == "data" and entry["kind"] in ("mnist", "fashion_mnist"):
        r["prepare"]["sine"] = {"val_fraction": 0.1}
    for v in [v for v, spec in r["train"].items() if spec.get("dataset") == "sine"]:
        r["train"].pop(v)
        r["report"]["notes"].pop(v, None)
    return r


@pytest.mark.parametrize("section, entry, message", [r[1:] for r in DATASET_RULES],
                         ids=[r[0] for r in DATASET_RULES])
def test_each_dataset_rule_is_one_whole_line(raw, section, entry, message):
    with pytest.raises(ConfigError) as info:
        parse_params(_dataset_edit(raw, section, entry), source="p.yaml")
    assert str(info.value) == f"p.yaml: {section}.sine{message}"


@pytest.mark.parametrize("section, entry", [a[1:] for a in DATASET_ALLOWED],
                         ids=[a[0] for a in DATASET_ALLOWED])
def test_the_dataset_neighbours_pass(raw, section, entry):
    p = parse_params(_dataset_edit(raw, section, entry), source="p.yaml")
    assert getattr(p, section)["sine"].model_dump(exclude_unset=True) == entry
