"""The whole DAG with the real `dvc` CLI and a real MLflow store, in a temporary git repo.

One shrunk project is reproduced once (module fixture); the tests then probe it in order:
what ran, what it wrote, what MLflow holds, what a no-op and a one-variant edit re-run, and
that a bad parameter stops with exit code 2 and touches nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from conftest import digest_tree, make_project, ran, run
from sklearn.metrics import accuracy_score

from dlbasics.config.loading import load_params

pytestmark = pytest.mark.slow

VARIANTS = ("linreg", "softmax", "mlp")
ALL_STAGES = ("generate", "prepare", "train", "select@tiny", "lessons", "submit", "report")


# What must be byte-identical between two runs from clean with the same params.
REPRODUCIBLE = ("reports/metrics.json", "reports/history", "reports/series.json",
                "reports/selection", "reports/report.md", "reports/report.html",
                "reports/figures", "data/models", "data/select", "data/prepared",
                "data/submission")


def reproducible_digests(proj: Path) -> dict[str, str]:
    return digest_tree(*(proj / p for p in REPRODUCIBLE), relative_to=proj)


def runs_of(proj: Path, variants_only: bool = True):
    """The runs in the project's store: the trained variants' (or every run, select's too)."""
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["dlbasics"], output_format="list")
    if not variants_only:
        return runs
    return [r for r in runs if r.data.tags.get("variant") is not None
            and not r.data.tags["variant"].startswith("select@")]


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("e2e") / "proj")
    # The README's command, as written (-o: the checkout's virtual environment is used as it
    # is, never rebuilt by the test; the copied .dvc/plots.html keeps it offline).
    first = run(["make", "-s", "-o", ".venv/.installed", "pipeline"], proj)
    # Taken now, before later tests edit the project.
    proj.joinpath(".first-digests.json").write_text(json.dumps(reproducible_digests(proj)))
    return proj, first


def test_every_stage_runs_and_writes_its_outputs(repro):
    proj, first = repro
    assert ran(first) == set(ALL_STAGES)
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(ALL_STAGES)
    for v in VARIANTS:
        assert (proj / "data/models" / v / "model.pt").stat().st_size > 0
        history = json.loads((proj / "reports/history" / f"{v}.json").read_text())
        assert [r["epoch"] for r in history] == [1, 2, 3]
    report = (proj / "reports/report.md").read_text()
    assert "| `mlp` |" in report
    for v in ("softmax", "mlp"):  # repeated over seeds [0, 1] (conftest.shrink)
        assert sorted(p.name for p in (proj / "data/models" / v).glob("seed_*.pt")) == [
            "seed_0.pt", "seed_1.pt"]
    assert "test accuracy over seeds 0, 1: " in report
    # The search's choice in words, as select@tiny wrote it beside its model.
    info = json.loads((proj / "data/select/tiny/model.json").read_text())
    assert info["chosen_words"] in report and "### `select@tiny`" in report
    rows = json.loads((proj / "reports/selection/tiny.json").read_text())
    assert {r["config"] for r in rows} == {0, 1} and {r["path"] for r in rows} == {"batched"}
    html = (proj / "reports/report.html").read_text()
    assert 'id="overview"' in html and "https://" not in html and "http://" not in html
    # Every lesson of params.yaml ran, in params order, with its verdict in both reports.
    lessons = json.loads((proj / "reports/lessons/lessons.json").read_text())
    params = load_params(proj / "params.yaml")
    enabled = [k for k in type(params.lessons).model_fields if getattr(params.lessons, k)]
    keys = [e["id"].split(".")[0] for e in lessons]  # preliminaries.1, .2, ...: one entry
    assert set(keys) == set(enabled) and keys == sorted(keys, key=enabled.index)
    assert "&lt;code&gt;" not in html  # markup is never shown escaped
    for e in lessons:
        assert f"### {e['title']}" in report and html.count(f"<code>{e['id']}</code>") == 1
        assert all((proj / "reports/lessons" / f).stat().st_size > 0 for f in e["figures"])


def test_metrics_json_matches_an_independent_evaluation(repro):
    proj, _ = repro
    metrics = json.loads((proj / "reports/metrics.json").read_text())
    assert set(metrics) == {*VARIANTS, "select@tiny"}
    assert "test_accuracy" in metrics["select@tiny"]
    assert metrics["linreg"]["w_error"] < 0.01 and metrics["linreg"]["b_error"] < 0.01
    # Recompute the softmax test accuracy from the saved weights with scikit-learn.
    state = torch.load(proj / "data/models/softmax/model.pt", weights_only=True)
    X = np.load(proj / "data/prepared/images/X_test.npy")
    y = np.load(proj / "data/prepared/images/y_test.npy")
    pred = (torch.from_numpy(X) @ state["weight"].T + state["bias"]).argmax(1).numpy()
    assert metrics["softmax"]["test_accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    for v in ("softmax", "mlp"):
        assert {"test_accuracy", "test_f1_macro", "test_top_3_accuracy", "test_log_loss"} <= set(
            metrics[v]
        )


def test_mlflow_holds_one_complete_run_per_variant(repro):
    proj, _ = repro
    runs = runs_of(proj)
    assert sorted(r.data.tags["variant"] for r in runs) == sorted(VARIANTS)
    head = run(["git", "rev-parse", "HEAD"], proj).stdout.strip()
    client = mlflow.MlflowClient()
    for r in runs:
        v = r.data.tags["variant"]
        assert r.info.status == "FINISHED"
        assert r.info.run_name == v
        assert r.data.tags["git_commit"] == head
        assert r.data.tags["dvc_stage"] == "train"
        assert r.data.params["optimizer.lr"] == str(
            yaml.safe_load((proj / "params.yaml").read_text())["train"][v]["optimizer"]["lr"]
        )
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_loss")]
        assert steps == [1, 2, 3]
        assert any(k.startswith("test_") for k in r.data.metrics), "no test_* in the run"
        if v != "linreg":
            assert [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] == [
                1, 2, 3,
            ]
        assert r.inputs.dataset_inputs, "the dataset is not logged as a run input"
    models = mlflow.search_logged_models(
        experiment_ids=[runs[0].info.experiment_id], output_format="list"
    )
    # Each run's pytorch model; registered ones also hold a `served` model (test_registry.py).
    models = [m for m in models if m.name == "model"]
    select_runs = [r for r in runs_of(proj, variants_only=False)
                   if r.data.tags.get("variant") == "select@tiny"]
    parents = [r for r in select_runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in select_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2  # one nested run per configuration
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all("val_accuracy_mean" in c.data.metrics for c in children)
    assert "test_accuracy" in parents[0].data.metrics
    assert sorted(m.source_run_id for m in models) == sorted(
        r.info.run_id for r in [*runs, parents[0]]
    )
    # The signature is stored with the model: load it back and predict.
    softmax_run = next(r for r in runs if r.data.tags["variant"] == "softmax")
    model = next(m for m in models if m.source_run_id == softmax_run.info.run_id)
    pyfunc = mlflow.pyfunc.load_model(model.model_uri)
    assert pyfunc.metadata.signature is not None
    X = np.load(proj / "data/prepared/images/X_test.npy")[:4]
    assert np.asarray(pyfunc.predict(X)).shape == (4, 10)


def test_runs_hold_their_figures_and_a_report_run_holds_the_report(repro, tmp_path):
    proj, _ = repro
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    for r in runs_of(proj):
        v = r.data.tags["variant"]
        names = {Path(a.path).name for a in client.list_artifacts(r.info.run_id, "figures")}
        # linreg: curves only; the digits classifiers: their matrix and prediction grid too.
        want = {"curves.png"} | ({"confusion.png", "predictions.png"} if v != "linreg" else set())
        assert names == want, (v, names)
        local = Path(client.download_artifacts(r.info.run_id, "figures/curves.png",
                                               str(tmp_path / v)))
        assert local.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    grid = Path(client.download_artifacts(
        next(r for r in runs_of(proj) if r.data.tags["variant"] == "mlp").info.run_id,
        "figures/predictions.png", str(tmp_path / "grid")))
    assert grid.read_bytes() == (proj / "reports/figures/mlp_predictions.png").read_bytes()
    reports = [r for r in runs_of(proj, variants_only=False)
               if r.data.tags.get("kind") == "report"]
    assert len(reports) == 1 and reports[0].info.status == "FINISHED"
    assert reports[0].info.run_name == "report"
    for name in ("report.html", "report.md", "metrics.json"):
        got = Path(client.download_artifacts(reports[0].info.run_id, name, str(tmp_path / "r")))
        assert got.read_bytes() == (proj / "reports" / name).read_bytes(), name


def test_second_repro_does_nothing_and_logs_nothing(repro):
    proj, _ = repro
    before = digest_tree(proj / "reports", proj / "data/models")
    n_runs = len(runs_of(proj, variants_only=False))
    again = run(["dvc", "repro"], proj)
    assert ran(again) == set()
    assert digest_tree(proj / "reports", proj / "data/models") == before
    assert len(runs_of(proj, variants_only=False)) == n_runs


def test_editing_one_variant_retrains_only_it_then_collect_and_report(repro):
    proj, _ = repro
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["softmax"]["optimizer"]["lr"] = 0.05
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    old = digest_tree(proj / "data/models/mlp", proj / "data/models/linreg")
    proc = run(["dvc", "repro"], proj)
    # submit reads only the house-prices candidates' models (none here): it is not re-run.
    assert ran(proc) == {"train", "report"}
    assert "train mlp: up to date" in proc.stdout and "train linreg: up to date" in proc.stdout
    assert "train: 1 trained, 2 up to date, 0 evaluated again" in proc.stdout
    assert digest_tree(proj / "data/models/mlp", proj / "data/models/linreg") == old
    softmax_runs = [r for r in runs_of(proj) if r.data.tags["variant"] == "softmax"]
    assert sorted(r.data.params["optimizer.lr"] for r in softmax_runs) == ["0.05", "0.1"]
    assert len(runs_of(proj)) == len(VARIANTS) + 1  # no other variant logged a new run
    # Commit what a user commits after a run (params, dvc.lock, small reports).
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "softmax lr 0.05"], proj)


def test_bad_param_exits_2_names_the_key_and_touches_nothing(repro):
    proj, _ = repro
    good = (proj / "params.yaml").read_text()
    params = yaml.safe_load(good)
    params["train"]["mlp"]["optimizer"]["lr"] = -1
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = digest_tree(proj / "reports", proj / "data")
    proc = run(["dvc", "repro"], proj, check=False)
    (proj / "params.yaml").write_text(good)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "exited with 2" in out
    errors = [line for line in out.splitlines() if line.startswith("error: params.yaml")]
    assert len(errors) == 1 and "train.mlp.optimizer.lr" in errors[0] and "-1" in errors[0]
    assert digest_tree(proj / "reports", proj / "data") == before


def test_temp_experiment_lands_in_the_users_store(repro):
    proj, _ = repro
    n_runs = len(runs_of(proj))
    run(["dvc", "exp", "run", "--temp", "-S", "train.linreg.optimizer.lr=0.02"], proj)
    runs = runs_of(proj)
    assert len(runs) == n_runs + 1
    new = [r for r in runs if r.data.tags.get("dvc_exp_name")]
    assert len(new) == 1 and new[0].data.tags["variant"] == "linreg"
    assert new[0].data.params["optimizer.lr"] == "0.02"
    assert any(k.startswith("test_") for k in new[0].data.metrics)
    # Artifacts sit beside the store, not in DVC's temporary copy.
    assert not (proj / ".dvc/tmp/exps").exists() or not any((proj / ".dvc/tmp/exps").rglob("MLmodel"))
    assert any((proj / "mlartifacts").rglob("MLmodel"))
    shown = run(["dvc", "exp", "show", "--json"], proj).stdout
    assert "0.02" in shown


def test_a_second_clone_reproduces_every_output_to_the_bit(repro, tmp_path):
    """...traced (DLBASICS_TRACE, what `make bench` reads): the trace changes no output byte,
    and it holds one process per stage DVC ran, in order, with each stage's work inside it."""
    import time

    from benchmarks.phases import phase_table, read_trace

    proj, _ = repro
    first = json.loads(proj.joinpath(".first-digests.json").read_text())
    clone = make_project(tmp_path / "clone")
    trace = tmp_path / "trace.jsonl"
    t0 = time.time()
    proc = run(["dvc", "repro"], clone, DLBASICS_TRACE=str(trace))
    t1 = time.time()
    assert reproducible_digests(clone) == first
    assert any(k.startswith("data/models/") and k.endswith("model.pt") for k in first)
    records = read_trace(trace)
    stages = sorted((r for r in records if r.get("role") == "stage"), key=lambda r: r["start"])
    assert [r["stage"] for r in stages] == [
        line.split("'")[1] for line in proc.stdout.splitlines()
        if line.startswith("Running stage '")]
    ends = {r["proc"]: r["end"] for r in records if "end" in r}
    for a, b in zip(stages, stages[1:]):
        assert t0 - 0.05 <= a["start"] <= a["main"] <= ends[a["proc"]] <= b["start"] <= t1
    fits = {r["span"].split(":")[0] for r in records if r.get("span", "").endswith(": fit")}
    evaluated = {r["span"].split(":")[0] for r in records
                 if r.get("span", "").endswith(": evaluate")}
    assert fits == set(VARIANTS) and evaluated >= fits | {"select@tiny"}
    table = phase_table(records, t0, t1)
    assert 0 < table["compute_s"] and table["path_s"] == pytest.approx(t1 - t0)
    assert {r["who"] for r in table["rows"]} >= {"dvc", *ALL_STAGES, "train evaluator"}


def test_figures_are_logged_once_and_the_run_keeps_its_status(tmp_path):
    """log_evaluation's figure logging, without a repro: a figure the run holds is not logged
    again (a re-evaluation adds only what is missing), and the run stays FINISHED."""
    from dlbasics.report.figures import confusion_png, curves_png
    from dlbasics.tracking.model_logging import _log_figures

    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.5 + e / 10}
               for e in (1, 2)]
    figs = {"curves.png": curves_png("v", history),
            "confusion.png": confusion_png([[3, 1], [0, 4]], ["a", "b"], "v")}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in figs.values())

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id, status="FINISHED")
    _log_figures(client, run_id, {"curves.png": figs["curves.png"]})
    _log_figures(client, run_id, {"curves.png": b"not again", **figs})
    logged = client.list_artifacts(run_id, "figures")
    assert sorted(Path(a.path).name for a in logged) == ["confusion.png", "curves.png"]
    got = Path(client.download_artifacts(run_id, "figures", str(tmp_path / "got")))
    assert {p.name: p.read_bytes() for p in got.iterdir()} == figs
    assert client.get_run(run_id).info.status == "FINISHED"


# docs/compare.md: what an experiment changed, in a table that fits a 200-column terminal.
EXP_SHOW = ["dvc", "exp", "show", "--no-pager", "--only-changed", "--drop", "Created|/"]


def test_an_experiment_reads_in_dvc_exp_show_and_dvc_metrics_diff(repro):
    proj, _ = repro
    # As a user does after `make pipeline`: the results committed (scores.json, dvc.lock).
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-q", "--allow-empty", "-m", "results"], proj)
    run(["dvc", "exp", "run", "-S", "train.mlp.optimizer.lr=0.05"], proj)
    table = run(EXP_SHOW, proj, COLUMNS="200").stdout
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 200, table
    header = lines[1].split()
    assert "train.mlp.optimizer.lr" in header and "mlp.test_accuracy" in header, table
    # Only what changed: the untouched variants' scores and params are not columns.
    assert not any(h.startswith(("linreg", "softmax", "train.linreg", "train.softmax"))
                   for h in header), table
    exp_row = next(line for line in lines if "[" in line and "]" in line)
    assert "0.05" in exp_row.split()
    # `dvc metrics diff` and `dvc params diff` as the docs show them: rows of what changed.
    metrics = run(["dvc", "metrics", "diff"], proj).stdout.splitlines()
    changed = {line.split()[1] for line in metrics[1:] if line.strip()}
    assert "mlp.test_accuracy" in changed
    assert changed <= {"mlp.test_accuracy", "select@tiny.test_accuracy"}, metrics
    params = run(["dvc", "params", "diff"], proj).stdout.splitlines()
    rows = [line.split() for line in params[1:] if line.strip()]
    assert [(r[1], r[-1]) for r in rows] == [("train.mlp.optimizer.lr", "0.05")], params


def test_make_compare_as_written_lists_the_experiment_s_change(repro):
    """docs/compare.md's `make compare` (base main): after the experiment above, applied to the
    workspace, the pipeline has nothing to re-run and compare.md names the changed parameter
    and the changed variant's scores; the untouched variants are one summary line."""
    proj, _ = repro
    proc = run(["make", "-s", "-o", ".venv/.installed", "compare"], proj)
    assert "Running stage" not in proc.stdout  # the workspace was up to date
    report = (proj / "compare.md").read_text()
    assert "train.mlp.optimizer.lr" in report
    assert "mlp" in report.split("## Metrics", 1)[1]
    assert (proj / "compare" / "mlp.png").is_file()
