"""What a person sees: a quiet log and a live bar while variants train, MLflow runs whose
duration is their own work, and an MLflow UI that opens the experiment on its runs table.

In process, on a real sqlite MLflow store; the browser test drives a real `mlflow ui`."""

from __future__ import annotations

import copy
import importlib.util
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

from dlbasics.config.loading import load_params
from dlbasics.data.prepared import prepare_all
from dlbasics.data.sources import generate_all
from dlbasics.learn.training import VERBOSE_ENV, Progress
from dlbasics.pipeline.train import train_all
from dlbasics.tracking import runs as tracking

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "params.yaml").read_text())
EPOCHS = 4
EPOCH_LINE = re.compile(r"^train \S+ epoch \d+/\d+ ", re.M)
EXPERIMENT = BASE["tracking"]["experiment"]


def small() -> dict:
    """Two linear variants of the synthetic set, EPOCHS epochs each."""
    params = copy.deepcopy(BASE)
    linreg = {**params["train"]["linreg"], "epochs": EPOCHS}
    params["train"] = {"a": copy.deepcopy(linreg), "b": {**copy.deepcopy(linreg), "batch_size": 20}}
    params["data"] = {"synthetic_linear": params["data"]["synthetic_linear"]}
    params["prepare"] = {"synthetic_linear": params["prepare"]["synthetic_linear"]}
    params.pop("select", None)
    params["lessons"] = {}
    params["report"] = {"notes": {}}
    return params


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    (root / "params.yaml").write_text(yaml.safe_dump(small(), sort_keys=False))
    params = load_params(root / "params.yaml")
    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    return root / "prepared"


@pytest.fixture
def proj(tmp_path, monkeypatch) -> Path:
    """A directory with params.yaml and its own sqlite store; no verbose switch inherited."""
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", VERBOSE_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small(), sort_keys=False))
    return tmp_path


def _stage_main(script: str):
    spec = importlib.util.spec_from_file_location(f"stage_{script}", REPO / "stages" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _train_stage(proj: Path, prepared: Path, *extra: str) -> None:
    _stage_main("train.py")(["--params", str(proj / "params.yaml"), "--data", str(prepared),
                             "--out", str(proj / "models"), "--variant", "a", *extra])


def _lines_of(out: str, variant: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(f"train {variant}")]


# ----------------------------------------------------------------------------- (a) the log


def test_a_log_has_one_line_per_variant_and_no_epoch_lines(proj, prepared, capsys):
    assert not sys.stderr.isatty()  # pytest's capture: what `dvc repro > log` gives
    _train_stage(proj, prepared)
    out = capsys.readouterr().out
    assert not EPOCH_LINE.search(out), out
    lines = _lines_of(out, "a")
    assert len(lines) == 1, out
    # The one line says it is done, what it took, and where training ended.
    assert re.match(rf"^train a: trained, {EPOCHS} epochs in \d+\.\d s: train_loss=\S+ "
                    r"val_loss=\S+ test_loss=\S+$", lines[0]), lines[0]
    assert "train: 1 trained, 0 up to date, 0 evaluated again" in out


def test_a_verbose_flag_brings_back_one_line_per_epoch(proj, prepared, capsys, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "0")  # restored after the test: --verbose sets it
    _train_stage(proj, prepared, "--verbose")
    out = capsys.readouterr().out
    epochs = [int(m) for m in re.findall(r"^train a epoch (\d+)/\d+ ", out, re.M)]
    assert epochs == list(range(1, EPOCHS + 1)), out
    assert len([ln for ln in _lines_of(out, "a") if ": trained, " in ln]) == 1


def test_a_verbose_environment_variable(proj, prepared, capsys, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    _train_stage(proj, prepared)
    assert len(EPOCH_LINE.findall(capsys.readouterr().out)) == EPOCHS


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_a_bar_that_ends_in_one_line(proj, prepared, capsys, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _train_stage(proj, prepared)
    out = capsys.readouterr().out
    assert not EPOCH_LINE.search(out), out
    assert len(_lines_of(out, "a")) == 1 and ": trained, " in _lines_of(out, "a")[0], out
    drawn = terminal.getvalue()
    # The bar was drawn (tqdm may skip redrawing the last step: its final state is the
    # results line above, not a 100% frame).
    assert re.search(rf"\rtrain a: +\d+%\|.*\| \d/{EPOCHS} ", drawn), drawn[-2000:]


def test_a_long_fit_in_a_log_says_where_it_is(monkeypatch, capsys):
    """Off a terminal a fit is silent until `every` seconds pass; then one line, not one per
    epoch (every=0 here: each epoch is past due)."""
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    quiet, due = Progress("train x", 3, every=3600.0), Progress("train y", 3, every=0.0)
    for epoch in (1, 2, 3):
        for p in (quiet, due):
            p.epoch({"epoch": epoch, "train_loss": 1.0 / epoch}, 3)
    assert quiet.close().startswith("3 epochs in ")
    out = capsys.readouterr().out.splitlines()
    assert [ln.split(" after ")[0] for ln in out] == [f"train y: {k}/3 epochs" for k in (1, 2, 3)]
    assert not any(ln.startswith("train x") for ln in out)


# ----------------------------------------------------------------------------- (b) the experiment


def test_b_setup_tags_the_experiment_as_model_training(proj):
    exp_id = tracking.setup(EXPERIMENT)
    exp = mlflow.MlflowClient().get_experiment(exp_id)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert tracking.ui_address(EXPERIMENT, "http://127.0.0.1:5000/") == (
        f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
        f"&viewStateShareKey={tracking.VIEW_KEY}")


def test_b_an_existing_experiment_gets_the_tag_once(proj):
    client = mlflow.MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    old = client.create_experiment(EXPERIMENT)  # as an earlier version of the project made it
    other = client.create_experiment("chosen", tags={tracking.EXPERIMENT_KIND_TAG:
                                                     "genai_development"})
    assert tracking.setup(EXPERIMENT) == old
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == \
        "custom_model_development"
    tracking.setup("chosen")  # a kind someone chose in the UI is theirs
    assert client.get_experiment(other).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"


# ----------------------------------------------------------------------------- (c) durations


def test_c_a_run_lasts_as_long_as_its_own_training(proj, prepared, capsys):
    """Each run ends before the next variant's run starts, and before its evaluation (run by the
    evaluation process, which logs the model) begins: a run left open across the evaluation,
    its own or another variant's, fails one of the orderings."""
    params = load_params(proj / "params.yaml")
    t0 = int(time.time() * 1000)
    assert train_all(params, prepared, proj / "models") == {"a": "trained", "b": "trained"}
    t1 = int(time.time() * 1000)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    assert [r.info.run_name for r in runs] == ["a", "b"]
    for run, after in zip(runs, [*runs[1:], None]):
        start, end = run.info.start_time, run.info.end_time
        assert run.info.status == "FINISHED"
        assert t0 <= start <= end <= t1
        assert end - start < t1 - start  # the stage's wall time after the run started
        if after is not None:
            assert end <= after.info.start_time, (run.info.run_name, "open across the next")
        # The evaluation came after the run ended: the model it logged, its test metrics.
        (model,) = run.outputs.model_outputs
        assert client.get_logged_model(model.model_id).creation_timestamp >= end
        assert "test_loss" in run.data.metrics
    capsys.readouterr()


# ----------------------------------------------------------------------------- (d) the UI


def _wait_for_health(port: int) -> None:
    """Until the UI on 127.0.0.1:port answers /health (at most 60 s)."""
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except OSError:
            time.sleep(0.25)


def _chromium(p):
    return p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium on PATH: the browser "
                    "test drives Debian's chromium package (CI installs it with apt)")
def test_d_the_address_make_ui_prints_opens_the_runs_table(proj):
    """`make ui`'s two commands against a store holding one run: the printed address opens
    the runs table with the run in it, not MLflow's GenAI overview."""
    from playwright.sync_api import sync_playwright

    with tracking.run(EXPERIMENT, "linreg_demo", {"variant": "linreg_demo"}):
        mlflow.log_metric("test_loss", 0.5)
    port, env = _free_port(), {**os.environ, "PYTHONPATH": str(REPO / "src")}
    printed = subprocess.run(
        [sys.executable, "-m", "dlbasics.tracking.runs", "--ui-address", str(proj / "params.yaml"),
         f"http://127.0.0.1:{port}"], cwd=proj, env=env, capture_output=True, text=True,
        check=True).stdout
    address = re.search(r"http://\S+", printed).group(0)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri",
         os.environ["MLFLOW_TRACKING_URI"], "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], cwd=proj, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        _wait_for_health(port)
        with sync_playwright() as p:
            browser = _chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(address)
                page.get_by_role("link", name="linreg_demo").wait_for(timeout=60_000)
                assert page.get_by_role("heading", name="Runs").is_visible()
                assert "/runs" in page.url and "/overview" not in page.url
                body = page.inner_text("body")
                assert "Token Usage" not in body and "1 matching run" in body
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_e_make_ui_as_written_shows_each_run_s_score_without_a_click(tmp_path):
    """`make ui` in a fresh clone, with its default store (mlflow.db beside dvc.yaml): the
    address it prints opens the runs table with the test metric and the settings as columns,
    without the Columns menu."""
    from conftest import make_project, tool_env
    from playwright.sync_api import sync_playwright

    clone = make_project(tmp_path / "clone")
    subprocess.run([sys.executable, "-c", (
        "import mlflow\nfrom dlbasics.tracking import runs\n"
        "with runs.run('dlbasics', 'mlp', {'variant': 'mlp', 'dataset': 'images'}):\n"
        "    mlflow.log_params({'optimizer.name': 'sgd', 'optimizer.lr': 0.1})\n"
        "    mlflow.log_metric('test_accuracy', 0.9751)\n")],
        cwd=clone, env=tool_env(PYTHONPATH=str(clone / "src")), check=True)
    assert (clone / "mlflow.db").is_file()
    port = _free_port()
    # -o: the checkout's virtual environment is used as it is, never rebuilt by the test.
    ui = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "ui", f"PORT={port}"],
                          cwd=clone, env=tool_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        address = re.search(r"http://\S+", ui.stdout.readline()).group(0)
        assert "viewStateShareKey=" in address
        _wait_for_health(port)
        with sync_playwright() as p:
            browser = _chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(address)
                page.get_by_role("link", name="mlp").wait_for(timeout=60_000)
                page.get_by_role("columnheader", name="test_accuracy").first.wait_for(
                    timeout=30_000)
                headers = set(page.locator("[role=columnheader]").all_inner_texts())
                assert {"test_accuracy", "optimizer.lr", "optimizer.name"} <= headers, headers
                assert "0.9751" in page.inner_text("body")
                # The control: the same table without the shared view, in a fresh profile,
                # has no metric column until one is ticked under Columns.
                plain = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
                plain.goto(address.replace(f"&viewStateShareKey={tracking.VIEW_KEY}", ""))
                plain.get_by_role("link", name="mlp").wait_for(timeout=60_000)
                assert "test_accuracy" not in plain.locator("[role=columnheader]").all_inner_texts()
            finally:
                browser.close()
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)
