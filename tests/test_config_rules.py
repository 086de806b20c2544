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
