"""The registry's decisions on their own, fast: which models are registered (`registers`), and
where the champion alias goes (`at_least_as_good`, `_promote`) against a real MLflow registry in
a temporary SQLite store. tests/test_registry.py runs the same rule through `dvc repro`."""

from __future__ import annotations

import copy
import json

import mlflow
import pytest
import yaml
from conftest import REPO

from dlbasics.config.loading import parse_params
from dlbasics.tracking import registry

@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))


def _params(raw: dict, **registry_keys):
    r = copy.deepcopy(raw)
    r["tracking"]["registry"].update(registry_keys)
    return parse_params(r, source="p.yaml")


def test_registers_follows_the_registry_settings(raw):
    search = next(iter(raw["select"]["searches"]))
    other = [s for s in raw["select"]["searches"] if s != search]
    variant = next(v for v in raw["train"] if raw["train"][v].get("dataset", "images") == "images")
    every = _params(raw, searches=None, variants=[])
    assert registry.registers(every, f"select@{search}")
    assert not registry.registers(every, variant)  # a variant only when listed
    only = _params(raw, searches=[search], variants=[])
    assert registry.registers(only, f"select@{search}")
    assert all(not registry.registers(only, f"select@{s}") for s in other)
    # A variant's name is not a search's: `select@` is what marks a search's winner.
    assert not registry.registers(only, search)
    unlogged = copy.deepcopy(raw)
    unlogged["tracking"]["log_models"] = False
    assert not registry.registers(parse_params(unlogged, source="p.yaml"), f"select@{search}")
    none = copy.deepcopy(raw)
    none["tracking"].pop("registry")
    assert not registry.registers(parse_params(none, source="p.yaml"), f"select@{search}")


def test_registers_a_listed_variant(raw):
    images = [v for v in raw["train"] if raw["train"][v].get("dataset", "images") == "images"]
    listed = _params(raw, variants=images[:1])
    assert registry.registers(listed, images[0])
    assert not any(registry.registers(listed, v) for v in images[1:])


@pytest.mark.parametrize("metric, better, worse", [
    ("rmse", 0.5, 0.7), ("accuracy", 0.9, 0.8), ("exact_match", 0.6, 0.4)])
def test_at_least_as_good_at_both_sides_and_on_a_tie(metric, better, worse):
    assert registry.at_least_as_good(metric, better, worse)
    assert not registry.at_least_as_good(metric, worse, better)
    # A tie counts as at least as good, whichever way the metric points.
    assert registry.at_least_as_good(metric, better, better)
    assert registry.at_least_as_good(metric, worse, worse)


# ----------------------------------------------------------------------------- the alias


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite registry for the module (creating one takes seconds); a model per test."""
    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")


@pytest.fixture
def model(store, tmp_path, request):
    """(client, registered model name, a folder for the versions' sources)."""
    name = f"rule-{len(store.search_registered_models()) + 1}"
    store.create_registered_model(name)
    return store, name, tmp_path


def _version(model, **tags):
    client, name, folder = model
    n = len(client.search_model_versions(f"name = '{name}'"))
    src = folder / f"model{n}"
    src.mkdir()
    return client.create_model_version(name, source=src.as_uri(), tags=tags)


def _holder(model) -> str:
    client, name, _ = model
    return client.get_model_version_by_alias(name, registry.ALIAS).version


@pytest.mark.parametrize("metric, first, worse, equal, better", [
    ("rmse", 0.5, 0.6, 0.5, 0.4), ("accuracy", 0.8, 0.7, 0.8, 0.9)])
def test_the_alias_moves_on_a_tie_and_a_better_score_only(model, metric, first, worse, equal,
                                                          better):
    client, name, _ = model
    key = f"test_{metric}"
    v1 = _version(model, **{key: repr(first)})
    moved, best, was = registry._promote(client, name, v1, metric)
    assert moved and best.version == v1.version and was is None
    assert _holder(model) == v1.version
    # The holder itself again: nothing moves.
    assert registry._promote(client, name, v1, metric)[0] is False
    v2 = _version(model, **{key: repr(worse)})
    moved, best, was = registry._promote(client, name, v2, metric)
    assert not moved and best.version == was.version == v1.version == _holder(model)
    v3 = _version(model, **{key: repr(equal)})
    moved, best, was = registry._promote(client, name, v3, metric)
    assert moved and best.version == v3.version == _holder(model) and was.version == v1.version
    assert best.tags[key] == repr(equal)  # the version returned carries its tags
    v4 = _version(model, **{key: repr(better)})
    assert registry._promote(client, name, v4, metric)[0]
    assert _holder(model) == v4.version


def test_a_holder_scored_by_another_metric_keeps_the_alias(model):
    client, name, _ = model
    v1 = _version(model, test_accuracy="0.9")
    assert registry._promote(client, name, v1, "accuracy")[0]
    v2 = _version(model, test_rmse="0.1")
    moved, best, was = registry._promote(client, name, v2, "rmse")
    assert not moved and best.version == was.version == v1.version == _holder(model)
