"""Tests for dlbasics.data.tabular (file 002, sections 2.2 and 4.10: house prices).

Oracles: standardisation and one-hot codes recomputed by hand with numpy from the training
rows only; log-RMSE from its formula; K-fold folds checked as a partition of range(n); the
generator's noise sd (0.1 on log-price) as the floor a least-squares fit should reach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlbasics.data.tabular import (
    TabularPreprocessor,
    log_rmse,
    log_target,
    make_house_prices,
    read_table,
)
from dlbasics.errors import DataError

NUMERIC = ["LotArea", "OverallQual", "YearBuilt", "GrLivArea", "GarageCars"]
CATEGORICAL = ["Neighborhood", "HouseStyle", "CentralAir"]

# =========================================================================== #
# make_house_prices
# =========================================================================== #


def test_house_prices_shape_columns_and_missing_values():
    frame = make_house_prices(2000, np.random.default_rng(0))
    assert frame.shape == (2000, 10)
    assert list(frame.columns) == ["Id", *NUMERIC, *CATEGORICAL, "SalePrice"]
    assert frame["Id"].tolist() == list(range(1, 2001))
    for c in NUMERIC:
        assert pd.api.types.is_numeric_dtype(frame[c]), c
    for c in CATEGORICAL:
        assert not pd.api.types.is_numeric_dtype(frame[c]), c
    share = frame.isna().mean()
    # "a few percent" missing in two numeric and two categorical columns, none in Id or price.
    for c in ("LotArea", "GarageCars", "Neighborhood", "HouseStyle"):
        assert 0.01 < share[c] < 0.08, (c, share[c])
    assert share["Id"] == 0 and share["SalePrice"] == 0
    assert (frame["SalePrice"] > 0).all()


def test_house_prices_deterministic_per_generator_state():
    a = make_house_prices(300, np.random.default_rng(7))
    b = make_house_prices(300, np.random.default_rng(7))
    c = make_house_prices(300, np.random.default_rng(8))
    pd.testing.assert_frame_equal(a, b)
    assert not a["SalePrice"].equals(c["SalePrice"])
    assert not a["Neighborhood"].equals(c["Neighborhood"])


def test_house_prices_log_price_is_linear_in_the_features():
    """Least squares on the preprocessed features reaches the generator's noise sd (0.1) on
    held-out rows; predicting the training mean does far worse."""
    frame = make_house_prices(3000, np.random.default_rng(1))
    train, test = frame.iloc[:2400], frame.iloc[2400:]
    prep = TabularPreprocessor().fit(train)
    X_train = np.hstack([prep.transform(train), np.ones((len(train), 1), np.float32)])
    X_test = np.hstack([prep.transform(test), np.ones((len(test), 1), np.float32)])
    w, *_ = np.linalg.lstsq(X_train.astype(np.float64), log_target(train["SalePrice"]), rcond=None)
    score = log_rmse(test["SalePrice"], np.exp(X_test @ w))
    mean_price = np.exp(np.log(train["SalePrice"]).mean())
    baseline = log_rmse(test["SalePrice"], np.full(len(test), mean_price))
    # The blanked values cost a little above the noise floor.
    assert 0.08 < score < 0.13, score
    assert baseline > 2.5 * score


# =========================================================================== #
# TabularPreprocessor
# =========================================================================== #


def _train_val() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.DataFrame(
        {
            "Id": [1, 2, 3, 4, 5],
            "Rooms": [2.0, np.nan, 4.0, 3.0, 6.0],
            "Area": [100.0, 150.0, np.nan, 90.0, 200.0],
            "Alley": ["Pave", None, "Grvl", "Pave", None],
            "Air": ["Y", "N", "Y", "Y", "N"],
            "SalePrice": [127500.0, 106000.0, 178100.0, 140000.0, 250000.0],
        }
    )
    # Validation rows from a wildly different distribution, an unseen category ("Dirt"), and a
    # missing Air although training had none.
    val = pd.DataFrame(
        {
            "Id": [6, 7, 8],
            "Rooms": [1000.0, np.nan, 2000.0],
            "Area": [1e6, 5e6, np.nan],
            "Alley": ["Dirt", "Grvl", None],
            "Air": ["N", None, "Y"],
            "SalePrice": [1.0, 2.0, 3.0],
        }
    )
    return train, val


def _expected_numeric(train_col: np.ndarray, col: np.ndarray) -> np.ndarray:
    mean, std = np.nanmean(train_col), np.nanstd(train_col, ddof=1)
    return np.nan_to_num((col - mean) / std, nan=0.0)


def test_preprocessor_feature_names_and_order():
    train, val = _train_val()
    prep = TabularPreprocessor().fit(train)
    assert prep.feature_names_ == [
        "Rooms", "Area",
        "Alley_Grvl", "Alley_Pave", "Alley_nan",
        "Air_N", "Air_Y", "Air_nan",
    ]
    # Column order of the incoming frame does not change the output columns.
    shuffled = val[["Air", "SalePrice", "Alley", "Area", "Id", "Rooms"]]
    np.testing.assert_array_equal(prep.transform(shuffled), prep.transform(val))
    # A frame without id and target (a Kaggle test.csv) transforms the same.
    np.testing.assert_array_equal(prep.transform(val.drop(columns=["Id", "SalePrice"])),
                                  prep.transform(val))


def test_preprocessor_numeric_columns_use_training_statistics_then_nan_to_zero():
    train, val = _train_val()
    prep = TabularPreprocessor().fit(train)
    out_train, out_val = prep.transform(train), prep.transform(val)
    assert out_train.dtype == np.float32 and out_val.dtype == np.float32
    assert not np.isnan(out_train).any() and not np.isnan(out_val).any()
    for j, c in enumerate(["Rooms", "Area"]):
        t = train[c].to_numpy()
        np.testing.assert_allclose(out_train[:, j], _expected_numeric(t, t), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out_val[:, j], _expected_numeric(t, val[c].to_numpy()),
                                   rtol=1e-6, atol=1e-6)
    # Rooms: train mean (2+4+3+6)/4 = 3.75, so val's 1000 sits far above and NaN sits at 0.
    assert out_val[1, 0] == 0.0 and out_val[2, 1] == 0.0
    assert out_val[0, 0] > 100


def test_preprocessor_statistics_ignore_validation_rows():
    train, val = _train_val()
    alone = TabularPreprocessor().fit(train).transform(train)
    pooled = TabularPreprocessor().fit(pd.concat([train, val])).transform(train)
    # Fitting on train only must not see val's huge values; fitting on both must.
    np.testing.assert_allclose(alone[:, 0], _expected_numeric(train["Rooms"].to_numpy(),
                                                              train["Rooms"].to_numpy()), atol=1e-6)
    assert not np.allclose(alone[:, :2], pooled[:, :2])


def test_preprocessor_one_hot_with_missing_indicator_and_unseen_category():
    train, val = _train_val()
    prep = TabularPreprocessor().fit(train)
    #                                   Grvl Pave nan  N    Y    nan
    expected_train = np.array([[0, 1, 0, 0, 1, 0],
                               [0, 0, 1, 1, 0, 0],
                               [1, 0, 0, 0, 1, 0],
                               [0, 1, 0, 0, 1, 0],
                               [0, 0, 1, 1, 0, 0]], dtype=np.float32)
    expected_val = np.array([[0, 0, 0, 1, 0, 0],   # Alley "Dirt" unseen: all zeros, not "nan"
                             [1, 0, 0, 0, 0, 1],   # Air missing: its indicator, fixed by fit
                             [0, 0, 1, 0, 1, 0]], dtype=np.float32)
    np.testing.assert_array_equal(prep.transform(train)[:, 2:], expected_train)
    np.testing.assert_array_equal(prep.transform(val)[:, 2:], expected_val)


def test_preprocessor_constant_column_and_numeric_looking_categories():
    train = pd.DataFrame({"Const": [5.0, 5.0, 5.0], "Zone": ["1", 2, "3"], "SalePrice": [1, 2, 3]})
    prep = TabularPreprocessor(id_column=None).fit(train)
    assert prep.feature_names_ == ["Const", "Zone_1", "Zone_2", "Zone_3", "Zone_nan"]
    out = prep.transform(pd.DataFrame({"Const": [7.0], "Zone": [2]}))
    # std 0 counts as 1: (7 - 5) / 1; the int 2 and the string "2" are one category.
    np.testing.assert_array_equal(out, [[2.0, 0, 1, 0, 0]])


def test_preprocessor_errors():
    train, val = _train_val()
    with pytest.raises(RuntimeError, match="not fitted"):
        TabularPreprocessor().transform(val)
    prep = TabularPreprocessor().fit(train)
    with pytest.raises(DataError, match="Alley"):
        prep.transform(val.drop(columns=["Alley"]))
    bad = val.assign(Rooms=["3", "many", "4"])
    with pytest.raises(DataError, match="'Rooms'"):
        prep.transform(bad)


# =========================================================================== #
# read_table
# =========================================================================== #


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _one_line_error(call, *needles: str) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def test_read_table_reads_a_kaggle_csv(tmp_path):
    frame = make_house_prices(50, np.random.default_rng(3))
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    read = read_table(path)
    assert list(read.columns) == list(frame.columns)
    np.testing.assert_array_equal(read["SalePrice"].to_numpy(), frame["SalePrice"].to_numpy())
    assert read["SalePrice"].dtype == np.float64
    # Empty fields come back missing, so the preprocessor sees the same NaN pattern.
    np.testing.assert_array_equal(read.isna().to_numpy(), frame.isna().to_numpy())


def test_read_table_errors(tmp_path):
    ok_header = "Id,LotArea,Street,SalePrice\n"
    missing = tmp_path / "absent.csv"
    _one_line_error(lambda: read_table(missing), str(missing), "missing")

    empty = _write(tmp_path / "empty.csv", "")
    _one_line_error(lambda: read_table(empty), str(empty), "empty")

    header = _write(tmp_path / "header.csv", ok_header)
    _one_line_error(lambda: read_table(header), str(header), "header only")

    no_target = _write(tmp_path / "no_target.csv", "Id,LotArea,Price\n1,8450,208500\n")
    message = _one_line_error(
        lambda: read_table(no_target, dataset="kaggle_house"),
        str(no_target), "'SalePrice'", "Id, LotArea, Price", "data.kaggle_house.target_column",
    )
    assert "id_column" not in message

    text = _write(tmp_path / "text.csv", ok_header + "1,8450,Pave,208500\n2,9600,Pave,cheap\n")
    _one_line_error(lambda: read_table(text), str(text), "'SalePrice'", "'cheap'", "data row 2",
                    "Id=2")

    blank = _write(tmp_path / "blank.csv", ok_header + "1,8450,Pave,\n")
    _one_line_error(lambda: read_table(blank), str(blank), "'SalePrice'", "missing value",
                    "data row 1")

    negative = _write(tmp_path / "neg.csv", ok_header + "1,8450,Pave,208500\n7,9600,Pave,-5\n")
    _one_line_error(lambda: read_table(negative), str(negative), "'SalePrice'", "-5",
                    "Id=7", "> 0")

    zero = _write(tmp_path / "zero.csv", ok_header + "1,8450,Pave,0\n")
    _one_line_error(lambda: read_table(zero), str(zero), "'SalePrice'", "> 0")

    no_id = _write(tmp_path / "no_id.csv", "LotArea,SalePrice\n8450,208500\n")
    _one_line_error(lambda: read_table(no_id), str(no_id), "'Id'", "id_column")
    assert read_table(no_id, id_column=None)["SalePrice"].tolist() == [208500.0]

    custom = _write(tmp_path / "custom.csv", "Key,Value\n1,3.5\n")
    assert read_table(custom, id_column="Key", target_column="Value")["Value"].tolist() == [3.5]


# =========================================================================== #
# scores and folds
# =========================================================================== #


def test_log_target_and_log_rmse_against_numpy():
    rng = np.random.default_rng(5)
    true = rng.uniform(5e4, 5e5, 200)
    pred = true * np.exp(rng.normal(0, 0.2, 200))
    pred[:5] = [-3.0, 0.0, 0.5, 1.0, 2.0]  # at or below 1: clipped to 1
    expected = np.sqrt(np.mean((np.log(np.maximum(pred, 1.0)) - np.log(true)) ** 2))
    assert log_rmse(true, pred) == pytest.approx(expected, rel=1e-12)
    assert log_rmse(true, true) == 0.0
    # By hand: log(e^2 / e^1) = 1 and log(1 / 1) = 0 -> sqrt(1 / 2).
    assert log_rmse([np.e, 1.0], [np.e**2, -10.0]) == pytest.approx(np.sqrt(0.5))

    logs = log_target(pd.Series(true))
    assert logs.dtype == np.float32
    np.testing.assert_allclose(logs, np.log(true), rtol=1e-6)
    with pytest.raises(ValueError):
        log_target([1.0, 0.0])
    with pytest.raises(ValueError):
        log_rmse([1.0, 2.0], [1.0])
