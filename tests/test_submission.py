"""The house-prices submission (file 002, 4.10 to the end; issue 30): a Kaggle-style test.csv,
the variant chosen by K-fold log-RMSE, refitted on every training row, and submission.csv
(Id, SalePrice) with one row per test row in the test file's order.

Oracles: the generated rows' true prices (drawn again from the same seeded stream, with their
target), the test file itself for the order and the row count, the one-line error contract.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run

from dlbasics.config.loading import parse_params
from dlbasics.data.sources import data_identity, generate_all
from dlbasics.data.tabular import log_rmse, make_house_prices, read_test_table
from dlbasics.errors import DataError
from dlbasics.pipeline.submit import choose_variant, write_submission
from dlbasics.rng import numpy_rng

RAW = yaml.safe_load((REPO / "params.yaml").read_text())
HOUSE = ("house_linear", "house_mlp")


def _params(data: dict, epochs: int = 20):
    raw = {k: v for k, v in RAW.items() if k not in ("select", "report", "lessons", "train",
                                                       "data", "prepare")}
    raw["data"] = {"house_prices": data}
    raw["prepare"] = {"house_prices": RAW["prepare"]["house_prices"]}
    raw["train"] = {n: {**RAW["train"][n], "epochs": epochs} for n in HOUSE}
    return parse_params(raw)


def _models(root: Path, scores: dict[str, float]) -> Path:
    """What the train stage leaves for the submit stage: each variant's K-fold scores."""
    for name, score in scores.items():
        (root / name / "eval").mkdir(parents=True)
        (root / name / "eval" / "metrics.json").write_text(json.dumps(
            {"cv_val_rmse_mean": score, "cv_val_rmse_std": 0.01}))
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    params = _params({"kind": "house_prices", "n_rows": 300, "n_test_rows": 57}, epochs=100)
    generate_all(params, root / "raw")
    models = _models(root / "models", {"house_linear": 0.11, "house_mlp": 0.12})
    summary = write_submission(params, root / "raw", models, root / "out")
    return params, root, summary


def test_the_generated_test_table_has_no_target_and_its_own_ids(generated):
    _, root, _ = generated
    test = pd.read_csv(root / "raw" / "house_prices" / "test.csv")
    train = pd.read_csv(root / "raw" / "house_prices" / "table.csv")
    assert len(test) == 57 and "SalePrice" not in test.columns
    assert list(test.columns) == [c for c in train.columns if c != "SalePrice"]
    assert test["Id"].tolist() == list(range(301, 358))
    meta = json.loads((root / "raw" / "house_prices" / "meta.json").read_text())
    assert set(meta["sha256"]) == {"table.csv", "test.csv"}


def test_the_test_rows_change_neither_the_training_rows_nor_the_identity(generated):
    params, root, _ = generated
    without = _params({"kind": "house_prices", "n_rows": 300})
    assert data_identity(without.data["house_prices"]) == data_identity(params.data["house_prices"])
    rng = numpy_rng(params.seed, "data", data_identity(params.data["house_prices"]))
    again = make_house_prices(300, rng)
    train = pd.read_csv(root / "raw" / "house_prices" / "table.csv")
    np.testing.assert_array_equal(train["SalePrice"].to_numpy(), again["SalePrice"].to_numpy())


def test_one_row_per_test_row_in_order_and_near_the_true_prices(generated):
    params, root, summary = generated
    sub = pd.read_csv(root / "out" / "submission.csv")
    test = pd.read_csv(root / "raw" / "house_prices" / "test.csv")
    assert list(sub.columns) == ["Id", "SalePrice"]
    assert sub["Id"].tolist() == test["Id"].tolist()
    assert summary["chosen"] == "house_linear" and summary["rows"] == 57
    # The true prices of the test rows: the same stream drawn again, with the target.
    rng = numpy_rng(params.seed, "data", data_identity(params.data["house_prices"]), "test")
    truth = make_house_prices(57, rng)["SalePrice"].to_numpy()
    assert log_rmse(truth, sub["SalePrice"].to_numpy()) < 0.2


def test_the_lower_k_fold_score_is_chosen(tmp_path):
    params = _params({"kind": "house_prices", "n_rows": 300, "n_test_rows": 5})
    models = _models(tmp_path, {"house_linear": 0.13, "house_mlp": 0.12})
    chosen, records = choose_variant(params, "house_prices", models)
    assert chosen == "house_mlp" and [r["variant"] for r in records] == list(HOUSE)
    tie = _models(tmp_path / "tie", {"house_linear": 0.12, "house_mlp": 0.12})
    assert choose_variant(params, "house_prices", tie)[0] == "house_linear"


def test_a_kaggle_test_file_keeps_its_order(tmp_path):
    """source csv: a shuffled test.csv with its columns in another order is predicted row by
    row in its own order."""
    rng = np.random.default_rng(3)
    train = make_house_prices(200, rng)
    train.to_csv(tmp_path / "train.csv", index=False)
    test = make_house_prices(30, rng).drop(columns=["SalePrice"])
    test["Id"] = rng.permutation(np.arange(1000, 1030))
    test = test[list(reversed(test.columns))]
    test.to_csv(tmp_path / "test.csv", index=False)
    params = _params({"kind": "house_prices", "source": "csv", "path": str(tmp_path / "train.csv"),
                      "test_path": str(tmp_path / "test.csv")}, epochs=5)
    generate_all(params, tmp_path / "raw")
    models = _models(tmp_path / "models", {"house_linear": 0.1, "house_mlp": 0.2})
    write_submission(params, tmp_path / "raw", models, tmp_path / "out")
    sub = pd.read_csv(tmp_path / "out" / "submission.csv")
    assert sub["Id"].tolist() == test["Id"].tolist() and len(sub) == 30


def _train(tmp_path: Path) -> pd.DataFrame:
    frame = make_house_prices(50, np.random.default_rng(1))
    frame.to_csv(tmp_path / "train.csv", index=False)
    return frame


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.drop(columns=["Id"]), "no id column 'Id'"),
    (lambda t: t.assign(Pool=1), "unknown column 'Pool'"),
    (lambda t: t.drop(columns=["LotArea"]), "no column 'LotArea'"),
    (lambda t: t.assign(GrLivArea=["big"] + [1000.0] * (len(t) - 1)),
     "column 'GrLivArea' is numeric in the training table but has 'big' at data row 1"),
    (lambda t: t.assign(SalePrice=1.0), "has the target column 'SalePrice'"),
    (lambda t: t.assign(Id=[7] * len(t)), "column 'Id' repeats 7 at data row 2"),
])
def test_a_malformed_test_file_is_one_line_naming_the_column(tmp_path, edit, words):
    train = _train(tmp_path)
    test = edit(train.drop(columns=["SalePrice"]).head(4).copy())
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DataError) as err:
        read_test_table(tmp_path / "test.csv", train)
    line = str(err.value)
    assert "\n" not in line and words in line and str(tmp_path / "test.csv") in line, line


def test_the_generate_stage_stops_on_a_bad_test_file_and_writes_nothing(tmp_path):
    train = _train(tmp_path)
    train.drop(columns=["SalePrice", "Id"]).to_csv(tmp_path / "test.csv", index=False)
    params = {k: v for k, v in RAW.items() if k not in ("select", "report", "lessons")}
    params["data"] = {"house_prices": {"kind": "house_prices", "source": "csv",
                                       "path": str(tmp_path / "train.csv"),
                                       "test_path": str(tmp_path / "test.csv")}}
    params["prepare"] = {"house_prices": RAW["prepare"]["house_prices"]}
    params["train"] = {"house_linear": RAW["train"]["house_linear"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run([str(Path(__import__("sys").executable)), str(REPO / "stages" / "generate.py"),
                "--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "raw")],
               tmp_path, check=False, PYTHONPATH=str(REPO / "src"))
    assert proc.returncode == 3, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no id column 'Id'" in lines[0], proc.stderr
    assert not (tmp_path / "raw").exists()


def test_without_a_house_prices_table_the_file_is_its_header(tmp_path):
    raw = {k: v for k, v in RAW.items() if k not in ("select", "report", "lessons")}
    raw["data"] = {"line": RAW["data"]["line"]}
    raw["prepare"] = {"line": RAW["prepare"]["line"]}
    raw["train"] = {"line": RAW["train"]["line"]}
    summary = write_submission(parse_params(raw), tmp_path / "raw", tmp_path, tmp_path / "out")
    assert summary["chosen"] is None
    assert (tmp_path / "out" / "submission.csv").read_text() == "Id,SalePrice\n"


def _with_houses(raw: dict) -> dict:
    """The shrunk end-to-end project with the house-prices table and its two candidates, small."""
    import copy

    from conftest import shrink

    params = shrink(copy.deepcopy(raw))
    params["data"]["house_prices"] = {**raw["data"]["house_prices"], "n_rows": 200,
                                      "n_test_rows": 20}
    params["prepare"]["house_prices"] = raw["prepare"]["house_prices"]
    for name in HOUSE:
        params["train"][name] = {**raw["train"][name], "epochs": 3, "kfold": 2}
    return params


@pytest.mark.slow
def test_submit_re_runs_for_its_candidates_only_and_a_new_one_needs_make_deps(tmp_path):
    """dvc.yaml's submit stage depends on the candidates' model directories (derived from
    params by `make deps`): an edit of another variant re-runs train and report only, an edit
    of a candidate re-runs submit too; a candidate added without `make deps` stops the report
    with one line, and after it the submission chooses among all three."""
    from conftest import make_project, ran

    from dlbasics.dvc import plots

    proj = make_project(tmp_path / "proj", _with_houses)
    deps = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]["submit"]["deps"]
    assert [d for d in deps if d.startswith("data/models")] == [f"data/models/{n}" for n in HOUSE]
    run(["dvc", "repro"], proj)

    def edit(name: str, lr: float) -> set[str]:
        params = yaml.safe_load((proj / "params.yaml").read_text())
        params["train"][name]["optimizer"]["lr"] = lr
        (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return ran(run(["dvc", "repro"], proj))

    assert edit("linreg", 0.02) == {"train", "report"}
    assert edit("house_mlp", 0.004) == {"train", "submit", "report"}
    # A third candidate, dvc.yaml not brought up to date: the report stops before writing.
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["house_wide"] = {**params["train"]["house_mlp"],
                                     "model": {"kind": "mlp", "hidden": [16]}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    report_before = (proj / "reports" / "report.md").read_bytes()
    proc = run(["dvc", "repro"], proj, check=False)
    assert proc.returncode != 0
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "house_wide" in errors[0] and "make deps" in errors[0], errors
    assert (proj / "reports" / "report.md").read_bytes() == report_before
    assert ("stages.submit.deps: declares ['data/models/house_linear', 'data/models/house_mlp'] "
            "but the submission's candidates are ['data/models/house_linear', "
            "'data/models/house_mlp', 'data/models/house_wide']") in plots.check(proj)
    assert plots.write(proj) is True
    assert ran(run(["dvc", "repro"], proj)) == {"submit", "report"}
    chosen = json.loads((proj / "data" / "submission" / "submission.json").read_text())
    assert [r["variant"] for r in chosen["candidates"]] == [*HOUSE, "house_wide"]
