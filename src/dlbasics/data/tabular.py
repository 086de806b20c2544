"""Kaggle-style tabular regression (file 002, sections 2.2 and 4.10): house prices.

A synthetic house-prices frame, a checked reader for a Kaggle `train.csv`, a preprocessor that
standardises numeric columns (then sets missing values to 0) and one-hot encodes categorical
columns with a missing-value indicator, the log-RMSE score and seeded K-fold indices.

Unlike the book, the preprocessor learns its means, deviations and categories from the
training rows only, so validation and test rows never leak into the features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlbasics.errors import DataError

# ----------------------------------------------------------------------------- generate

NEIGHBORHOODS = ("CollgCr", "Edwards", "NAmes", "NoRidge", "OldTown", "Somerst")
HOUSE_STYLES = ("1Story", "1.5Fin", "2Story", "SLvl")
# Effects on log-price, so each multiplies the price by exp(effect).
_NEIGHBORHOOD_EFFECT = (0.05, -0.15, -0.05, 0.30, -0.20, 0.10)
_STYLE_EFFECT = (0.0, -0.08, 0.06, -0.02)
MISSING_RATE = 0.04  # share of values blanked in each column that may be missing
_MAY_BE_MISSING = ("LotArea", "GarageCars", "Neighborhood", "HouseStyle")


def make_house_prices(n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """A house-prices-like frame [n_rows, 10]: Id, 5 numeric and 3 categorical features, SalePrice.

    log(SalePrice) is linear in the numeric features and in per-category offsets, plus
    N(0, 0.1^2) noise; about MISSING_RATE of LotArea, GarageCars, Neighborhood and HouseStyle
    are then blanked (the price still depends on their true values).
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    lot_area = np.round(rng.lognormal(np.log(9500.0), 0.35, n_rows))
    overall_qual = rng.integers(1, 11, n_rows)
    year_built = rng.integers(1900, 2011, n_rows)
    gr_liv_area = np.round(np.clip(rng.normal(1500.0, 450.0, n_rows), 400.0, None))
    garage_cars = rng.integers(0, 4, n_rows)
    hood = rng.integers(0, len(NEIGHBORHOODS), n_rows)
    style = rng.integers(0, len(HOUSE_STYLES), n_rows)
    central_air = rng.random(n_rows) < 0.9

    log_price = (
        11.9
        + 0.10 * np.log(lot_area / 9500.0)
        + 0.09 * (overall_qual - 6)
        + 0.003 * (year_built - 1970)
        + 0.40 * (gr_liv_area - 1500.0) / 1000.0
        + 0.07 * garage_cars
        + np.asarray(_NEIGHBORHOOD_EFFECT)[hood]
        + np.asarray(_STYLE_EFFECT)[style]
        + np.where(central_air, 0.10, -0.10)
        + rng.normal(0.0, 0.1, n_rows)
    )
    frame = pd.DataFrame(
        {
            "Id": np.arange(1, n_rows + 1),
            "LotArea": lot_area,
            "OverallQual": overall_qual,
            "YearBuilt": year_built,
            "GrLivArea": gr_liv_area,
            "GarageCars": garage_cars.astype(np.float64),
            "Neighborhood": np.asarray(NEIGHBORHOODS, dtype=object)[hood],
            "HouseStyle": np.asarray(HOUSE_STYLES, dtype=object)[style],
            "CentralAir": np.where(central_air, "Y", "N").astype(object),
            "SalePrice": np.round(np.exp(log_price)),
        }
    )
    for column in _MAY_BE_MISSING:
        frame.loc[rng.random(n_rows) < MISSING_RATE, column] = np.nan
    return frame


def make_test_rows(n_rows: int, first_id_after: int, rng: np.random.Generator,
                   target_column: str = "SalePrice") -> pd.DataFrame:
    """A Kaggle-style test table [n_rows, 9]: rows drawn as make_house_prices draws them, Ids
    first_id_after + 1 onwards, and no target column (its price is what a submission predicts)."""
    frame = make_house_prices(n_rows, rng).drop(columns=[target_column])
    frame["Id"] = np.arange(first_id_after + 1, first_id_after + n_rows + 1)
    return frame


# ----------------------------------------------------------------------------- read


def read_table(
    path: str | Path,
    *,
    id_column: str | None = "Id",
    target_column: str = "SalePrice",
    dataset: str | None = None,
) -> pd.DataFrame:
    """A Kaggle-style train.csv [N, columns] with a checked, positive, numeric target column.

    `dataset` (the params name under `data:`) only makes the error messages name the key.
    """
    path = Path(path)
    key = f"data.{dataset or '<name>'}"
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(
            f"{path}: missing; put the Kaggle train.csv there or fix the path"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path}: empty file (no header, no rows); re-download the Kaggle train.csv"
        ) from None
    if len(frame) == 0:
        raise DataError(f"{path}: header only, no data rows; re-download the Kaggle train.csv")
    columns = [str(c) for c in frame.columns]
    if target_column not in frame.columns:
        raise DataError(
            f"{path}: no target column {target_column!r} (columns: {', '.join(columns)}); "
            f"set {key}.target_column to one of them"
        )
    if id_column is not None and id_column not in frame.columns:
        raise DataError(
            f"{path}: no id column {id_column!r} (columns: {', '.join(columns)}); "
            f"set {key}.id_column to one of them, or to null if the file has none"
        )
    raw = frame[target_column]
    target = pd.to_numeric(raw, errors="coerce")
    bad = target.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = "a missing value" if pd.isna(raw.iloc[row]) else f"{raw.iloc[row]!r}"
        raise DataError(
            f"{path}: column {target_column!r} has {value} at {_where(frame, row, id_column)}; "
            "every target must be a number: fix or drop that row"
        )
    not_positive = (target <= 0).to_numpy()
    if not_positive.any():
        row = int(np.flatnonzero(not_positive)[0])
        raise DataError(
            f"{path}: column {target_column!r} has {_plain(target.iloc[row])!r} at "
            f"{_where(frame, row, id_column)}; log-RMSE needs prices > 0: fix or drop that row"
        )
    frame[target_column] = target.astype(np.float64)
    return frame


def read_test_table(
    path: str | Path,
    train: pd.DataFrame,
    *,
    id_column: str = "Id",
    target_column: str = "SalePrice",
    dataset: str | None = None,
) -> pd.DataFrame:
    """A Kaggle-style test.csv [N, columns]: the training table's `train` columns less the
    target, in any order, with a unique id per row; a numeric training column must be numeric
    here too (missing values allowed). Rows keep the file's order. Any other file is refused
    with one line (DataError) naming the column and, for a value, its row."""
    path = Path(path)
    key = f"data.{dataset or '<name>'}.test_path"
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; put the Kaggle test.csv there or fix {key}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header, no rows); a test.csv needs its "
                        "header and at least one row") from None
    if len(frame) == 0:
        raise DataError(f"{path}: header only, no data rows; a test.csv needs at least one row")
    if id_column not in frame.columns:
        raise DataError(f"{path}: no id column {id_column!r}; a submission is keyed by it: add "
                        "the column or set the dataset's id_column")
    if target_column in frame.columns:
        raise DataError(f"{path}: has the target column {target_column!r}; a test file has no "
                        "target (is it the training file?)")
    features = [c for c in train.columns if c != target_column]
    unknown = [str(c) for c in frame.columns if c not in features]
    if unknown:
        raise DataError(f"{path}: unknown column {unknown[0]!r} (not in the training table); "
                        "drop it or give the matching train.csv")
    absent = [str(c) for c in features if c not in frame.columns]
    if absent:
        raise DataError(f"{path}: no column {absent[0]!r}, which the training table has; "
                        "every training feature column must be there")
    ids = frame[id_column]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise DataError(f"{path}: column {id_column!r} has a missing value at data row "
                        f"{row + 1}; every row needs its id")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: column {id_column!r} repeats {_plain(ids.iloc[row])!r} at "
                        f"data row {row + 1}; one prediction per id")
    for c in features:
        if c == id_column or not _is_numeric(train[c]) or _is_numeric(frame[c]):
            continue
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = (values.isna() & frame[c].notna()).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: column {c!r} is numeric in the training table but has "
                            f"{frame[c].iloc[row]!r} at {_where(frame, row, id_column)}; fix "
                            "the value")
        frame[c] = values
    return frame[[id_column, *[c for c in features if c != id_column]]]


def _where(frame: pd.DataFrame, row: int, id_column: str | None) -> str:
    """'data row 3 (Id=17)': 1-based row below the header, with its id when there is one."""
    where = f"data row {row + 1}"
    if id_column is not None:
        where += f" ({id_column}={_plain(frame[id_column].iloc[row])!r})"
    return where


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so messages read `2`, not `np.int64(2)`."""
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- preprocess


def _is_numeric(column: pd.Series) -> bool:
    # Booleans are categories (Y/N style), not magnitudes.
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _as_text(column: pd.Series) -> pd.Series:
    """Values as strings (so 1 and "1" are one category); missing values stay missing."""
    return column.astype(object).map(str, na_action="ignore")


class TabularPreprocessor:
    """Numeric columns -> (x - train mean) / train std, then NaN -> 0; categorical columns ->
    one-hot over the training categories plus a `<column>_nan` indicator.

    Output [N, F] float32 with F = len(feature_names_): numeric columns first, then each
    categorical column's indicators, both in the training frame's column order. The std is
    pandas' sample std (ddof=1), as in the sources; a std of 0 (or undefined) counts as 1.
    """

    def __init__(self, id_column: str | None = "Id", target_column: str | None = "SalePrice"):
        self.id_column = id_column
        self.target_column = target_column

    def _features(self, frame: pd.DataFrame) -> pd.DataFrame:
        dropped = [c for c in (self.id_column, self.target_column) if c is not None]
        return frame.drop(columns=[c for c in dropped if c in frame.columns])

    def fit(self, frame: pd.DataFrame) -> TabularPreprocessor:
        """Learn means, stds and categories from the training rows `frame` [N_train, columns]."""
        features = self._features(frame)
        if len(features) == 0:
            raise ValueError("fit needs at least one training row")
        self.numeric_columns_ = [c for c in features.columns if _is_numeric(features[c])]
        self.categorical_columns_ = [c for c in features.columns if c not in self.numeric_columns_]
        numeric = features[self.numeric_columns_].astype(np.float64)
        mean, std = numeric.mean(), numeric.std()  # skip NaN; ddof=1
        self.mean_ = mean.fillna(0.0).to_numpy()  # an all-missing column stays 0 after NaN -> 0
        self.std_ = std.where((std > 0) & std.notna(), 1.0).to_numpy()
        self.categories_ = {
            c: sorted(_as_text(features[c]).dropna().unique()) for c in self.categorical_columns_
        }
        names = [str(c) for c in self.numeric_columns_]
        for c in self.categorical_columns_:
            names += [f"{c}_{value}" for value in self.categories_[c]] + [f"{c}_nan"]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(
                f"feature names clash after one-hot encoding: {', '.join(duplicates)}; "
                "rename the category or column that produces them"
            )
        self.feature_names_ = names
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Features [N, F] float32 with no NaN, in the column order fixed by fit."""
        if not hasattr(self, "feature_names_"):
            raise RuntimeError("TabularPreprocessor is not fitted; call fit(train_frame) first")
        absent = [str(c) for c in self.numeric_columns_ + self.categorical_columns_
                  if c not in frame.columns]
        if absent:
            raise DataError(
                f"columns seen in training are missing: {', '.join(absent)}; "
                "give the same feature columns as the training frame"
            )
        blocks: list[np.ndarray] = []
        if self.numeric_columns_:
            numeric = np.empty((len(frame), len(self.numeric_columns_)), dtype=np.float64)
            for j, c in enumerate(self.numeric_columns_):
                try:
                    values = pd.to_numeric(frame[c])
                    numeric[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
                except (ValueError, TypeError) as exc:
                    raise DataError(
                        f"column {c!r}: numeric in training but not here ({exc}); "
                        "fix the value or the column"
                    ) from None
            # Standardise first, so a missing value lands on the training mean (0).
            numeric = np.nan_to_num((numeric - self.mean_) / self.std_, nan=0.0)
            blocks.append(numeric)
        for c in self.categorical_columns_:
            text = _as_text(frame[c])
            # Values outside the training categories are dropped: all-zeros indicators.
            known = text.where(text.isin(self.categories_[c]))
            codes = pd.Categorical(known, categories=self.categories_[c])
            one_hot = pd.get_dummies(codes, dtype=np.float64).to_numpy()  # [N, n_categories]
            missing = text.isna().to_numpy(dtype=np.float64)[:, None]  # [N, 1]
            blocks += [one_hot, missing]
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        """fit(frame), then transform(frame)."""
        return self.fit(frame).transform(frame)


# ----------------------------------------------------------------------------- score


def log_target(y: np.ndarray | pd.Series) -> np.ndarray:
    """Natural log of prices [N] (all > 0) as float32 [N]: the scale log-RMSE judges on."""
    prices = np.asarray(y, dtype=np.float64)
    if not (prices > 0).all():
        raise ValueError("log_target needs prices > 0 (and no NaN)")
    return np.log(prices).astype(np.float32)


def log_rmse(y_true_price: np.ndarray | pd.Series, y_pred_price: np.ndarray | pd.Series) -> float:
    """sqrt(mean((log max(pred, 1) - log true)^2)) over prices [N]; clipping at 1 keeps the log
    of a non-positive prediction finite, as in the sources."""
    true = np.asarray(y_true_price, dtype=np.float64).reshape(-1)
    pred = np.asarray(y_pred_price, dtype=np.float64).reshape(-1)
    if true.shape != pred.shape:
        raise ValueError(f"log_rmse: {true.size} true prices but {pred.size} predictions")
    if not (true > 0).all():
        raise ValueError("log_rmse needs true prices > 0 (and no NaN)")
    diff = np.log(np.clip(pred, 1.0, None)) - np.log(true)
    return float(np.sqrt(np.mean(diff**2)))
