"""The `data` and `prepare` sections: each dataset kind's settings, what task it poses, and how it
is split and scaled.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from dlbasics.config.base import NOTHING, Fraction, KeyProblem, Shown, Strict

# ----------------------------------------------------------------------------- data


class Outliers(Strict):
    """A seeded share of the rows whose target is moved by `shift` (file 001's case for L1)."""

    fraction: Annotated[float, Field(gt=0, le=0.5)]
    shift: float


class SyntheticLinear(Strict):
    """y = X w + b + N(0, noise_sd^2); X ~ N(x_mean, x_std^2) or U(x_low, x_high).

    The true w is given (`true_w`), constant (`w_fill` times `n_features`) or drawn
    N(0, w_std^2) from the seed (`w_std` times `n_features`): exactly one of the three.
    `outliers`: that share of the rows gets `shift` added to its target.
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
    outliers: Outliers | None = None

    @model_validator(mode="after")
    def _one_way_to_give_w(self) -> SyntheticLinear:
        given = [k for k in ("true_w", "w_fill", "w_std") if getattr(self, k) is not None]
        if len(given) != 1:
            raise KeyProblem(
                (), "exactly one of true_w, w_fill, w_std", Shown(", ".join(given) or "none")
            )
        if self.true_w is not None and self.n_features not in (None, len(self.true_w)):
            raise KeyProblem(("n_features",), f"len(true_w) = {len(self.true_w)}",
                              self.n_features)
        if self.true_w is None and self.n_features is None:
            raise KeyProblem(("n_features",), f"a feature count with {given[0]}", NOTHING)
        if self.x_dist == "uniform" and not self.x_low < self.x_high:
            raise KeyProblem(("x_high",), f"a value > x_low ({self.x_low})", self.x_high)
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
            raise KeyProblem(("true_w",), f"at most max_degree ({self.max_degree}) weights",
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
            raise KeyProblem(("x_high",), f"a value > x_low ({self.x_low})", self.x_high)
        return self


class Imbalance(Strict):
    """Keep only a seeded share `keep` of the rows of each class in `classes`."""

    classes: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    keep: Annotated[float, Field(gt=0, lt=1)]


class Digits(Strict):
    """scikit-learn's bundled 8x8 digits (1797 x 64), the embedded image set; `imbalance` makes
    some classes rare (a class-weighted loss's test bed)."""

    kind: Literal["digits"]
    imbalance: Imbalance | None = None

    @model_validator(mode="after")
    def _digit_classes(self) -> Digits:
        if self.imbalance is not None and max(self.imbalance.classes) > 9:
            raise KeyProblem(("imbalance", "classes"), "digit classes 0 to 9",
                              self.imbalance.classes)
        return self


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
            raise KeyProblem(("path",), "the directory holding the four IDX files", NOTHING)
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
    # The rows a submission predicts (no target column): a Kaggle-style test.csv with source
    # csv, or this many generated rows with source generated. Not part of the set's identity.
    test_path: Annotated[str, Field(min_length=1)] | None = None
    n_test_rows: Annotated[int, Field(ge=1, le=10_000_000)] | None = None

    @model_validator(mode="after")
    def _csv_needs_path(self) -> HousePrices:
        if self.source == "csv" and self.path is None:
            raise KeyProblem(("path",), "the path of a train.csv", NOTHING)
        if self.source == "csv" and self.n_test_rows is not None:
            raise KeyProblem(("n_test_rows",), "no n_test_rows with source csv (give test_path)",
                              self.n_test_rows)
        if self.source == "generated" and self.test_path is not None:
            raise KeyProblem(("test_path",), "no test_path with source generated (give "
                              "n_test_rows)", self.test_path)
        if self.id_column is None and (self.test_path or self.n_test_rows):
            raise KeyProblem(("id_column",), "an id column (a submission is keyed by it)",
                              NOTHING)
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
                raise KeyProblem((), "fractions or counts, not both", Shown("both"))
            if self.n_train is None:
                raise KeyProblem(("n_train",), "n_train with n_val / n_test", NOTHING)
            return self
        if (self.val_fraction or 0) + (self.test_fraction or 0) >= 0.9:
            raise KeyProblem(
                (),
                "val_fraction + test_fraction < 0.9, so training keeps at least 10% of the rows",
                Shown(f"{self.val_fraction} + {self.test_fraction}"),
            )
        return self
