"""What every part of the params schema shares: strict models, the common constrained types,
and the vocabulary of a cross-field problem (`KeyProblem`: a key path, what was expected, what
was found), which `dlbasics.config.loading` turns into the one-line error a user reads.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # Unknown keys are typos: reject them instead of silently ignoring a setting.
    # Strict: a quoted "30" or a `true` where a number belongs is an error, not a conversion.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


def set_path(tree: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of nested mapping `tree` with `path` ("a.b.c") set to `value`."""
    head, _, rest = path.partition(".")
    out = dict(tree)
    out[head] = set_path(dict(tree.get(head) or {}), rest, value) if rest else value
    return out


NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class Shown(str):
    """A `found` value already in words (printed as is, not repr'd)."""


NOTHING = Shown("nothing")


class KeyProblem(ValueError):
    """A cross-field problem that knows its key path (relative to the model raising it)."""

    def __init__(self, loc: tuple[str, ...], what: str, found: Any):
        super().__init__(what)
        self.loc, self.what, self.found = loc, what, found
