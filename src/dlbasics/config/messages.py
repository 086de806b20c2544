"""How a validation problem is worded: the key path, what was expected (the allowed keys where a
key is unknown), and what was found.
"""

from __future__ import annotations

from typing import Any

from dlbasics.config.datasets import DATASET_KINDS, DATASET_MODELS, PrepareSpec
from dlbasics.config.lessons import LessonsSpec
from dlbasics.config.params import Params
from dlbasics.config.profiles import ProfileSpec
from dlbasics.config.report import ReportSpec
from dlbasics.config.settings import Registry, Runtime, Tracking
from dlbasics.config.variants import (
    EvaluateSpec,
    ModelSpec,
    OptimizerSpec,
    PenaltySpec,
    SearchSpec,
    SelectSpec,
    SeriesSpec,
    VariantSpec,
)

# ----------------------------------------------------------------------------- loading


def format_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # A tagged union puts the tag into the location (data.<name>.<kind>.field): drop it.
    if len(parts) >= 3 and parts[0] == "data" and parts[2] in DATASET_KINDS:
        del parts[2]
    return ".".join(parts) or "<top level>"


def describe_error(err: dict[str, Any], model_fields: dict[str, list[str]]) -> tuple[str, str]:
    """(expected, found) in words for one pydantic error."""
    etype, msg = err["type"], err["msg"]
    found = "nothing" if etype == "missing" else repr(err.get("input"))
    if etype == "extra_forbidden":
        allowed = model_fields.get(format_loc(err["loc"][:-1]))
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


def allowed_fields(params: dict[str, Any]) -> dict[str, list[str]]:
    """Key path -> allowed keys, to list them next to an unknown key."""
    out: dict[str, list[str]] = {"<top level>": list(Params.model_fields)}
    for section, model in (("runtime", Runtime), ("tracking", Tracking),
                           ("tracking.registry", Registry),
                           ("evaluate", EvaluateSpec), ("report", ReportSpec),
                           ("lessons", LessonsSpec)):
        out[section] = list(model.model_fields)
    for lname, field in LessonsSpec.model_fields.items():
        kinds = [a for a in getattr(field.annotation, "__args__", ()) if hasattr(a, "model_fields")]
        if kinds:
            out[f"lessons.{lname}"] = list(kinds[0].model_fields)
    profiles = params.get("profiles")
    for name in profiles if isinstance(profiles, dict) else []:
        out[f"profiles.{name}"] = list(ProfileSpec.model_fields)
    for name, spec in (params.get("data") or {}).items() if isinstance(params.get("data"), dict) else []:
        kind = spec.get("kind") if isinstance(spec, dict) else None
        model = DATASET_MODELS.get(kind) if isinstance(kind, str) else None
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
            out[f"train.{name}.penalty"] = list(PenaltySpec.model_fields)
            out[f"train.{name}.series"] = list(SeriesSpec.model_fields)
    out["select"] = list(SelectSpec.model_fields)
    searches = (params.get("select") or {}).get("searches") if isinstance(
        params.get("select"), dict) else None
    for name in searches if isinstance(searches, dict) else []:
        out[f"select.searches.{name}"] = list(SearchSpec.model_fields)
    return out
