"""A profile laid over the raw file (`apply_profile`), and each profile checked where its keys
land (`check_profiles`): a bad value is named at its key under profiles.NAME.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from dlbasics.config.base import KeyProblem, Shown, set_path
from dlbasics.config.datasets import PrepareSpec
from dlbasics.config.lessons import LessonsSpec
from dlbasics.config.messages import allowed_fields, describe_error, format_loc
from dlbasics.config.params import Params
from dlbasics.config.profiles import IMAGE_KINDS, ProfileSpec
from dlbasics.config.variants import SearchSpec, VariantSpec


def apply_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` params with the profile named by its `profile` key laid over it (a new mapping;
    `raw` itself is not changed). No profile, or profile null: `raw` as it is."""
    name = raw.get("profile")
    if name is None:
        return raw
    profiles = raw.get("profiles") if isinstance(raw.get("profiles"), dict) else {}
    if not isinstance(name, str) or name not in profiles:
        raise ProfileError(f"profile: expected null or one of the names under profiles "
                            f"{sorted(profiles)}, found {name!r}")
    try:
        prof = ProfileSpec.model_validate(profiles[name])
    except ValidationError:
        return raw  # reported with its key path when the whole file is validated
    raw = _apply_overrides(raw, name, prof.overrides)
    out = dict(raw)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    images = {n for n, d in data.items() if isinstance(d, dict) and d.get("kind") in IMAGE_KINDS}
    if prof.prepare and isinstance(raw.get("prepare"), dict):
        out["prepare"] = {n: ({**p, **prof.prepare} if n in images and isinstance(p, dict) else p)
                          for n, p in raw["prepare"].items()}
    if isinstance(raw.get("train"), dict):
        train = {}
        for vname, v in raw["train"].items():
            if isinstance(v, dict) and v.get("dataset") in images:
                for path, value in prof.variants.items():
                    v = set_path(v, path, value)
            train[vname] = v
        out["train"] = train
        select = raw.get("select")
        if prof.searches and isinstance(select, dict) and isinstance(select.get("searches"), dict):
            searches = {}
            for sname, sp in select["searches"].items():
                base = train.get(sp.get("base")) if isinstance(sp, dict) else None
                if isinstance(base, dict) and base.get("dataset") in images:
                    sp = {**sp, **prof.searches}
                searches[sname] = sp
            out["select"] = {**select, "searches": searches}
    lessons = raw.get("lessons", {})
    if prof.lessons and isinstance(lessons, dict):
        out["lessons"] = dict(lessons)
        for lname, keys in prof.lessons.items():
            if lname not in LessonsSpec.model_fields:
                raise ProfileError(f"profiles.{name}.lessons.{lname}: expected one of the "
                                    f"lessons ({', '.join(LessonsSpec.model_fields)}), found "
                                    "an unknown key (a typo?)")
            entry = lessons.get(lname)  # absent or null: the lesson does not run
            if isinstance(entry, dict):
                out["lessons"][lname] = {**entry, **keys}
    return out


class ProfileError(ValueError):
    pass


# Top-level keys a profile's overrides may not reach: the profile switch and the profiles.
_NOT_OVERRIDABLE = ("profile", "profiles")


def _apply_overrides(raw: dict[str, Any], name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """`raw` with each of profile `name`'s override key paths set (a new mapping). A path into
    an entry the file does not have (a variant or search removed from it) is skipped, as the
    profile's sections skip what is not there: removing an entry needs no profile edit."""
    allowed = [f for f in Params.model_fields if f not in _NOT_OVERRIDABLE]
    for path, value in overrides.items():
        parts = path.split(".")
        if parts[0] not in allowed or "" in parts:
            raise ProfileError(f"profiles.{name}.overrides.{path}: expected a key path under "
                                f"one of {', '.join(allowed)}, found {path!r}")
        node: Any = raw
        for part in parts[:-1]:  # the entry the last key goes into
            node = node.get(part) if isinstance(node, dict) else None
        if len(parts) > 1 and node is None:
            continue
        if len(parts) > 1 and not isinstance(node, dict):
            raise ProfileError(f"profiles.{name}.overrides.{path}: expected a key path through "
                                f"mappings, found {'.'.join(parts[:-1])} holding {node!r}")
        raw = set_path(raw, path, value)
    return raw


def check_profiles(raw: dict[str, Any]) -> None:
    """Every profile of `raw`, selected or not, must make valid settings where it applies: a
    bad value is reported at its own key (profiles.NAME.variants.batch_size), not at the entry
    it would land in, and before any work starts rather than when someone selects it."""
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict):
        return
    images = {n for n, d in _mapping(raw.get("data")).items()
              if isinstance(d, dict) and d.get("kind") in IMAGE_KINDS}
    for name in list(profiles):
        try:
            profiles[name] = ProfileSpec.model_validate(profiles[name])
        except ValidationError:
            return  # reported with its key path when the whole file is validated
        for section in ("variants", "prepare", "searches", "lessons"):
            for target in _profile_targets(raw, images, profiles[name], section):
                _check_profile_keys(f"profiles.{name}.{section}", *target)
        _check_overrides(raw, name, profiles[name])


def _check_overrides(raw: dict[str, Any], name: str, prof: ProfileSpec) -> None:
    """ProfileError at profiles.NAME.overrides when the file is valid without them and not
    with them (the first problem, at its key path in the file as overridden)."""
    if not prof.overrides:
        return
    plain = {k: v for k, v in raw.items() if k != "profile"}
    try:
        Params.model_validate(plain)
    except ValidationError:
        return  # the file's own problem: reported where it is
    applied = _apply_overrides(plain, name, prof.overrides)
    try:
        Params.model_validate(applied)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_exc = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_exc, KeyProblem):
            loc = format_loc((*err["loc"], *ctx_exc.loc))
            found = ctx_exc.found if isinstance(ctx_exc.found, Shown) else repr(ctx_exc.found)
            expected = ctx_exc.what
        else:
            loc = format_loc(err["loc"])
            expected, found = describe_error(err, allowed_fields(applied))
        # At the override that made it (its key, then where inside its value), when one did.
        owner = next((p for p in sorted(prof.overrides, key=len, reverse=True)
                      if loc == p or loc.startswith(f"{p}.") or loc.startswith(f"{p}[")), None)
        where = (f"profiles.{name}.overrides.{owner}{loc[len(owner):]}" if owner
                 else f"profiles.{name}.overrides: {loc}")
        raise ProfileError(f"{where}: expected {expected}, found {found}") from None


# An entry a profile section reaches: (where, the entry's raw settings, its model, the profile's
# keys for it, how to set one key in a copy of the settings).
_ProfileTarget = tuple[str, dict[str, Any], type[BaseModel], dict[str, Any],
                       Callable[[dict[str, Any], str, Any], dict[str, Any]]]


def _profile_targets(raw: dict[str, Any], images: set[str], prof: ProfileSpec,
                     section: str) -> Iterator[_ProfileTarget]:
    """The entries of `raw` that section `section` of profile `prof` sets keys in."""
    if section == "variants":
        for v, spec in _mapping(raw.get("train")).items():
            if isinstance(spec, dict) and spec.get("dataset") in images:
                yield f"train.{v}", spec, VariantSpec, prof.variants, set_path
    elif section == "prepare":
        for d, spec in _mapping(raw.get("prepare")).items():
            if d in images and isinstance(spec, dict):
                yield f"prepare.{d}", spec, PrepareSpec, prof.prepare, _set_key
    elif section == "searches":
        for sname, spec in _mapping(_mapping(raw.get("select")).get("searches")).items():
            if not isinstance(spec, dict):
                continue
            yield f"select.searches.{sname}", spec, SearchSpec, prof.searches, _set_key
    else:
        for lname, keys in prof.lessons.items():
            field = LessonsSpec.model_fields.get(lname)
            kinds = [a for a in getattr(field.annotation, "__args__", ())
                     if hasattr(a, "model_fields")] if field else []
            entry = _mapping(raw.get("lessons")).get(lname)
            if kinds:
                yield (f"lessons.{lname}", entry if isinstance(entry, dict) else {},
                       kinds[0], {f"{lname}.{k}": v for k, v in keys.items()},
                       lambda tree, path, value: _set_key(tree, path.split(".", 1)[1], value))


def _check_profile_keys(prefix: str, where: str, spec: dict[str, Any], model: type[BaseModel],
                        keys: dict[str, Any],
                        put: Callable[[dict[str, Any], str, Any], dict[str, Any]]) -> None:
    """ProfileError at `prefix`.KEY for the first of `keys` that makes a valid `spec` invalid."""
    try:
        model.model_validate(spec)
    except ValidationError:
        return  # the entry's own problem: reported at the entry
    for path, value in keys.items():
        try:
            model.model_validate(put(dict(spec), path, value))
        except ValidationError as exc:
            # The entry was valid: this profile key made it invalid.
            err = exc.errors()[0]
            ctx_exc = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_exc, KeyProblem):
                expected = ctx_exc.what
                found = (ctx_exc.found if isinstance(ctx_exc.found, Shown)
                         else repr(ctx_exc.found))
            else:
                expected, found = describe_error(err, {})
            raise ProfileError(f"{prefix}.{path}: expected {expected}, found {found} (where it "
                                f"applies, {where})") from None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _set_key(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**tree, key: value}
