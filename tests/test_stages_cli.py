"""The stage scripts as a user runs them: a bad params file stops a stage with exit code 2,
exactly one line on stderr naming the problem, and no output written."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "stages"
EXIT_CONFIG = 2  # dlbasics.cli.EXIT_CONFIG, restated: the number is the contract with DVC/users


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    env["MLFLOW_TRACKING_URI"] = (cwd / "mlruns").as_uri()  # never the repository's store
    return env


def _train_args(variant: str) -> list[str]:
    return ["--params", "params.yaml", "--variant", variant, "--data", "data/prepared",
            "--out", "data/models"]


GENERATE_ARGS = ["--params", "params.yaml", "--out", "data/raw"]


def _cases(base: dict) -> dict[str, tuple[str, list[str], dict | str]]:
    """name -> (stage script, its arguments, the params file's content)."""
    bad_lr = copy.deepcopy(base)
    bad_lr["train"]["mlp"]["optimizer"]["lr"] = -0.1
    cuda = copy.deepcopy(base)
    cuda["runtime"]["device"] = "cuda"
    cases = {
        "train_bad_lr": ("train.py", _train_args("mlp"), bad_lr),
        "generate_invalid_yaml": (
            "generate.py", GENERATE_ARGS,
            yaml.safe_dump(base, sort_keys=False) + "data: [unclosed\n",
        ),
    }
    if not torch.cuda.is_available():
        cases["train_cuda_without_gpu"] = ("train.py", _train_args("linreg"), cuda)
    return cases


@dataclass
class Outcome:
    cwd: Path
    returncode: int
    stderr: str


@pytest.fixture(scope="module")
def runs(base, tmp_path_factory) -> dict[str, Outcome]:
    """Every case's stage run as a subprocess, all at once (each spends ~4 s importing torch)."""
    procs = {}
    for name, (script, args, params) in _cases(base).items():
        cwd = tmp_path_factory.mktemp(name)
        text = params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False)
        (cwd / "params.yaml").write_text(text)
        procs[name] = (cwd, subprocess.Popen(
            [sys.executable, str(STAGES / script), *args], cwd=cwd, env=_env(cwd),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    out = {}
    for name, (cwd, proc) in procs.items():
        _, err = proc.communicate(timeout=180)
        out[name] = Outcome(cwd, proc.returncode, err)
    return out


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _nothing_written(cwd: Path) -> None:
    assert sorted(p.name for p in cwd.iterdir()) == ["params.yaml"]  # no --out, history, mlruns


def test_train_with_a_bad_value_exits_2_with_one_line(runs):
    r = runs["train_bad_lr"]
    assert r.returncode == EXIT_CONFIG, r.stderr
    line = _one_line(r.stderr)
    assert "params.yaml: train.mlp.optimizer.lr:" in line and "-0.1" in line
    assert not (r.cwd / "data" / "models" / "mlp").exists()
    _nothing_written(r.cwd)


def _load_stage(script: str):
    """A stage script as a module, to call its main() in this process (torch already imported)."""
    spec = importlib.util.spec_from_file_location(f"stage_{script[:-3]}", STAGES / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_unknown_variant_exits_2_in_process(base, tmp_path, monkeypatch, capsys):
    from dlbasics.cli import run_stage

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    code = run_stage(_load_stage("train.py").main, _train_args("nosuch"))
    assert code == EXIT_CONFIG
    line = _one_line(capsys.readouterr().err)
    assert "train.nosuch" in line and "mlp" in line
    _nothing_written(tmp_path)


def test_generate_with_invalid_yaml_exits_2(runs, base):
    r = runs["generate_invalid_yaml"]
    assert r.returncode == EXIT_CONFIG, r.stderr
    line = _one_line(r.stderr)
    assert "params.yaml" in line and "invalid YAML" in line
    # The unclosed bracket is on the file's last line; PyYAML names it or the end after it.
    n_lines = len((r.cwd / "params.yaml").read_text().splitlines())
    assert f"line {n_lines}," in line or f"line {n_lines + 1}," in line, line
    assert not (r.cwd / "data" / "raw").exists()
    _nothing_written(r.cwd)


@pytest.mark.skipif(
    torch.cuda.is_available(),
    reason="meaningful only without a CUDA device: here runtime.device: cuda is valid "
           "(test_train_on_cuda_with_a_gpu_trains_there covers this machine)",
)
def test_train_on_cuda_without_a_gpu_exits_2(runs):
    r = runs["train_cuda_without_gpu"]
    assert r.returncode == EXIT_CONFIG, r.stderr
    line = _one_line(r.stderr)
    assert "runtime.device" in line and "params.yaml" in line
    assert not (r.cwd / "data" / "models" / "linreg").exists()
    _nothing_written(r.cwd)


def _train_stage_on(device: str, base: dict, cwd: Path) -> tuple[dict, Path, str]:
    """The train stage as a subprocess with runtime.device `device`, on the softmax variant
    (2 epochs) over the digits set prepared here in-process.
    -> (the params written, the stage's model directory, the MLflow tracking URI it used)"""
    from dlbasics.config.loading import parse_params
    from dlbasics.data.prepared import prepare_all
    from dlbasics.data.sources import generate_all

    params = copy.deepcopy(base)
    params["runtime"]["device"] = device
    params["data"] = {"images": base["data"]["images"]}
    params["prepare"] = {"images": base["prepare"]["images"]}
    params["train"] = {"softmax": {**base["train"]["softmax"], "epochs": 2}}
    params["report"] = {"notes": {}}
    params.pop("select", None)  # about the mlp variant, not trained here
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    parsed = parse_params(params)
    generate_all(parsed, cwd / "data/raw")
    prepare_all(parsed, cwd / "data/raw", cwd / "data/prepared")
    env = _env(cwd)
    env["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{cwd / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, str(STAGES / "train.py"), *_train_args("softmax")], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return params, cwd / "data/models/softmax", uri


@pytest.mark.gpu
def test_train_on_cuda_with_a_gpu_trains_there(base, tmp_path):
    # The converse of the test above: with a GPU, runtime.device: cuda is valid, the stage
    # resolves it to the GPU (the MLflow run's device tag) and the weights it writes are a CPU
    # fit's to float tolerance (same initial weights and batch order, drawn on the CPU).
    import mlflow

    from dlbasics.config.loading import parse_params
    from dlbasics.pipeline.variant import fit_variant

    params, model_dir, uri = _train_stage_on("cuda", base, tmp_path)
    info = json.loads((model_dir / "model.json").read_text())
    assert info["variant"] == "softmax" and len(info["final"]) > 1
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(params["tracking"]["experiment"])
    runs = client.search_runs([exp.experiment_id], "tags.variant = 'softmax'")
    assert [r.data.tags["device"] for r in runs] == ["cuda"]

    on_gpu = torch.load(model_dir / "model.pt", weights_only=True)
    cpu_params = parse_params({**params, "runtime": {**params["runtime"], "device": "cpu"}})
    on_cpu, history, *_ = fit_variant(cpu_params, "softmax", tmp_path / "data/prepared/images",
                                      torch.device("cpu"), with_cv=False)
    assert list(on_gpu) == list(on_cpu.state_dict())
    for k, v in on_cpu.state_dict().items():
        assert on_gpu[k].device.type == "cpu"  # saved portable
        torch.testing.assert_close(on_gpu[k], v, rtol=1e-3, atol=1e-4)
    assert info["final"]["train_loss"] == pytest.approx(history[-1]["train_loss"], rel=1e-4)
