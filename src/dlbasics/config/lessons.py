"""The `lessons` section: one settings class per lesson of the lessons stage, with the sources'
settings as defaults.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from dlbasics.config.base import PositiveFloat, PositiveInt, Strict

# ----------------------------------------------------------------------------- lessons

Point2 = Annotated[list[float], Field(min_length=2, max_length=2)]
BatchSize = Annotated[int, Field(gt=0, le=1_000_000)]
Rate = Annotated[float, Field(gt=0, le=100)]


class DataLesson(Strict):
    """A lesson that trains something small on a prepared dataset (a key under data)."""

    dataset: Annotated[str, Field(min_length=1)] = "images"


class RoundingLesson(Strict):
    """Numerical differentiation of 0.01 x^2 + 0.1 x: a tiny step against a central difference."""

    x: Annotated[list[float], Field(min_length=1)] = [5.0, 10.0]
    h_tiny: PositiveFloat = 1e-50
    h: PositiveFloat = 1e-4


class GradientDescent2dLesson(Strict):
    """Gradient descent on x0^2 + x1^2 with numerical gradients, at several learning rates."""

    start: Point2 = [-3.0, 4.0]
    lrs: Annotated[list[Rate], Field(min_length=1)] = [0.1, 10.0, 1e-10]
    steps: Annotated[int, Field(ge=1, le=100_000)] = 100
    h: PositiveFloat = 1e-4  # the numerical gradient's step


class LearningRatesLesson(Strict):
    """The book's worked gradient-descent example and its learning-rate demos."""

    start: Point2 = [-2.0, 3.0]
    steps: Annotated[int, Field(ge=1, le=100_000)] = 20
    lrs: Annotated[dict[str, Rate], Field(min_length=1)] = {
        "too small": 0.01, "right": 0.1, "oscillating": 0.95, "diverging": 1.05}


class AccuracySignalLesson(DataLesson):
    """Central differences of accuracy and of loss w.r.t. a trained softmax model's weights."""

    epochs: Annotated[int, Field(ge=1, le=10_000)] = 5
    batch_size: BatchSize = 100
    lr: Rate = 0.1
    probes: Annotated[int, Field(ge=1, le=100_000)] = 200
    h: PositiveFloat = 1e-4


class NumericalTrainingLesson(DataLesson):
    """The two-layer net trained by numerical gradients, against backpropagation."""

    hidden: PositiveInt = 50
    rows: Annotated[int, Field(ge=2)] = 200
    batch_size: BatchSize = 20
    steps: Annotated[int, Field(ge=1, le=100_000)] = 20
    lr: Rate = 0.1
    h: PositiveFloat = 1e-4


class StackedLinearLesson(DataLesson):
    """Linear layers stacked without activations, against one linear layer."""

    hidden: Annotated[list[PositiveInt], Field(min_length=1)] = [256]
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    batch_size: BatchSize = 32
    lr: Rate = 0.1


class SymmetryLesson(DataLesson):
    """Constant against random initialisation of a hidden layer."""

    hidden: PositiveInt = 256
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 10
    batch_size: BatchSize = 32
    lr: Rate = 0.5
    constant: float = 0.1


class GradientFlowLesson(DataLesson):
    """Per-layer gradient norms of deep sigmoid and ReLU networks."""

    depth: Annotated[int, Field(ge=2, le=200)] = 20
    width: PositiveInt = 32
    batch: BatchSize = 256


class ActivationsLesson(Strict):
    """LeakyReLU (the book's slope) and PReLU values and derivatives."""

    negative_slope: Annotated[float, Field(gt=0, lt=1)] = 0.2
    x: Annotated[list[float], Field(min_length=1)] = [-2.0, -0.5845, -0.0888, 0.0, 0.703,
                                                      1.1864, 2.0]


class VectorisationLesson(Strict):
    """A Python loop against one vectorised add (the ratio goes to MLflow and the bench)."""

    n: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    repeats: Annotated[int, Field(ge=1, le=100)] = 3


class CrossEntropyLesson(Strict):
    """Cross-entropy against the negative log-likelihood on a random batch."""

    n: Annotated[int, Field(gt=0, le=10_000_000)] = 256
    classes: Annotated[int, Field(ge=2)] = 10


class BceSaturationLesson(Strict):
    """Sigmoid + BCELoss against BCEWithLogitsLoss: ordinary logits, then a scan of large ones."""

    n: Annotated[int, Field(gt=0, le=10_000_000)] = 256
    logit_sd: PositiveFloat = 3.0
    scan_max: Annotated[float, Field(gt=0, le=1000)] = 120.0
    scan_step: Annotated[float, Field(gt=0, le=100)] = 0.5


class WeightedCrossEntropyLesson(Strict):
    """CrossEntropyLoss / NLLLoss with class weights against file 001's formula by hand."""

    n: Annotated[int, Field(gt=0, le=10_000_000)] = 256
    weights: Annotated[list[PositiveFloat], Field(min_length=2)] = [1.0, 2.0, 0.5]


class LessonsSpec(Strict):
    """The lessons that demonstrate a mechanism by computing them (the `lessons` stage): those
    listed run (null or absent: not run)."""

    rounding: RoundingLesson | None = None
    gradient_descent_2d: GradientDescent2dLesson | None = None
    learning_rates: LearningRatesLesson | None = None
    accuracy_signal: AccuracySignalLesson | None = None
    numerical_training: NumericalTrainingLesson | None = None
    stacked_linear: StackedLinearLesson | None = None
    symmetry: SymmetryLesson | None = None
    gradient_flow: GradientFlowLesson | None = None
    activations: ActivationsLesson | None = None
    vectorisation: VectorisationLesson | None = None
    cross_entropy_is_nll: CrossEntropyLesson | None = None
    bce_saturation: BceSaturationLesson | None = None
    weighted_cross_entropy: WeightedCrossEntropyLesson | None = None
    # d2l 2.2's house_tiny table: missing values, one-hot columns, tensors (on or off).
    house_tiny: bool = False
    # The d2l preliminaries (broadcasting, indexing, NumPy, reductions, autograd, the y_hat pick
    # and the accuracy-0.5 example): no settings, on or off.
    preliminaries: bool = False
