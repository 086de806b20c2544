"""What a lesson returns: a claim from a source, what was measured, and whether the claim held.

A lesson demonstrates a mechanism by computing it (it is not a trained `train:` variant). Its
result goes into the report through a DVC output, so everything here must be deterministic on
CPU for fixed settings and seed: no timings, no dates, no run IDs. A wall-clock measurement
(the vectorisation speed-up) goes into `timings`, which is logged to MLflow and printed, but
never written to a DVC output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    """A small table for the report: column names, then rows of numbers or short strings."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "columns": list(self.columns),
                "rows": [list(r) for r in self.rows]}


@dataclass(frozen=True)
class LessonResult:
    """One lesson as measured.

    title:    a heading ("Numerical differentiation: rounding against truncation").
    source:   where it comes from ("file 003, 4.3.1").
    claim:    what the source says it shows, in our words.
    measured: one to three sentences stating what was measured, with the numbers.
    holds:    whether the measurement confirms the claim as the source states it.
    values:   the key measured numbers, flat name -> float / int / bool / str (tests and MLflow).
    tables:   tables for the report.
    figures:  file stem -> PNG bytes (made with dlbasics.report.figures.png_bytes: byte-stable).
    timings:  wall-clock figures (seconds, ratios): logged and printed, never in DVC outputs.
    """

    title: str
    source: str
    claim: str
    measured: str
    holds: bool
    values: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Everything but figures and timings (those are not JSON / not deterministic)."""
        return {"title": self.title, "source": self.source, "claim": self.claim,
                "measured": self.measured, "holds": bool(self.holds),
                "values": dict(self.values), "tables": [t.as_json() for t in self.tables],
                "figures": sorted(self.figures)}
