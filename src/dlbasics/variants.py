"""The train stage: every variant of params.train trained, evaluated beside its weights and
tracked, skipping what is up to date.

What makes a variant retrain is defined once, here (training_inputs): its own settings as DVC
sees them (less the report-only keys), the seed, its prepared dataset's digest, the code its
training executes (the import closure of dlbasics.experiment) and the numeric stack's versions.
Not the runtime settings (device, threads) and not report-only keys. What makes a trained
variant re-evaluated without retraining (evaluation_inputs): its training inputs, the
`evaluate` settings and the code evaluation executes (the closure of dlbasics.evaluation).
Both code sets are parts of what dvc.yaml declares for the stage (tests/test_stage_deps.py), so
DVC and this record watch the same files.

The record (`data/models/.trained.json`) lives inside the stage's DVC output, so it travels
with the weights through the DVC cache and remotes (`dvc exp run --temp`, CI's `dvc pull`).
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

from dlbasics.codedeps import code_digest
from dlbasics.config import Params
from dlbasics.io import dumps_json, sha256_bytes, sha256_file, write_json_atomic

TRAINING_CODE = ("dlbasics.experiment",)
EVALUATION_CODE = ("dlbasics.evaluation",)
RECORD = ".trained.json"


def _versions() -> dict[str, str]:
    import numpy as np
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


def training_inputs(params: Params, name: str, dataset_sha256: str, code_sha256: str,
                    versions: dict[str, str]) -> dict[str, Any]:
    """Everything variant `name`'s trained files depend on. The variant's name is one of them:
    its dropout masks and its MLflow run derive from it."""
    return {"variant": name, "seed": params.seed,
            "spec": params.train[name].training_settings(),
            "dataset_sha256": dataset_sha256, "code_sha256": code_sha256, "versions": versions}


def evaluation_inputs(params: Params, training_fp: str, code_sha256: str) -> dict[str, Any]:
    """Everything a trained variant's evaluation files depend on besides its trained files."""
    return {"training": training_fp, "evaluate": params.evaluate.model_dump(mode="json"),
            "code_sha256": code_sha256}


def fingerprint(inputs: dict[str, Any]) -> str:
    return sha256_bytes(dumps_json(inputs).encode())


def record_path(models_root: Path) -> Path:
    return models_root / RECORD


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def output_digests(model_dir: Path) -> dict[str, str] | None:
    """sha256 of every file a variant's training and evaluation wrote (all in its model
    directory), None when there is none."""
    if not model_dir.is_dir():
        return None
    return {p.relative_to(model_dir).as_posix(): sha256_file(p)
            for p in sorted(model_dir.rglob("*")) if p.is_file()}


class Evaluator:
    """Evaluation (dlbasics.evaluation.evaluate_model) in a second process, spawned when the
    first variant needs work: its imports (torch, scikit-learn, matplotlib: about 3.5 s of one
    core) overlap this process's imports and training on the second core. Jobs are done in the
    order submitted; with a run id, the worker also logs the model, the metrics and the figures
    to that MLflow run, so this process trains the next variant meanwhile. The results are the
    same bytes as in process: the worker configures the same runtime (threads) before anything
    else."""

    def __init__(self, params: Params):
        import multiprocessing

        # spawn, not fork: a forked copy of a process that has started torch's thread pools
        # can hang. Daemonic: it never outlives this process.
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(child, params), daemon=True,
                                 name="dlbasics-evaluate")
        self._proc.start()
        child.close()
        self.pending: list[str] = []  # names of the jobs submitted and not yet answered

    def submit(self, params: Params, name: str, prepared_root: Path, model_dir: Path,
               run_id: str | None = None) -> None:
        """Start evaluating the model in model_dir (into model_dir/eval/); with `run_id`, log
        the model and its evaluation to that MLflow run too."""
        self._conn.send((params, name, prepared_root, model_dir, run_id))
        self.pending.append(name)

    def ready(self) -> bool:
        """Whether the oldest pending job has its answer (never waits)."""
        return bool(self.pending) and self._conn.poll()

    def result(self) -> tuple[str, dict[str, Any]]:
        """(name, evaluate_model's result) of the oldest pending job (waits for it); its
        error, raised here, when it failed."""
        try:
            ok, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the evaluation process exited ({self._proc.exitcode})") from None
        name = self.pending.pop(0)
        if not ok:
            raise value
        return name, value

    def close(self) -> None:
        """Stop the worker (idle, or abandoned after an error): nothing of it is waited for."""
        self._proc.terminate()
        self._proc.join()
        self._conn.close()


def _worker(conn, params: Params) -> None:
    import pickle
    import signal

    from dlbasics.runtime import configure

    # Ctrl-C reaches the whole process group: the stage process decides, and stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure(params.runtime)
    import dlbasics.metrics  # noqa: F401 - scikit-learn, before the first job
    from dlbasics import figures
    from dlbasics.evaluation import evaluate_model, log_evaluation, write_evaluation
    from dlbasics.registry import register

    figures.pyplot()
    # MLflow and the store too, before the first job: a one-variant edit waits for this
    # process's logging, so its imports (about 2 s) overlap the stage process's training.
    import mlflow
    import mlflow.pytorch  # noqa: F401 - what log_model needs, imported now

    from dlbasics import tracking

    # The stage's store and experiment: a model logged by run id alone would otherwise be
    # filed under the default experiment. A store that cannot be used is the answer to every
    # job that logs (the stage process says it in one line), not a traceback here.
    try:
        mlflow.set_experiment(experiment_id=tracking.setup(params.tracking.experiment))
        unusable = None
    except Exception as exc:  # noqa: BLE001 - handed to the stage process with the first job
        unusable = exc
    while True:
        try:
            job_params, name, prepared_root, model_dir, run_id = conn.recv()
        except EOFError:
            return
        try:
            if unusable is not None and run_id is not None:
                raise unusable
            ev = evaluate_model(job_params, name, prepared_root, model_dir)
            write_evaluation(model_dir, ev)
            if run_id is not None:
                log_evaluation(job_params, name, run_id, model_dir, prepared_root, ev)
                register(job_params, name, run_id, model_dir, prepared_root)
            reply = (True, ev)
        except Exception as exc:  # noqa: BLE001 - handed to the stage process, which raises it
            try:
                pickle.dumps(exc)
                reply = (False, exc)
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                reply = (False, RuntimeError(f"{type(exc).__name__}: {exc}"))
        conn.send(reply)


def _reevaluate(params: Params, name: str, prepared_root: Path, model_dir: Path,
                evaluator: Evaluator) -> str | None:
    """Submit a trained variant's evaluation again (new `evaluate` settings or evaluation
    code), to be added to the MLflow run that trained its weights; the run's id, or None (with
    a line saying so) when no run holds them."""
    from dlbasics import tracking
    from dlbasics.evaluation import read_model_info

    sha = read_model_info(model_dir)["model_sha256"]
    run = tracking.find_run(params.tracking.experiment, {"variant": name, "model_sha256": sha})
    if run is None:
        print(f"train {name}: no MLflow run holds its weights; its evaluation is only in "
              f"{model_dir}")
    evaluator.submit(params, name, prepared_root, model_dir, run.info.run_id if run else None)
    return run.info.run_id if run else None


def train_all(
    params: Params, prepared_root: Path, models_root: Path, only: list[str] | None = None,
) -> dict[str, str]:
    """Train and evaluate every variant of params.train (or those in `only`) into
    models_root/<variant>/ (weights, model.json, history.json, eval/); returns
    variant -> "trained", "evaluated" or "up to date".

    A variant whose training fingerprint and files match the record is not trained again; if
    its evaluation fingerprint matches too, it is not evaluated again either. The record is
    written after a variant's files are complete and names their digests, so a kill at any
    point leaves nothing that passes for up to date. Outputs of variants no longer in params
    are removed (not with `only`). The first failure stops the stage; what finished before it
    stays recorded.
    """
    from dlbasics.data import load_prepared
    from dlbasics.runtime import configure

    configure(params.runtime)  # a device this machine lacks is a params error, before any work
    names = list(params.train) if only is None else only
    for name in names:
        if name not in params.train:
            raise params.error(f"train.{name}", f"no such variant; have {sorted(params.train)}")
    training_code, evaluation_code = code_digest(*TRAINING_CODE), code_digest(*EVALUATION_CODE)
    versions = _versions()
    rec_path = record_path(models_root)
    record = _read_record(rec_path)
    status: dict[str, str] = {}
    evaluator: Evaluator | None = None  # started by the first variant with work to do
    fps: dict[str, tuple[str, str]] = {}
    run_ids: dict[str, str] = {}  # variant -> the MLflow run its evaluation goes to

    def settle(wait: bool) -> None:
        # Record each variant whose evaluation came back (oldest first): only then are its
        # files complete. A failed evaluation raises here and stops the stage.
        while evaluator is not None and evaluator.pending and (wait or evaluator.ready()):
            oldest = evaluator.pending[0]
            try:
                done, _ = evaluator.result()
            except Exception as exc:
                _mark_failed(run_ids.get(oldest), exc)
                raise
            tfp, efp = fps[done]
            record[done] = {"training": tfp, "evaluation": efp,
                            "files": output_digests(models_root / done)}
            write_json_atomic(rec_path, record)
            print(f"train {done}: " + ("trained" if status[done] == "trained" else
                                       "evaluated again (evaluation settings or code changed)"))

    try:
        for name in names:
            settle(wait=False)
            spec = params.train[name]
            digest = load_prepared(prepared_root / spec.dataset, splits=()).digest  # manifest
            tfp = fingerprint(training_inputs(params, name, digest, training_code, versions))
            efp = fingerprint(evaluation_inputs(params, tfp, evaluation_code))
            fps[name] = (tfp, efp)
            model_dir = models_root / name
            seen = record.get(name) if isinstance(record.get(name), dict) else {}
            files = output_digests(model_dir)
            if files is not None and seen.get("training") == tfp and seen.get("files") == files:
                if seen.get("evaluation") == efp:
                    status[name] = "up to date"
                    print(f"train {name}: up to date (same settings, data and code as its files)")
                    continue
                evaluator = evaluator or Evaluator(params)
                status[name] = "evaluated"
                run_id = _reevaluate(params, name, prepared_root, model_dir, evaluator)
                if run_id is not None:
                    run_ids[name] = run_id
            else:
                evaluator = evaluator or Evaluator(params)
                status[name] = "trained"
                run_ids[name] = _train_and_evaluate(params, name, prepared_root, model_dir,
                                                    evaluator)
        settle(wait=True)
    except Exception:
        # What finished before the failure stays recorded (its evaluation is waited for).
        try:
            settle(wait=True)
        except Exception:  # noqa: BLE001 - the first failure is the one reported
            pass
        raise
    finally:
        if evaluator is not None:
            evaluator.close()
    if only is None:
        for stale in sorted(set(record) - set(params.train)):
            record.pop(stale)
        for path in models_root.glob("*"):
            if path.name not in params.train and not path.name.startswith("."):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        write_json_atomic(rec_path, record)
    return status


def _train_and_evaluate(params: Params, name: str, prepared_root: Path, model_dir: Path,
                        evaluator: Evaluator) -> str:
    """Train variant `name` and hand its evaluation, and the logging of its model, metrics and
    figures to its MLflow run, to the evaluation process (train_all records it once done).
    Returns the run's id."""
    from dlbasics.experiment import train_variant

    ids = []

    def finish(run_id: str) -> None:
        evaluator.submit(params, name, prepared_root, model_dir, run_id)
        ids.append(run_id)

    spec = params.train[name]
    train_variant(params, name, prepared_root / spec.dataset, model_dir, finish=finish)
    return ids[0]


def _mark_failed(run_id: str | None, exc: BaseException) -> None:
    """A run whose evaluation failed after it ended ends FAILED, with the reason as a tag."""
    if run_id is None:
        return
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "failure", f"evaluation: {type(exc).__name__}: {exc}"[:5000])
    client.set_terminated(run_id, "FAILED")
