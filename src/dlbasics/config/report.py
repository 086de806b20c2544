"""The `report` section: the notes, the paired comparisons, the comparison groups and the
sources' figures the report sets beside what was measured.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dlbasics.config.base import Strict


class ReportGroups(Strict):
    fitting: list[str] = []  # under- and over-fitting: train against test loss
    sparsity: list[str] = []  # penalties against the share of weights near zero
    dropout: list[str] = []
    activations: list[str] = []
    optimisers: list[str] = []
    initialisations: list[str] = []


class BookFigure(Strict):
    """A figure a source states for one of the variants on a named data set: the report sets the
    measured test metric (mean and sd over the variant's `seeds`) beside it, with a verdict."""

    variant: Annotated[str, Field(min_length=1)]
    reference: Annotated[str, Field(min_length=1)]  # where it is stated, e.g. "d2l 3.6"
    stated: Annotated[str, Field(min_length=1)]  # the source's claim in words, e.g. "about 0.83"
    value: float  # the claim as a number, in the metric's units
    metric: Literal["accuracy"] = "accuracy"  # the test metric it is about
    # The measured mean reproduces the figure when within this distance of it.
    tolerance: Annotated[float, Field(gt=0, le=1)] = 0.02
    # The data set the figure is about: on any other the report says so and gives no verdict.
    on: Literal["mnist", "fashion_mnist"] = "fashion_mnist"
    # A variant this one must agree with (a scratch version's concise twin): the report gives
    # their paired difference over the seeds both list.
    same_as: Annotated[str, Field(min_length=1)] | None = None


class Contrast(Strict):
    """A source's claim about two variants trained alike but for one setting, and how the report
    measures it from their test results:
    fit_error:   `a` recovers the true weights and bias better than `b` (|w - w*| and |b - b*|);
    rare_recall: `a` recalls the rare classes of its dataset's `imbalance` better than `b`;
    same:        `a` and `b` reach the same test score (to 1e-6): two spellings of one loss;
    measured:    no direction claimed; both test scores stated, no verdict."""

    title: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)]
    claim: Annotated[str, Field(min_length=1)]
    a: Annotated[str, Field(min_length=1)]
    b: Annotated[str, Field(min_length=1)]
    measure: Literal["fit_error", "rare_recall", "same", "measured"]


class ReportSpec(Strict):
    # variant -> one line saying what it shows; kept out of `train` so editing prose
    # never re-runs training.
    notes: dict[str, str] = {}
    # Pairs [a, b] of variants to compare with a paired 95% interval of the difference of their
    # test metric: over `seeds` when both list the same seeds, else over K folds when both
    # have the same `kfold` on the same dataset.
    compare: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = []
    # The variants each comparison section of the report sets side by side (plots overlaid, one
    # table): a new variant joins a section by being listed here, with no report code.
    groups: ReportGroups = ReportGroups()
    # The sources' figures for runs on a real image set, set against what this project measures.
    book: list[BookFigure] = []
    # Claims about a pair of variants, each stated with what was measured and a verdict.
    contrasts: list[Contrast] = []
