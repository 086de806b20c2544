"""params.yaml parsed into typed, frozen, validated objects.

Every stage loads the whole file through `load_params` before it does any work, so a bad value
anywhere stops the stage with one line naming the file, the key path, what was expected and
what was found (exit code 2, see `dlbasics.cli`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from dlbasics.errors import ConfigError  # noqa: F401 - re-exported: config.ConfigError


class Strict(BaseModel):
    # Unknown keys are typos: reject them instead of silently ignoring a setting.
    # Strict: a quoted "30" or a `true` where a number belongs is an error, not a conversion.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


# ----------------------------------------------------------------------------- runtime / tracking


class RaySettings(Strict):
    """Where and how the select stages run their jobs when runtime.executor is ray."""

    # host:port of the head's GCS, ray://host:port (Ray Client) or auto; RAY_ADDRESS wins.
    # None (and no RAY_ADDRESS): a private Ray instance on 127.0.0.1 for the stage's duration.
    address: str | None = None
    # CPUs a task declares (default: runtime.threads, the threads it computes with).
    cpus_per_task: Annotated[int, Field(ge=1, le=512)] | None = None
    # GPUs a task declares; above 0 the task trains on CUDA (not bit-identical to CPU).
    gpus_per_task: Annotated[float, Field(ge=0, le=16)] = 0.0
    # Times a task is run again when its worker process or node dies.
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3


class Runtime(Strict):
    """How to run, not what to compute: not a DVC dependency of any trained stage."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1, le=512)] = 2
    # Processes that train a search's configurations side by side (select stages, CPU only);
    # each one computes exactly as one process would, so the results do not depend on it.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Who runs a select stage's jobs: local processes (runtime.workers) or a Ray cluster
    # (runtime.ray). The same bits either way on CPU (tested).
    executor: Literal["local", "ray"] = "local"
    ray: RaySettings = RaySettings()


class Registry(Strict):
    """What goes to the MLflow Model Registry (dlbasics.registry): every search's refitted
    winner (or those in `searches`) and the train variants in `variants`, as versions of one
    registered model, named `model`; alias `champion` on the best test score."""

    model: Annotated[str, Field(min_length=1, max_length=128)]
    searches: list[str] | None = None  # names under select.searches; None: every search
    variants: list[str] = []  # names under train

    @model_validator(mode="after")
    def _name_fits_a_uri(self) -> Registry:
        if not _REGISTERED_NAME.fullmatch(self.model):
            raise _KeyProblem(("model",), "letters, digits, '.', '_' or '-', starting with a "
                              "letter or digit (it is written models:/<model>@champion)",
                              self.model)
        return self


_REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Tracking(Strict):
    experiment: Annotated[str, Field(min_length=1)] = "dlbasics"
    log_models: bool = True
    registry: Registry | None = None  # None: nothing is registered


# ----------------------------------------------------------------------------- data


class SyntheticLinear(Strict):
    """y = X w + b + N(0, noise_sd^2); X ~ N(x_mean, x_std^2) or U(x_low, x_high).

    The true w is given (`true_w`), constant (`w_fill` times `n_features`) or drawn
    N(0, w_std^2) from the seed (`w_std` times `n_features`): exactly one of the three.
    """

    kind: Literal["synthetic_linear"]
    n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 1000
    true_w: Annotated[list[float], Field(min_length=1)] | None = None
    w_fill: float | None = None
    w_std: Annotated[float, Field(gt=0)] | None = None
    n_features: Annotated[int, Field(ge=1, le=100_000)] | None = None
    true_b: float = 0.0
    noise_sd: Annotated[float, Field(ge=0)] = 0.01
    x_dist: Literal["normal", "uniform"] = "normal"
    x_mean: float = 0.0
    x_std: Annotated[float, Field(gt=0)] = 1.0
    x_low: float = 0.0
    x_high: float = 1.0

    @model_validator(mode="after")
    def _one_way_to_give_w(self) -> SyntheticLinear:
        given = [k for k in ("true_w", "w_fill", "w_std") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _KeyProblem(
                (), "exactly one of true_w, w_fill, w_std", _Shown(", ".join(given) or "none")
            )
        if self.true_w is not None and self.n_features not in (None, len(self.true_w)):
            raise _KeyProblem(("n_features",), f"len(true_w) = {len(self.true_w)}",
                              self.n_features)
        if self.true_w is None and self.n_features is None:
            raise _KeyProblem(("n_features",), f"a feature count with {given[0]}", _NOTHING)
        if self.x_dist == "uniform" and not self.x_low < self.x_high:
            raise _KeyProblem(("x_high",), f"a value > x_low ({self.x_low})", self.x_high)
        return self


class Polynomial(Strict):
    """y = sum_i w_i x^i / i! + noise for i < max_degree, x ~ N(0, 1); features x^i / i!."""

    kind: Literal["polynomial"]
    n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 200
    max_degree: Annotated[int, Field(ge=1, le=60)] = 20
    true_w: Annotated[list[float], Field(min_length=1)] = [5.0, 1.2, -3.4, 5.6]
    noise_sd: Annotated[float, Field(ge=0)] = 0.1

    @model_validator(mode="after")
    def _w_fits(self) -> Polynomial:
        if len(self.true_w) > self.max_degree:
            raise _KeyProblem(("true_w",), f"at most max_degree ({self.max_degree}) weights",
                              self.true_w)
        return self


class Trapezoid(Strict):
    """Top x1 and bottom x2 ~ U(low, high); target area 0.5 (x1 + x2) x1 (the book's height = x1)."""

    kind: Literal["trapezoid"]
    n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 1000
    low: float = 0.5
    high: float = 1.5


class Sine(Strict):
    """y = sin(x) + N(0, noise_sd^2), x ~ U(x_low, x_high) (file 004, 3.10.1: 12 noisy points)."""

    kind: Literal["sine"]
    n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 112
    noise_sd: Annotated[float, Field(ge=0)] = 0.1
    x_low: float = -3.0
    x_high: float = 3.0

    @model_validator(mode="after")
    def _range(self) -> Sine:
        if not self.x_low < self.x_high:
            raise _KeyProblem(("x_high",), f"a value > x_low ({self.x_low})", self.x_high)
        return self


class Digits(Strict):
    """scikit-learn's bundled 8x8 digits (1797 x 64), the embedded image set."""

    kind: Literal["digits"]


class ImageDataset(Strict):
    """MNIST or Fashion-MNIST (28x28 grey, 10 classes, official 60000 / 10000 split).

    source download: through torchvision into `path` (a cache outside DVC, default
    data/downloads), reused when the files are already there. source local: `path` is a
    directory holding the four original IDX files, raw or .gz.
    """

    kind: Literal["mnist", "fashion_mnist"]
    source: Literal["download", "local"] = "download"
    path: Annotated[str, Field(min_length=1)] | None = None
    # Check each file's decompressed contents against the official sha256 (raw or .gz, any
    # compression), and the official 60000 / 10000 sizes (turn both off only for your own
    # files). The set's identity comes from its contents either way, never from `path`.
    verify_checksums: bool = True
    official_sizes: bool = True
    timeout: Annotated[float, Field(gt=0, le=600)] = 5.0

    @model_validator(mode="after")
    def _local_needs_path(self) -> ImageDataset:
        if self.source == "local" and self.path is None:
            raise _KeyProblem(("path",), "the directory holding the four IDX files", _NOTHING)
        return self


class HousePrices(Strict):
    """A house-prices table: generated (numeric and categorical columns, missing values) or a
    Kaggle-style CSV at `path` with an id column and a price target."""

    kind: Literal["house_prices"]
    source: Literal["generated", "csv"] = "generated"
    n_rows: Annotated[int, Field(ge=20, le=10_000_000)] = 1460
    path: Annotated[str, Field(min_length=1)] | None = None
    id_column: Annotated[str, Field(min_length=1)] | None = "Id"
    target_column: Annotated[str, Field(min_length=1)] = "SalePrice"

    @model_validator(mode="after")
    def _csv_needs_path(self) -> HousePrices:
        if self.source == "csv" and self.path is None:
            raise _KeyProblem(("path",), "the path of a train.csv", _NOTHING)
        return self


class BreastCancer(Strict):
    """scikit-learn's bundled breast-cancer set (569 x 30, binary)."""

    kind: Literal["breast_cancer"]


class Multilabel(Strict):
    """scikit-learn's make_multilabel_classification, seeded from params."""

    kind: Literal["multilabel"]
    n_samples: Annotated[int, Field(ge=10, le=10_000_000)] = 2000
    n_features: Annotated[int, Field(ge=1, le=100_000)] = 20
    n_classes: Annotated[int, Field(ge=2, le=1000)] = 5
    n_labels: Annotated[int, Field(ge=1, le=1000)] = 2


DatasetSpec = Annotated[
    Union[SyntheticLinear, Polynomial, Trapezoid, Sine, Digits, ImageDataset, HousePrices,
          BreastCancer, Multilabel],
    Field(discriminator="kind"),
]
DATASET_MODELS = {
    "synthetic_linear": SyntheticLinear, "polynomial": Polynomial, "trapezoid": Trapezoid,
    "sine": Sine, "digits": Digits, "mnist": ImageDataset, "fashion_mnist": ImageDataset,
    "house_prices": HousePrices, "breast_cancer": BreastCancer, "multilabel": Multilabel,
}
DATASET_KINDS = tuple(DATASET_MODELS)
# What each kind of dataset asks of a model: its task decides the losses that fit.
DATASET_TASKS = {
    "synthetic_linear": "regression", "polynomial": "regression", "trapezoid": "regression",
    "sine": "regression", "house_prices": "regression", "digits": "classification",
    "mnist": "classification", "fashion_mnist": "classification", "breast_cancer": "binary",
    "multilabel": "multilabel",
}
# Kinds that come with their own test set: prepare keeps it and splits only validation.
OFFICIAL_TEST = ("mnist", "fashion_mnist")


class PrepareSpec(Strict):
    """How one dataset is split and scaled; scalers are fitted on the training part only.

    Sizes are fractions (`val_fraction`, `test_fraction`) or row counts (`n_train`, `n_val`,
    `n_test`, as the sources' fixed-size experiments use), not both.
    """

    val_fraction: Annotated[float, Field(ge=0, lt=1)] | None = None
    test_fraction: Fraction | None = None
    n_train: Annotated[int, Field(ge=1)] | None = None
    n_val: Annotated[int, Field(ge=0)] | None = None
    n_test: Annotated[int, Field(ge=1)] | None = None
    # unit: divide by the largest possible pixel value (images to [0, 1]).
    scale: Literal["none", "standard", "minmax", "unit"] = "standard"

    @model_validator(mode="after")
    def _one_way_to_size(self) -> PrepareSpec:
        counts = (self.n_train, self.n_val, self.n_test)
        fractions = (self.val_fraction, self.test_fraction)
        if any(c is not None for c in counts):
            if any(f is not None for f in fractions):
                raise _KeyProblem((), "fractions or counts, not both", _Shown("both"))
            if self.n_train is None:
                raise _KeyProblem(("n_train",), "n_train with n_val / n_test", _NOTHING)
            return self
        if (self.val_fraction or 0) + (self.test_fraction or 0) >= 0.9:
            raise _KeyProblem(
                (),
                "val_fraction + test_fraction < 0.9, so training keeps at least 10% of the rows",
                _Shown(f"{self.val_fraction} + {self.test_fraction}"),
            )
        return self


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
            raise _KeyProblem(("init",), "normal (the scratch models draw N(0, init_std^2))",
                              self.init)
        if not self.bias and self.kind != "linear":
            raise _KeyProblem(("bias",), "true (only kind linear can drop its bias)", self.bias)
        if self.kind == "mlp_manual" and self.dropout:
            raise _KeyProblem(("dropout",), "no dropout for mlp_manual", self.dropout)
        if self.kind == "mlp_manual" and self.activation == "prelu":
            raise _KeyProblem(("activation",), "relu, sigmoid, tanh or leaky_relu for mlp_manual",
                              self.activation)
        if self.output != "linear" and self.kind != "mlp_manual":
            raise _KeyProblem(("output",), "linear (only kind mlp_manual has a softmax output "
                              "of its own)", self.output)
        if self.activation == "prelu" and self.kind != "mlp":
            raise _KeyProblem(("activation",), "one of relu, sigmoid, tanh, leaky_relu (prelu is "
                              "torch.nn.PReLU: kind mlp only)", self.activation)
        if linear and self.hidden:
            raise _KeyProblem(("hidden",), "a linear model has no hidden layers (use kind: mlp)",
                              self.hidden)
        if linear and self.dropout:
            raise _KeyProblem(("dropout",), "a linear model has no dropout (use kind: mlp)",
                              self.dropout)
        # (kind mlp with no hidden layer is a linear model: the 0-layer point of a grid.)
        if self.kind in ("mlp_scratch", "mlp_manual") and not self.hidden:
            raise _KeyProblem(("hidden",), f"kind {self.kind} needs at least one hidden layer size",
                              self.hidden)
        if self.dropout and len(self.dropout) != len(self.hidden):
            raise _KeyProblem(
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


# Loss name -> the tasks it fits. *_scratch are written by hand (dlbasics.scratch).
LOSS_TASKS = {
    "mse": ("regression",),
    "squared_loss_scratch": ("regression",),
    "cross_entropy": ("classification",),
    "cross_entropy_scratch": ("classification",),
    # K binary logistic regressions, one per class (sigmoid + BCE on the one-hot column), summed;
    # predicted by argmax (file 004, 3.5.4).
    "one_vs_all": ("classification",),
    "bce_with_logits": ("binary",),
    "multilabel_soft_margin": ("multilabel",),
    "multilabel_softmax": ("multilabel",),
}


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
            raise _KeyProblem(("seeds",), "distinct seeds", self.seeds)
        if self.solver == "lstsq" and self.model.kind != "linear":
            raise _KeyProblem(("solver",), "gradient (lstsq fits kind linear only)", self.solver)
        if self.model.kind == "mlp_manual" and self.optimizer.name != "sgd_scratch":
            raise _KeyProblem(("optimizer", "name"),
                              "sgd_scratch (mlp_manual sets its own gradients)",
                              self.optimizer.name)
        if self.model.kind == "mlp_manual" and self.penalty is not None:
            raise _KeyProblem(("penalty",), "no penalty (mlp_manual's hand-written gradients "
                              "are of the loss alone; use optimizer.weight_decay)", _Shown("one"))
        manual_loss = {"linear": "squared_loss_scratch", "softmax": "cross_entropy_scratch"}
        if self.model.kind == "mlp_manual" and self.loss != manual_loss[self.model.output]:
            raise _KeyProblem(("loss",), f"{manual_loss[self.model.output]} (the loss mlp_manual "
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
    # rule (dlbasics.batched.batched_is_faster) expects that to be faster; never: one by one.
    batched: Literal["auto", "never"] = "auto"
    # Cross-validate on at most this many training rows (a seeded, stratified subset); the
    # chosen configuration is still refitted on the whole training split. None: every row.
    max_rows: Annotated[int, Field(ge=20)] | None = None
    # One line for the report: what this search is for.
    description: str = ""


class SelectSpec(Strict):
    """Named searches, each its own DVC stage (select@NAME) and MLflow parent run."""

    searches: Annotated[dict[str, SearchSpec], Field(min_length=1)]


def set_path(tree: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of nested mapping `tree` with `path` ("a.b.c") set to `value`."""
    head, _, rest = path.partition(".")
    out = dict(tree)
    out[head] = set_path(dict(tree.get(head) or {}), rest, value) if rest else value
    return out


def grid_variants(params: Params, search: str) -> list[tuple[dict[str, Any], VariantSpec]]:
    """[(the grid values of one configuration, its full validated variant)] of the named search,
    in grid order."""
    import itertools

    sel = params.select.searches[search]
    base = params.train[sel.base].model_dump(mode="json", exclude_none=True)
    base.pop("seeds", None)  # a configuration is one fit per fold, not a repeated-seed study
    base.pop("kfold", None)  # the search does its own K folds
    for path, value in sel.overrides.items():
        base = set_path(base, path, value)
    axes = list(sel.grid)
    out = []
    for values in itertools.product(*(sel.grid[a] for a in axes)):
        raw = base
        for path, value in zip(axes, values):
            raw = set_path(raw, path, value)
        try:
            spec = VariantSpec.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise _KeyProblem(("select", "searches", search, "grid"),
                              f"settings that make a valid variant ({where}: {err['msg']})",
                              _Shown(str(dict(zip(axes, values))))) from None
        out.append((dict(zip(axes, values)), spec))
    return out


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
    # The d2l preliminaries (broadcasting, indexing, NumPy, reductions, autograd, the y_hat pick
    # and the accuracy-0.5 example): no settings, on or off.
    preliminaries: bool = False


# Dataset kinds whose variants a profile's `variants` / `prepare` / `searches` settings reach.
IMAGE_KINDS = ("digits", "mnist", "fashion_mnist")


class ProfileSpec(Strict):
    """Settings laid over the file when `profile` names this entry: a switch for a whole kind
    of run (e.g. a full-size image set) that leaves every entry's own settings in place for
    the default. Applied before validation, so DVC, the train stage's skipping and MLflow all
    see each variant's settings as resolved."""

    description: str = ""
    # Key paths of the whole file set first, each to the value as written (a mapping replaces
    # the entry whole): e.g. data.images to a Fashion-MNIST folder, train.softmax.seeds, a
    # search's grid. The sections below then apply to the result.
    overrides: dict[str, Any] = {}
    # Keys set in prepare.<name> of every image dataset (kind digits, mnist, fashion_mnist).
    prepare: dict[str, Any] = {}
    # Key paths (e.g. batch_size, optimizer.lr) set in every variant trained on an image dataset.
    variants: dict[str, Any] = {}
    # Keys set in every search whose base variant trains on an image dataset (e.g. max_rows).
    searches: dict[str, Any] = {}
    # lesson name -> keys set in that entry of `lessons`.
    lessons: dict[str, dict[str, Any]] = {}


def apply_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` params with the profile named by its `profile` key laid over it (a new mapping;
    `raw` itself is not changed). No profile, or profile null: `raw` as it is."""
    name = raw.get("profile")
    if name is None:
        return raw
    profiles = raw.get("profiles") if isinstance(raw.get("profiles"), dict) else {}
    if not isinstance(name, str) or name not in profiles:
        raise _ProfileError(f"profile: expected null or one of the names under profiles "
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
                raise _ProfileError(f"profiles.{name}.lessons.{lname}: expected one of the "
                                    f"lessons ({', '.join(LessonsSpec.model_fields)}), found "
                                    "an unknown key (a typo?)")
            entry = lessons.get(lname)  # absent or null: the lesson does not run
            if isinstance(entry, dict):
                out["lessons"][lname] = {**entry, **keys}
    return out


class _ProfileError(ValueError):
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
            raise _ProfileError(f"profiles.{name}.overrides.{path}: expected a key path under "
                                f"one of {', '.join(allowed)}, found {path!r}")
        node: Any = raw
        for part in parts[:-1]:  # the entry the last key goes into
            node = node.get(part) if isinstance(node, dict) else None
        if len(parts) > 1 and node is None:
            continue
        if len(parts) > 1 and not isinstance(node, dict):
            raise _ProfileError(f"profiles.{name}.overrides.{path}: expected a key path through "
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
    """_ProfileError at profiles.NAME.overrides when the file is valid without them and not
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
        if isinstance(ctx_exc, _KeyProblem):
            loc = _format_loc((*err["loc"], *ctx_exc.loc))
            found = ctx_exc.found if isinstance(ctx_exc.found, _Shown) else repr(ctx_exc.found)
            expected = ctx_exc.what
        else:
            loc = _format_loc(err["loc"])
            expected, found = _describe(err, _allowed_fields(applied))
        # At the override that made it (its key, then where inside its value), when one did.
        owner = next((p for p in sorted(prof.overrides, key=len, reverse=True)
                      if loc == p or loc.startswith(f"{p}.") or loc.startswith(f"{p}[")), None)
        where = (f"profiles.{name}.overrides.{owner}{loc[len(owner):]}" if owner
                 else f"profiles.{name}.overrides: {loc}")
        raise _ProfileError(f"{where}: expected {expected}, found {found}") from None


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
    """_ProfileError at `prefix`.KEY for the first of `keys` that makes a valid `spec` invalid."""
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
            if isinstance(ctx_exc, _KeyProblem):
                expected = ctx_exc.what
                found = (ctx_exc.found if isinstance(ctx_exc.found, _Shown)
                         else repr(ctx_exc.found))
            else:
                expected, found = _describe(err, {})
            raise _ProfileError(f"{prefix}.{path}: expected {expected}, found {found} (where it "
                                f"applies, {where})") from None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _set_key(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**tree, key: value}


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


class Params(Strict):
    seed: Annotated[int, Field(ge=0, lt=2**31)]
    # The entry of `profiles` laid over this file (see ProfileSpec), or null for none.
    profile: str | None = None
    profiles: dict[str, ProfileSpec] = {}
    runtime: Runtime = Runtime()
    tracking: Tracking = Tracking()
    data: dict[str, DatasetSpec]
    prepare: dict[str, PrepareSpec]
    train: Annotated[dict[str, VariantSpec], Field(min_length=1)]
    evaluate: EvaluateSpec = EvaluateSpec()
    select: SelectSpec | None = None
    lessons: LessonsSpec = LessonsSpec()
    report: ReportSpec = ReportSpec()
    _source: str = PrivateAttr(default="params.yaml")  # the file it was read from, for messages

    def error(self, key: str, problem: str) -> ConfigError:
        """A one-line ConfigError about `key` of this params file (for checks that need data)."""
        return ConfigError(f"{self._source}: {key}: {problem}")

    @model_validator(mode="after")
    def _names_resolve(self) -> Params:
        """Every name that one section gives another resolves, and fits where it is used."""
        # In this order: the first problem found is the one reported, and a variant's own keys
        # come before the searches and report entries that name it.
        self._check_names()
        self._check_datasets()
        self._check_variants()
        self._check_searches()
        self._check_lessons()
        self._check_report()
        return self

    def _check_names(self) -> None:
        """Names under data, prepare and train are usable as directory and file names."""
        for section in ("data", "prepare", "train"):
            for name in getattr(self, section):
                if not _NAME.fullmatch(name):
                    raise _KeyProblem(
                        (section, name),
                        "a name of a letter then letters, digits or underscores (it becomes "
                        "a directory and file name)",
                        name,
                    )

    def _check_datasets(self) -> None:
        """data and prepare name the same datasets, and each test size fits its dataset."""
        for name in self.data:
            if name not in self.prepare:
                raise _KeyProblem(
                    ("prepare", name), "an entry for every dataset under data", _NOTHING
                )
        for name, prep in self.prepare.items():
            if name in self.data:
                official = self.data[name].kind in OFFICIAL_TEST
                has_test = prep.test_fraction is not None or prep.n_test is not None
                if official and has_test:
                    raise _KeyProblem(
                        ("prepare", name),
                        f"no test_fraction / n_test: {self.data[name].kind} keeps its official "
                        "test set", _Shown("a test size"),
                    )
                if not official and not has_test:
                    raise _KeyProblem(("prepare", name, "test_fraction"),
                                      "a test fraction (or n_test)", _NOTHING)
            if name not in self.data:
                raise _KeyProblem(
                    ("prepare", name), f"the name of a dataset under data {sorted(self.data)}",
                    name,
                )

    def _check_variants(self) -> None:
        """Each variant trains on a dataset under data, with a loss for that dataset's task."""
        for vname, v in self.train.items():
            if v.dataset not in self.data:
                raise _KeyProblem(
                    ("train", vname, "dataset"),
                    f"one of the datasets under data {sorted(self.data)}",
                    v.dataset,
                )
            task = DATASET_TASKS[self.data[v.dataset].kind]
            if task not in LOSS_TASKS[v.loss]:
                fits = sorted(k for k, tasks in LOSS_TASKS.items() if task in tasks)
                raise _KeyProblem(
                    ("train", vname, "loss"),
                    f"a loss for the {task} dataset {v.dataset!r}: one of {fits}",
                    v.loss,
                )

    def _check_searches(self) -> None:
        """Each search has a usable name and a base variant, and every grid point is valid."""
        for sname, search in (self.select.searches if self.select else {}).items():
            if not _NAME.fullmatch(sname):
                raise _KeyProblem(("select", "searches", sname),
                                  "a name of a letter then letters, digits or underscores (it "
                                  "becomes a DVC stage and file name)", sname)
            if search.base not in self.train:
                raise _KeyProblem(("select", "searches", sname, "base"),
                                  f"a variant under train {sorted(self.train)}", search.base)
            grid_variants(self, sname)  # every configuration must be a valid variant

    def _check_lessons(self) -> None:
        """Each lesson that trains on data names a classification dataset under data."""
        for lname in LessonsSpec.model_fields:
            lesson = getattr(self.lessons, lname)
            if isinstance(lesson, DataLesson) and lesson.dataset not in self.data:
                raise _KeyProblem(("lessons", lname, "dataset"),
                                  f"one of the datasets under data {sorted(self.data)}",
                                  lesson.dataset)
            if isinstance(lesson, DataLesson) and (
                    DATASET_TASKS[self.data[lesson.dataset].kind] != "classification"):
                classifiers = sorted(n for n, d in self.data.items()
                                     if DATASET_TASKS[d.kind] == "classification")
                raise _KeyProblem(("lessons", lname, "dataset"),
                                  f"a classification dataset: one of {classifiers}",
                                  lesson.dataset)

    def _check_report(self) -> None:
        """report's notes, groups and compare name variants, and each compared pair is paired."""
        for vname in self.report.notes:
            if vname not in self.train:
                raise _KeyProblem(("report", "notes", vname), "the name of a variant under train",
                                  vname)
        for group in ReportGroups.model_fields:
            for j, vname in enumerate(getattr(self.report.groups, group)):
                if vname not in self.train:
                    raise _KeyProblem(("report", "groups", group, j),
                                      "the name of a variant under train", vname)
        for i, fig in enumerate(self.report.book):
            for key in ("variant", "same_as"):
                vname = getattr(fig, key)
                if vname is not None and vname not in self.train:
                    raise _KeyProblem(("report", "book", i, key),
                                      "the name of a variant under train", vname)
        for i, pair in enumerate(self.report.compare):
            for j, vname in enumerate(pair):
                if vname not in self.train:
                    raise _KeyProblem(("report", "compare", i, j),
                                      "the name of a variant under train", vname)
            a, b = (self.train[v] for v in pair)
            paired = (a.seeds is not None and a.seeds == b.seeds) or (
                a.kfold is not None and a.kfold == b.kfold and a.dataset == b.dataset)
            if pair[0] == pair[1] or not paired:
                raise _KeyProblem(
                    ("report", "compare", i),
                    "two different variants with the same `seeds`, or the same `kfold` on the "
                    "same dataset (a paired comparison)", pair)

    @model_validator(mode="after")
    def _registry_resolves(self) -> Params:
        reg = self.tracking.registry
        if reg is None:
            return self
        searches = self.select.searches if self.select else {}
        for i, sname in enumerate(reg.searches or []):
            if sname not in searches:
                raise _KeyProblem(("tracking", "registry", "searches", i),
                                  f"a search under select.searches {sorted(searches)}", sname)
        for i, vname in enumerate(reg.variants):
            if vname not in self.train:
                raise _KeyProblem(("tracking", "registry", "variants", i),
                                  "the name of a variant under train", vname)
        # The champion is the best test score: comparable only on one test set.
        datasets = {f"select@{s}": self.train[searches[s].base].dataset
                    for s in (searches if reg.searches is None else reg.searches)}
        datasets.update({v: self.train[v].dataset for v in reg.variants})
        if len(set(datasets.values())) > 1:
            raise _KeyProblem(("tracking", "registry"),
                              "models of one dataset (the champion is chosen by test score)",
                              _Shown(", ".join(f"{k} on {v}" for k, v in datasets.items())))
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


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate an already-loaded mapping; raise ConfigError with one line on any problem."""
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}, not a mapping of sections"
        raise ConfigError(f"{source}: <top level>: expected a mapping of sections, found {kind}")
    try:
        check_profiles({**raw, "profiles": dict(raw.get("profiles") or {})}
                       if isinstance(raw.get("profiles"), dict) else raw)
        resolved = apply_profile(raw)
    except _ProfileError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        params = Params.model_validate(resolved)
        params._source = source
        return params
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
