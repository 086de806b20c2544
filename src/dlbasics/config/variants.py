"""The `train`, `evaluate` and `select` sections: what a model variant is (model, loss,
optimiser, penalty, seeds, folds), and the grid searches built from a base variant.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from dlbasics.config.base import Fraction, KeyProblem, PositiveFloat, PositiveInt, Shown, Strict

# ----------------------------------------------------------------------------- models and training

# prelu: LeakyReLU whose slope is learned (torch.nn.PReLU, one slope per layer, from 0.25).
Activation = Literal["relu", "sigmoid", "tanh", "leaky_relu", "prelu"]


MODEL_KINDS = ("linear", "mlp", "linear_scratch", "softmax_scratch", "mlp_scratch", "mlp_manual")
SCRATCH_KINDS = ("linear_scratch", "softmax_scratch", "mlp_scratch", "mlp_manual")


class ModelSpec(Strict):
    """linear / mlp are torch.nn; *_scratch are the taught versions written by hand;
    mlp_manual also computes its gradients by hand (no autograd)."""

    kind: Literal[MODEL_KINDS]
    bias: bool = True
    hidden: list[PositiveInt] = []
    activation: Activation = "relu"
    # LeakyReLU's slope for x < 0 (the book uses 0.2; torch's default is 0.01).
    negative_slope: Annotated[float, Field(gt=0, lt=1)] = 0.01
    # One dropout probability per hidden layer, or one number for all of them.
    dropout: list[Annotated[float, Field(ge=0, lt=1)]] = []
    init: Literal["default", "normal", "xavier"] = "default"
    init_std: PositiveFloat = 0.01
    # mlp_manual only: a linear output trained on the half squared loss, or a softmax output
    # trained on cross-entropy (its output error is a - y).
    output: Literal["linear", "softmax"] = "linear"

    @model_validator(mode="before")
    @classmethod
    def _one_dropout_for_all_layers(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("dropout"), (int, float)) and not (
            isinstance(raw.get("dropout"), bool)
        ):
            hidden = raw.get("hidden") or []
            return {**raw, "dropout": [float(raw["dropout"])] * len(hidden)}
        return raw

    @model_validator(mode="after")
    def _shape_is_consistent(self) -> ModelSpec:
        linear = self.kind in ("linear", "linear_scratch", "softmax_scratch")
        if self.kind in SCRATCH_KINDS and self.init != "normal":
            raise KeyProblem(("init",), "normal (the scratch models draw N(0, init_std^2))",
                              self.init)
        if not self.bias and self.kind != "linear":
            raise KeyProblem(("bias",), "true (only kind linear can drop its bias)", self.bias)
        if self.kind == "mlp_manual" and self.dropout:
            raise KeyProblem(("dropout",), "no dropout for mlp_manual", self.dropout)
        if self.kind == "mlp_manual" and self.activation == "prelu":
            raise KeyProblem(("activation",), "relu, sigmoid, tanh or leaky_relu for mlp_manual",
                              self.activation)
        if self.output != "linear" and self.kind != "mlp_manual":
            raise KeyProblem(("output",), "linear (only kind mlp_manual has a softmax output "
                              "of its own)", self.output)
        if self.activation == "prelu" and self.kind != "mlp":
            raise KeyProblem(("activation",), "one of relu, sigmoid, tanh, leaky_relu (prelu is "
                              "torch.nn.PReLU: kind mlp only)", self.activation)
        if linear and self.hidden:
            raise KeyProblem(("hidden",), "a linear model has no hidden layers (use kind: mlp)",
                              self.hidden)
        if linear and self.dropout:
            raise KeyProblem(("dropout",), "a linear model has no dropout (use kind: mlp)",
                              self.dropout)
        # (kind mlp with no hidden layer is a linear model: the 0-layer point of a grid.)
        if self.kind in ("mlp_scratch", "mlp_manual") and not self.hidden:
            raise KeyProblem(("hidden",), f"kind {self.kind} needs at least one hidden layer size",
                              self.hidden)
        if self.dropout and len(self.dropout) != len(self.hidden):
            raise KeyProblem(
                ("dropout",),
                f"one probability per hidden layer ({len(self.hidden)})",
                self.dropout,
            )
        return self


class OptimizerSpec(Strict):
    """torch.optim's sgd / adam / rmsprop, or sgd_scratch (minibatch SGD written by hand)."""

    name: Literal["sgd", "adam", "rmsprop", "sgd_scratch"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=100)]
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    # Applied to weights only: biases are not decayed.
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    betas: Annotated[
        list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)
    ] = [0.9, 0.999]
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.99


# Loss name -> the tasks it fits. *_scratch are written by hand (dlbasics.learn.scratch).
LOSS_TASKS = {
    "mse": ("regression",),
    "l1": ("regression",),  # nn.L1Loss: the mean absolute error
    "squared_loss_scratch": ("regression",),
    "cross_entropy": ("classification",),
    "nll": ("classification",),  # nn.NLLLoss on log_softmax of the outputs (file 001)
    "cross_entropy_scratch": ("classification",),
    # K binary logistic regressions, one per class (sigmoid + BCE on the one-hot column), summed;
    # predicted by argmax (file 004, 3.5.4).
    "one_vs_all": ("classification",),
    "bce_with_logits": ("binary",),
    "bce": ("binary",),  # an explicit nn.Sigmoid, then nn.BCELoss (file 001's way)
    "multilabel_soft_margin": ("multilabel",),
    "multilabel_softmax": ("multilabel",),
}


# The losses that take class weights (torch's `weight=`).
WEIGHTED_LOSSES = ("cross_entropy", "nll")


class PenaltySpec(Strict):
    """An explicit penalty added to the loss by hand, over the weights only (never the biases):
    strength * l2 (sum w^2 / 2), l1 (sum |w|), or elastic_net
    (l1_ratio * sum |w| + (1 - l1_ratio) * sum w^2 / 2, scikit-learn's mixing convention)."""

    kind: Literal["l1", "l2", "elastic_net"]
    strength: Annotated[float, Field(ge=0)]
    l1_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5


class SeriesSpec(Strict):
    """Marks a variant as one point of a named series (e.g. a lambda sweep) for the report."""

    name: Annotated[str, Field(min_length=1)]
    x: float


class VariantSpec(Strict):
    """One trained variant: an entry under `train:`, trained by the `train` stage."""

    dataset: Annotated[str, Field(min_length=1)]
    model: ModelSpec
    loss: Literal[tuple(LOSS_TASKS)]
    optimizer: OptimizerSpec
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)]
    epochs: Annotated[int, Field(gt=0, le=100_000)]
    # gradient: the minibatch loop; lstsq: the closed-form least-squares fit (linear models).
    solver: Literal["gradient", "lstsq"] = "gradient"
    # Use only the first `features` input columns (the polynomial degree), all if None.
    features: Annotated[int, Field(ge=1)] | None = None
    # Hand-built features: every monomial of the inputs up to this degree (scikit-learn's
    # PolynomialFeatures, no constant column), e.g. x1, x2, x1^2, x1 x2, x2^2 for degree 2.
    poly_features: Annotated[int, Field(ge=2, le=20)] | None = None
    penalty: PenaltySpec | None = None
    # Class weights of cross_entropy / nll (their `weight=`): balanced is scikit-learn's
    # n / (K * count of the class), counted over the training labels.
    class_weight: Literal["balanced"] | None = None
    series: SeriesSpec | None = None
    # K-fold cross-validation on the training rows before the final fit (the sources' house
    # prices recipe): mean and std of the fold scores are reported with the test metrics.
    kfold: Annotated[int, Field(ge=2, le=100)] | None = None
    # Repeated runs: the variant is also trained once per seed listed here (initial weights,
    # batch order and dropout masks from that seed; the data and its split stay those of the
    # top-level `seed`). The report gives the mean, sd and 95% interval of the test metric over
    # them, and paired differences between variants that list the same seeds.
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**31)]],
                     Field(min_length=2, max_length=100)] | None = None

    # Keys that only place a variant in the report: editing them retrains and re-evaluates
    # nothing (the train stage's fingerprint leaves them out).
    REPORT_ONLY: ClassVar[frozenset[str]] = frozenset({"series"})

    def training_settings(self) -> dict[str, Any]:
        """The settings its trained files depend on, as JSON: every key but the report-only."""
        return self.model_dump(mode="json", exclude=set(self.REPORT_ONLY))

    @model_validator(mode="after")
    def _solver_fits(self) -> VariantSpec:
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise KeyProblem(("seeds",), "distinct seeds", self.seeds)
        if self.class_weight is not None and self.loss not in WEIGHTED_LOSSES:
            raise KeyProblem(("class_weight",), "no class_weight (only "
                              f"{' and '.join(WEIGHTED_LOSSES)} take one)", self.class_weight)
        if self.solver == "lstsq" and self.model.kind != "linear":
            raise KeyProblem(("solver",), "gradient (lstsq fits kind linear only)", self.solver)
        if self.model.kind == "mlp_manual" and self.optimizer.name != "sgd_scratch":
            raise KeyProblem(("optimizer", "name"),
                              "sgd_scratch (mlp_manual sets its own gradients)",
                              self.optimizer.name)
        if self.model.kind == "mlp_manual" and self.penalty is not None:
            raise KeyProblem(("penalty",), "no penalty (mlp_manual's hand-written gradients "
                              "are of the loss alone; use optimizer.weight_decay)", Shown("one"))
        manual_loss = {"linear": "squared_loss_scratch", "softmax": "cross_entropy_scratch"}
        if self.model.kind == "mlp_manual" and self.loss != manual_loss[self.model.output]:
            raise KeyProblem(("loss",), f"{manual_loss[self.model.output]} (the loss mlp_manual "
                              f"with a {self.model.output} output differentiates by hand)",
                              self.loss)
        return self


class EvaluateSpec(Strict):
    top_k: Annotated[list[PositiveInt], Field(min_length=1)] = [1, 3]
    # Multi-label predictions: sigmoid probability >= threshold, and the top-K labels per row.
    multilabel_threshold: Fraction = 0.5
    multilabel_top_k: PositiveInt = 2
    # |w| below this counts as (near) zero in the sparsity count of linear models.
    zero_tol: Annotated[float, Field(gt=0)] = 1e-3


class SearchSpec(Strict):
    """One named K-fold search (a `select@NAME` stage): every combination of the `grid` values,
    applied to the `base` variant (after `overrides`), scored by K-fold cross-validation."""

    base: Annotated[str, Field(min_length=1)]
    k: Annotated[int, Field(ge=2, le=20)] = 3
    # Key paths into the variant (e.g. optimizer.lr, model.hidden) set for every configuration.
    overrides: dict[str, Any] = {}
    # Key path -> the values to try; the grid is their product.
    grid: Annotated[dict[str, Annotated[list[Any], Field(min_length=1)]], Field(min_length=1)]
    # Early stopping on the mean validation score across the K folds: a configuration stops once
    # that score has not improved for `patience` epochs, and the epoch with the best mean (the
    # first of equals) is its answer, used for the refit; `epochs` is then the most it trains.
    # None: every configuration trains its `epochs` and is scored at the last one.
    patience: PositiveInt | None = None
    # auto: configurations that share an architecture train as one batched model when the size
    # rule (dlbasics.learn.batched.batched_is_faster) expects that to be faster; never: one by one.
    batched: Literal["auto", "never"] = "auto"
    # Cross-validate on at most this many training rows (a seeded, stratified subset); the
    # chosen configuration is still refitted on the whole training split. None: every row.
    max_rows: Annotated[int, Field(ge=20)] | None = None
    # One line for the report: what this search is for.
    description: str = ""


class SelectSpec(Strict):
    """Named searches, each its own DVC stage (select@NAME) and MLflow parent run."""

    searches: Annotated[dict[str, SearchSpec], Field(min_length=1)]
