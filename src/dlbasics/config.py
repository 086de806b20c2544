"""params.yaml parsed into typed, frozen, validated objects.

Every stage loads the whole file through `load_params` before it does any work, so a bad value
anywhere stops the stage with one line naming the file, the key path, what was expected and
what was found (exit code 2, see `dlbasics.cli`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(Exception):
    """A params file that cannot be used; the message is one line ready for the user."""


class Strict(BaseModel):
    # Unknown keys are typos: reject them instead of silently ignoring a setting.
    # Strict: a quoted "30" or a `true` where a number belongs is an error, not a conversion.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


# ----------------------------------------------------------------------------- runtime / tracking


class Runtime(Strict):
    """How to run, not what to compute: not a DVC dependency of any trained stage."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1, le=512)] = 2


class Tracking(Strict):
    experiment: Annotated[str, Field(min_length=1)] = "dlbasics"
    log_models: bool = True


# ----------------------------------------------------------------------------- data


class SyntheticLinear(Strict):
    """y = X w + b + N(0, noise_sd^2), X ~ N(0, 1)."""

    kind: Literal["synthetic_linear"]
    n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 1000
    true_w: Annotated[list[float], Field(min_length=1)] = [2.0, -3.4]
    true_b: float = 4.2
    noise_sd: Annotated[float, Field(ge=0)] = 0.01


class Digits(Strict):
    """scikit-learn's bundled 8x8 digits (1797 x 64), the embedded image set."""

    kind: Literal["digits"]


DatasetSpec = Annotated[Union[SyntheticLinear, Digits], Field(discriminator="kind")]
DATASET_KINDS = ("synthetic_linear", "digits")


class PrepareSpec(Strict):
    """How one dataset is split and scaled; scalers are fitted on the training part only."""

    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.2
    scale: Literal["none", "standard", "minmax"] = "standard"

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> PrepareSpec:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise _KeyProblem(
                (),
                "val_fraction + test_fraction < 0.9, so training keeps at least 10% of the rows",
                _Shown(f"{self.val_fraction} + {self.test_fraction}"),
            )
        return self


# ----------------------------------------------------------------------------- models and training

Activation = Literal["relu", "sigmoid", "tanh", "leaky_relu"]


class ModelSpec(Strict):
    kind: Literal["linear", "mlp"]
    hidden: list[PositiveInt] = []
    activation: Activation = "relu"
    # One dropout probability per hidden layer (or none at all).
    dropout: list[Annotated[float, Field(ge=0, lt=1)]] = []
    init: Literal["default", "normal", "xavier"] = "default"
    init_std: PositiveFloat = 0.01

    @model_validator(mode="after")
    def _shape_is_consistent(self) -> ModelSpec:
        if self.kind == "linear" and self.hidden:
            raise _KeyProblem(("hidden",), "a linear model has no hidden layers (use kind: mlp)",
                              self.hidden)
        if self.kind == "linear" and self.dropout:
            raise _KeyProblem(("dropout",), "a linear model has no dropout (use kind: mlp)",
                              self.dropout)
        if self.kind == "mlp" and not self.hidden:
            raise _KeyProblem(("hidden",), "kind mlp needs at least one hidden layer size",
                              self.hidden)
        if self.dropout and len(self.dropout) != len(self.hidden):
            raise _KeyProblem(
                ("dropout",),
                f"one probability per hidden layer ({len(self.hidden)})",
                self.dropout,
            )
        return self


class OptimizerSpec(Strict):
    name: Literal["sgd", "adam", "rmsprop"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=100)]
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Applied to weights only: biases are not decayed.
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    betas: Annotated[
        list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)
    ] = [0.9, 0.999]
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.99


class VariantSpec(Strict):
    """One trained variant: `train@<name>` in dvc.yaml."""

    dataset: Annotated[str, Field(min_length=1)]
    model: ModelSpec
    loss: Literal["mse", "cross_entropy"]
    optimizer: OptimizerSpec
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)]
    epochs: Annotated[int, Field(gt=0, le=100_000)]


class EvaluateSpec(Strict):
    top_k: Annotated[list[PositiveInt], Field(min_length=1)] = [1, 3]


class Params(Strict):
    seed: Annotated[int, Field(ge=0, lt=2**31)]
    runtime: Runtime = Runtime()
    tracking: Tracking = Tracking()
    data: dict[str, DatasetSpec]
    prepare: dict[str, PrepareSpec]
    train: Annotated[dict[str, VariantSpec], Field(min_length=1)]
    evaluate: EvaluateSpec = EvaluateSpec()

    @model_validator(mode="after")
    def _names_resolve(self) -> Params:
        for section in ("data", "prepare", "train"):
            for name in getattr(self, section):
                if not _NAME.fullmatch(name):
                    raise _KeyProblem(
                        (section, name),
                        "a name of a letter then letters, digits or underscores (it becomes "
                        "a DVC stage and file name)",
                        name,
                    )
        for name in self.data:
            if name not in self.prepare:
                raise _KeyProblem(
                    ("prepare", name), "an entry for every dataset under data", _NOTHING
                )
        for name in self.prepare:
            if name not in self.data:
                raise _KeyProblem(
                    ("prepare", name), f"the name of a dataset under data {sorted(self.data)}",
                    name,
                )
        for vname, v in self.train.items():
            if v.dataset not in self.data:
                raise _KeyProblem(
                    ("train", vname, "dataset"),
                    f"one of the datasets under data {sorted(self.data)}",
                    v.dataset,
                )
            kind = self.data[v.dataset].kind
            if v.loss == "cross_entropy" and kind == "synthetic_linear":
                raise _KeyProblem(
                    ("train", vname, "loss"),
                    f"a regression loss (mse): {v.dataset!r} is a regression dataset",
                    v.loss,
                )
            if v.loss == "mse" and kind == "digits":
                raise _KeyProblem(
                    ("train", vname, "loss"),
                    f"a classification loss (cross_entropy): {v.dataset!r} has classes",
                    v.loss,
                )
        return self


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class _Shown(str):
    """A `found` value already in words (printed as is, not repr'd)."""


_NOTHING = _Shown("nothing")


class _KeyProblem(ValueError):
    """A cross-field problem that knows its key path (relative to the model raising it)."""

    def __init__(self, loc: tuple[str, ...], what: str, found: Any):
        super().__init__(what)
        self.loc, self.what, self.found = loc, what, found


# ----------------------------------------------------------------------------- loading


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # A tagged union puts the tag into the location (data.<name>.<kind>.field): drop it.
    if len(parts) >= 3 and parts[0] == "data" and parts[2] in DATASET_KINDS:
        del parts[2]
    return ".".join(parts) or "<top level>"


def _describe(err: dict[str, Any], model_fields: dict[str, list[str]]) -> tuple[str, str]:
    """(expected, found) in words for one pydantic error."""
    etype, msg = err["type"], err["msg"]
    found = "nothing" if etype == "missing" else repr(err.get("input"))
    if etype == "extra_forbidden":
        allowed = model_fields.get(_format_loc(err["loc"][:-1]))
        return f"one of the allowed keys ({', '.join(allowed or [])})", "an unknown key (a typo?)"
    if etype == "missing":
        return "a value (the key is required)", found
    if etype in ("union_tag_invalid", "union_tag_not_found"):
        tag = (err.get("ctx") or {}).get("tag")
        return f"kind: one of {', '.join(DATASET_KINDS)}", repr(tag) if tag else "no kind"
    if etype == "value_error":
        return msg.removeprefix("Value error, "), found
    ctx = err.get("ctx") or {}
    words = {
        "greater_than": lambda: f"a value > {ctx['gt']}",
        "greater_than_equal": lambda: f"a value >= {ctx['ge']}",
        "less_than": lambda: f"a value < {ctx['lt']}",
        "less_than_equal": lambda: f"a value <= {ctx['le']}",
        "int_parsing": lambda: "an integer",
        "int_type": lambda: "an integer",
        "int_from_float": lambda: "an integer",
        "float_parsing": lambda: "a number",
        "float_type": lambda: "a number",
        "bool_parsing": lambda: "true or false",
        "bool_type": lambda: "true or false",
        "string_type": lambda: "a string",
        "list_type": lambda: "a list",
        "tuple_type": lambda: "a list",
        "dict_type": lambda: "a mapping",
        "model_type": lambda: "a mapping",
        "model_attributes_type": lambda: "a mapping",
        "too_short": lambda: f"at least {ctx['min_length']} item(s)",
        "too_long": lambda: f"at most {ctx['max_length']} item(s)",
        "string_too_short": lambda: "a non-empty string",
        "literal_error": lambda: f"one of {ctx['expected']}",
    }
    if etype in words:
        return words[etype](), found
    return msg.removeprefix("Input should be ").rstrip("."), found


def _allowed_fields(params: dict[str, Any]) -> dict[str, list[str]]:
    """Key path -> allowed keys, to list them next to an unknown key."""
    out: dict[str, list[str]] = {"<top level>": list(Params.model_fields)}
    for section, model in (("runtime", Runtime), ("tracking", Tracking), ("evaluate", EvaluateSpec)):
        out[section] = list(model.model_fields)
    for name, spec in (params.get("data") or {}).items() if isinstance(params.get("data"), dict) else []:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        model = {"synthetic_linear": SyntheticLinear, "digits": Digits}.get(kind)
        if model:
            out[f"data.{name}"] = list(model.model_fields)
    if isinstance(params.get("prepare"), dict):
        for name in params["prepare"]:
            out[f"prepare.{name}"] = list(PrepareSpec.model_fields)
    if isinstance(params.get("train"), dict):
        for name in params["train"]:
            out[f"train.{name}"] = list(VariantSpec.model_fields)
            out[f"train.{name}.model"] = list(ModelSpec.model_fields)
            out[f"train.{name}.optimizer"] = list(OptimizerSpec.model_fields)
    return out


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; raise ConfigError with one line on any problem."""
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping of sections"
        raise ConfigError(f"{source}: <top level>: expected a mapping of sections, found {kind}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_exc = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_exc, _KeyProblem):
            found = ctx_exc.found if isinstance(ctx_exc.found, _Shown) else repr(ctx_exc.found)
            loc = _format_loc((*err["loc"], *ctx_exc.loc))
            raise ConfigError(f"{source}: {loc}: expected {ctx_exc.what}, found {found}") from None
        expected, found = _describe(err, _allowed_fields(raw))
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(
            f"{source}: {_format_loc(err['loc'])}: expected {expected}, found {found}{more}"
        ) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (safe YAML only)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run from the repository root") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    return parse_params(raw, source=str(path))
