"""Tests for dlbasics.config: the repository's params.yaml parses, and each single defect in a
copy of it stops with one line naming the file, the exact key path and the value found."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pydantic
import pytest
import yaml

from dlbasics.config.loading import load_params, parse_params
from dlbasics.config.params import Params
from dlbasics.config.variants import ModelSpec
from dlbasics.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    """The repository's params.yaml as plain data; each test edits a deep copy.

    The JSON round trip unshares the nested mappings that YAML merges (`<<: *base`) alias, so
    an edit to one variant does not leak into the variants built on it."""
    return json.loads(json.dumps(yaml.safe_load(PARAMS.read_text())))


def _error(raw: Any, source: str = "params-under-test.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_params(raw, source=source)
    return str(info.value)


def _key_path(msg: str) -> str:
    """The key path of a message of the form `<file>: <key path>: <what>`."""
    return msg.split(": ", 2)[1]


def _set(*path: str, value: Any) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return edit


def _drop(*path: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]

    return edit


def _rename_variant(old: str, new: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        d["train"][new] = d["train"].pop(old)

    return edit


# --------------------------------------------------------------------------- the real file


def test_repository_params_parse(base):
    params = load_params(PARAMS)
    assert isinstance(params, Params)
    # What was parsed is what the file says (no silent default replaced a value).
    assert params.seed == base["seed"]
    assert set(params.train) == set(base["train"])
    for name, raw in base["train"].items():
        v = params.train[name]
        assert v.dataset == raw["dataset"]
        assert v.optimizer.lr == raw["optimizer"]["lr"]
        assert v.batch_size == raw["batch_size"] and v.epochs == raw["epochs"]
        assert v.model.kind == raw["model"]["kind"]
    assert set(params.data) == set(params.prepare) == set(base["data"])


def test_parse_params_equals_load_params(base):
    assert parse_params(copy.deepcopy(base), source=str(PARAMS)) == load_params(PARAMS)


# --------------------------------------------------------------------------- one defect each

# (id, edit of a deep copy, exact key path in the message, text of the found value, more texts)
DEFECTS = [
    ("negative_lr", _set("train", "mlp", "optimizer", "lr", value=-0.1),
     "train.mlp.optimizer.lr", "-0.1", ()),
    ("zero_batch_size", _set("train", "softmax", "batch_size", value=0),
     "train.softmax.batch_size", "0", ()),
    ("string_epochs", _set("train", "linreg", "epochs", value="ten"),
     "train.linreg.epochs", "'ten'", ()),
    ("fractional_epochs", _set("train", "linreg", "epochs", value=2.5),
     "train.linreg.epochs", "2.5", ()),
    ("lr_too_large", _set("train", "mlp", "optimizer", "lr", value=1e3),
     "train.mlp.optimizer.lr", "1000.0", ()),
    # The boundaries themselves: lr must be > 0 (0 is refused) and <= 100 (100 is allowed).
    ("zero_lr", _set("train", "mlp", "optimizer", "lr", value=0.0),
     "train.mlp.optimizer.lr", "0.0", ("> 0",)),
    ("negative_seed", _set("seed", value=-1), "seed", "-1", ()),
    ("unknown_top_level_key", _set("sede", value=1), "sede", "unknown key",
     ("allowed keys", "seed", "train", "prepare")),
    ("unknown_variant_key", _set("train", "mlp", "epochz", value=3),
     "train.mlp.epochz", "unknown key", ("allowed keys", "epochs", "batch_size")),
    ("unknown_model_key", _set("train", "mlp", "model", "hiden", value=[3]),
     "train.mlp.model.hiden", "unknown key", ("allowed keys", "hidden", "dropout")),
    ("unknown_optimizer_key", _set("train", "mlp", "optimizer", "learning_rate", value=0.1),
     "train.mlp.optimizer.learning_rate", "unknown key", ("allowed keys", "lr", "momentum")),
    ("unknown_data_key", _set("data", "synthetic_linear", "noise", value=0.1),
     "data.synthetic_linear.noise", "unknown key", ("allowed keys", "noise_sd")),
    ("unknown_prepare_key", _set("prepare", "images", "scaling", value="standard"),
     "prepare.images.scaling", "unknown key", ("allowed keys", "scale")),
    ("missing_required_variant_key", _drop("train", "mlp", "loss"),
     "train.mlp.loss", "nothing", ("required",)),
    ("missing_seed", _drop("seed"), "seed", "nothing", ("required",)),
    ("dataset_not_under_data", _set("train", "mlp", "dataset", value="mnist"),
     "train.mlp.dataset", "'mnist'", ("images", "synthetic_linear")),
    ("dropout_out_of_range", _set("train", "mlp", "model", "dropout", value=[1.5]),
     "train.mlp.model.dropout.0", "1.5", ()),
    ("unknown_device", _set("runtime", "device", value="tpu"), "runtime.device", "'tpu'", ()),
    ("unknown_dataset_kind", _set("data", "images", "kind", value="cifar10"),
     "data.images", "cifar10", ("synthetic_linear", "digits", "mnist", "fashion_mnist")),
    ("cross_entropy_on_regression", _set("train", "linreg", "loss", value="cross_entropy"),
     "train.linreg.loss", "'cross_entropy'", ("synthetic_linear", "regression")),
    ("mse_on_classification", _set("train", "softmax", "loss", value="mse"),
     "train.softmax.loss", "'mse'", ("images",)),
    ("variant_name_with_dash", _rename_variant("mlp", "mlp-wide"), "train.mlp-wide",
     "'mlp-wide'", ("underscores",)),
    ("fractions_leave_too_few_training_rows", _set("prepare", "images", "val_fraction", value=0.75),
     "prepare.images", "0.75", ("val_fraction + test_fraction",)),
    ("prepare_names_unknown_dataset", _set("prepare", "mnist", value={"test_fraction": 0.2}),
     "prepare.mnist", "'mnist'", ()),
]


@pytest.mark.parametrize(
    "edit, key_path, found, more", [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS]
)
def test_one_defect_one_line_naming_key_and_value(base, edit, key_path, found, more):
    raw = copy.deepcopy(base)
    edit(raw)
    msg = _error(raw, source="params-under-test.yaml")
    assert "\n" not in msg
    assert msg.startswith("params-under-test.yaml: ")
    assert _key_path(msg) == key_path, msg
    assert found in msg.split(": ", 2)[2], msg
    for text in more:
        assert text in msg, msg


@pytest.mark.parametrize("lr, ok", [(0.0, False), (5e-324, True), (100.0, True),
                                     (100.00000000000001, False)])
def test_the_learning_rate_boundaries(base, lr, ok):
    """lr in (0, 100]: the smallest positive float is a learning rate, 0 is not; 100 is."""
    raw = copy.deepcopy(base)
    _set("train", "mlp", "optimizer", "lr", value=lr)(raw)
    if ok:
        assert parse_params(raw, source="p.yaml").train["mlp"].optimizer.lr == lr
    else:
        assert _key_path(_error(raw, source="p.yaml")) == "train.mlp.optimizer.lr"


def test_prepare_missing_a_dataset_names_prepare_and_the_dataset(base):
    raw = copy.deepcopy(base)
    del raw["prepare"]["images"]
    msg = _error(raw)
    assert "\n" not in msg
    assert _key_path(msg).startswith("prepare")
    assert "images" in msg


def test_dropout_list_of_wrong_length_names_dropout(base):
    raw = copy.deepcopy(base)
    raw["train"]["mlp"]["model"]["dropout"] = [0.1, 0.2]  # hidden has one layer
    msg = _error(raw)
    assert "\n" not in msg
    assert _key_path(msg) == "train.mlp.model.dropout", msg
    assert "[0.1, 0.2]" in msg


def test_mlp_without_hidden_is_linear_but_scratch_mlp_needs_hidden(base):
    # A torch MLP with no hidden layer is the 0-layer point of a grid (a linear model) ...
    raw = copy.deepcopy(base)
    raw["train"]["mlp"]["model"]["hidden"] = []
    assert parse_params(raw).train["mlp"].model.hidden == []
    # ... but the hand-written MLP has no such reading.
    raw["train"]["mlp"]["model"]["kind"] = "mlp_scratch"
    raw["train"]["mlp"]["model"]["init"] = "normal"
    msg = _error(raw)
    assert "\n" not in msg
    assert _key_path(msg) == "train.mlp.model.hidden", msg
    assert "[]" in msg


def test_two_defects_report_the_first_and_count_the_rest(base):
    raw = copy.deepcopy(base)
    raw["train"]["mlp"]["optimizer"]["lr"] = -1
    raw["train"]["mlp"]["batch_size"] = 0
    msg = _error(raw)
    assert "\n" not in msg
    assert "1 more problem" in msg


# --------------------------------------------------------------------------- the file itself


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_invalid_yaml_names_file_and_line(tmp_path, base):
    good = yaml.safe_dump(base, sort_keys=False).splitlines()
    # An unclosed flow sequence on a known line.
    bad_line = len(good) + 1
    path = _write(tmp_path, "\n".join(good) + "\nbroken: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    assert "invalid YAML" in msg
    # PyYAML reports an unclosed bracket where the stream ends (the line after it) at the latest.
    line = int(msg.split(" at line ")[1].split(",")[0])
    assert bad_line <= line <= bad_line + 1


def test_bad_indentation_names_its_line(tmp_path):
    path = _write(tmp_path, "seed: 0\ntrain:\n  a: 1\n   b: 2\n")
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert "at line 4" in str(info.value)


def test_empty_file(tmp_path):
    path = _write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "empty" in msg


def test_list_at_top_level(tmp_path):
    path = _write(tmp_path, "- seed\n- train\n")
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "list" in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_params(tmp_path / "nope.yaml")
    assert str(info.value).startswith(str(tmp_path / "nope.yaml"))


def test_load_params_reports_the_path_it_was_given(tmp_path, base):
    raw = copy.deepcopy(base)
    raw["train"]["mlp"]["optimizer"]["lr"] = -0.5
    path = _write(tmp_path, yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value).startswith(f"{path}: train.mlp.optimizer.lr: ")


# --------------------------------------------------------------------------- frozen


def test_parsed_objects_are_frozen():
    params = load_params(PARAMS)
    targets = [
        (params, "seed", 1),
        (params.runtime, "device", "cpu"),
        (params.train["mlp"], "epochs", 1),
        (params.train["mlp"].model, "init_std", 1.0),
        (params.train["mlp"].optimizer, "lr", 1.0),
        (params.prepare["images"], "scale", "none"),
        (params.data["synthetic_linear"], "noise_sd", 1.0),
    ]
    for obj, field, value in targets:
        before = getattr(obj, field)
        with pytest.raises(pydantic.ValidationError):
            setattr(obj, field, value)
        assert getattr(obj, field) == before


def test_model_spec_defaults_are_not_shared():
    # Lists inside a frozen model are still lists: a default shared between instances would
    # leak an edit of one variant into every other.
    a = ModelSpec(kind="mlp", hidden=[4])
    b, c = ModelSpec(kind="linear"), ModelSpec(kind="linear")
    b.dropout.append(0.5)
    assert c.dropout == [] and ModelSpec(kind="linear").dropout == []
    assert a.dropout == []


def test_no_two_variants_share_a_nested_mapping():
    """`dvc exp run -S train.<variant>.<key>.<sub>=v` merges its override back into the file
    mapping by mapping; where two variants alias one nested mapping (`<<: *base` without
    re-merging the base's `optimizer`), the second write puts the old value back and the
    experiment silently changes nothing. Every nested mapping of a variant is its own."""
    raw = yaml.safe_load(PARAMS.read_text())
    owners: dict[int, list[str]] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            owners.setdefault(id(node), []).append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}")

    for name, spec in raw["train"].items():
        for key, value in spec.items():
            walk(value, f"train.{name}.{key}")
    assert [paths for paths in owners.values() if len(paths) > 1] == []


def test_dvc_set_param_on_a_base_changes_that_variant_and_keeps_the_others(tmp_path):
    """What `dvc exp run -S train.mlp.optimizer.lr=0.05` writes, by DVC's own function: mlp's
    learning rate changes; every other variant resolves to the settings it had."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    copy.write_text(PARAMS.read_text())
    apply_overrides(str(copy), ["train.mlp.optimizer.lr=0.05"])
    before = yaml.safe_load(PARAMS.read_text())["train"]
    after = yaml.safe_load(copy.read_text())["train"]
    assert after["mlp"]["optimizer"]["lr"] == 0.05
    assert {n for n in before if before[n] != after[n]} == {"mlp"}
