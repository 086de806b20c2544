"""Reading params.yaml: the profile laid over it, validation, and every problem turned into one
line that names the file, the key path, what was expected and what was found (exit code 2,
see `dlbasics.cli`). Every stage calls `load_params` before it does any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dlbasics.config.base import KeyProblem, Shown
from dlbasics.config.messages import allowed_fields, describe_error, format_loc
from dlbasics.config.overlay import ProfileError, apply_profile, check_profiles
from dlbasics.config.params import Params
from dlbasics.errors import ConfigError


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; raise ConfigError with one line on any problem."""
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping of sections"
        raise ConfigError(f"{source}: <top level>: expected a mapping of sections, found {kind}")
    try:
        check_profiles({**raw, "profiles": dict(raw.get("profiles") or {})}
                       if isinstance(raw.get("profiles"), dict) else raw)
        resolved = apply_profile(raw)
    except ProfileError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        params = Params.model_validate(resolved)
        params._source = source
        return params
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_exc = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_exc, KeyProblem):
            found = ctx_exc.found if isinstance(ctx_exc.found, Shown) else repr(ctx_exc.found)
            loc = format_loc((*err["loc"], *ctx_exc.loc))
            raise ConfigError(f"{source}: {loc}: expected {ctx_exc.what}, found {found}") from None
        expected, found = describe_error(err, allowed_fields(raw))
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise ConfigError(
            f"{source}: {format_loc(err['loc'])}: expected {expected}, found {found}{more}"
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
