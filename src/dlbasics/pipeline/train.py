"""The train stage: every variant of params.train trained, evaluated beside its weights and
tracked, skipping what is up to date (dlbasics.dvc.changes says what is)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dlbasics import trace
from dlbasics.config.params import Params
from dlbasics.dvc import changes
from dlbasics.io import write_json_atomic


def train_all(
    params: Params, prepared_root: Path, models_root: Path, only: list[str] | None = None,
    evaluator: Evaluator | None = None,
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

    `evaluator`: one started by the caller before its own imports (the stage script does, so
    that the worker's imports overlap them), used and closed here; else one is started when the
    first variant needs work.
    """
    try:
        from dlbasics.runtime import configure

        configure(params.runtime)  # a device this machine lacks is a params error, first
        names = list(params.train) if only is None else only
        for name in names:
            if name not in params.train:
                raise params.error(f"train.{name}",
                                   f"no such variant; have {sorted(params.train)}")
    except BaseException:
        if evaluator is not None:
            evaluator.close()
        raise
    stage = _TrainStage(params, prepared_root, models_root, evaluator)
    try:
        for name in names:
            stage.settle(wait=False)
            stage.run(name)
        stage.settle(wait=True)
    except Exception:
        # What finished before the failure stays recorded (its evaluation is waited for).
        try:
            stage.settle(wait=True)
        except Exception:  # noqa: BLE001 - the first failure is the one reported
            pass
        raise
    finally:
        stage.close()
    if only is None:
        stage.prune()
    return stage.status


class _TrainStage:
    """One train stage run: the change record, the evaluation process, each variant's state."""

    def __init__(self, params: Params, prepared_root: Path, models_root: Path,
                 evaluator: Evaluator | None = None):
        self.params, self.prepared_root, self.models_root = params, prepared_root, models_root
        self.codes = changes.code_digests()
        self.versions = changes.versions()
        self.rec_path = changes.record_path(models_root)
        self.record = changes.read_record(self.rec_path)
        self.status: dict[str, str] = {}
        # Started by the caller, or by the first variant with work to do.
        self.evaluator: Evaluator | None = evaluator
        self.fps: dict[str, tuple[str, str]] = {}
        self.run_ids: dict[str, str] = {}  # variant -> the MLflow run its evaluation goes to
        self.results: dict[str, str] = {}  # variant -> its training's line of results

    def run(self, name: str) -> None:
        """Train, re-evaluate or skip variant `name`, as its record and files say."""
        from dlbasics.data.prepared import load_prepared

        params = self.params
        digest = load_prepared(self.prepared_root / params.train[name].dataset,
                               splits=()).digest  # the manifest only
        tfp = changes.fingerprint(changes.training_inputs(params, name, digest, self.codes[0],
                                                          self.versions))
        efp = changes.fingerprint(changes.evaluation_inputs(params, tfp, self.codes[1]))
        self.fps[name] = (tfp, efp)
        model_dir = self.models_root / name
        seen = self.record.get(name) if isinstance(self.record.get(name), dict) else {}
        files = changes.output_digests(model_dir)
        if files is not None and seen.get("training") == tfp and seen.get("files") == files:
            if seen.get("evaluation") == efp:
                self.status[name] = "up to date"
                print(f"train {name}: up to date (same settings, data and code as its files)")
                return
            self.evaluator = self.evaluator or Evaluator(params)
            self.status[name] = "evaluated"
            run_id = _reevaluate(params, name, self.prepared_root, model_dir, self.evaluator)
            if run_id is not None:
                self.run_ids[name] = run_id
        else:
            self.evaluator = self.evaluator or Evaluator(params)
            self.status[name] = "trained"
            self.run_ids[name], self.results[name] = _train_and_evaluate(
                params, name, self.prepared_root, model_dir, self.evaluator)

    def settle(self, wait: bool) -> None:
        """Record each variant whose evaluation came back (oldest first): only then are its
        files complete, and it says so in one line (with its training's results). A failed
        evaluation raises here and stops the stage."""
        ev = self.evaluator
        while ev is not None and ev.pending and (wait or ev.ready()):
            oldest = ev.pending[0]
            try:
                with trace.span(f"{oldest}: wait for its evaluation", "wait"):
                    done, _ = ev.result()
            except Exception as exc:
                _mark_failed(self.run_ids.get(oldest), exc)
                raise
            tfp, efp = self.fps[done]
            self.record[done] = {"training": tfp, "evaluation": efp,
                                 "files": changes.output_digests(self.models_root / done)}
            write_json_atomic(self.rec_path, self.record)
            print(f"train {done}: " + (f"trained, {self.results[done]}"
                                       if self.status[done] == "trained" else
                                       "evaluated again (evaluation settings or code changed)"),
                  flush=True)

    def close(self) -> None:
        if self.evaluator is not None:
            self.evaluator.close()

    def prune(self) -> None:
        """Forget and remove the variants no longer in params."""
        for stale in sorted(set(self.record) - set(self.params.train)):
            self.record.pop(stale)
        for path in self.models_root.glob("*"):
            if path.name not in self.params.train and not path.name.startswith("."):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        write_json_atomic(self.rec_path, self.record)


class Evaluator:
    """Evaluation (dlbasics.report.evaluation.evaluate_model) in a second process, spawned when the
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
    import dlbasics.learn.metrics  # noqa: F401 - scikit-learn, before the first job
    from dlbasics.learn.modelfiles import write_evaluation
    from dlbasics.report import figures
    from dlbasics.report.evaluation import evaluate_model
    from dlbasics.tracking.model_logging import log_evaluation
    from dlbasics.tracking.registry import register

    figures.pyplot()
    trace.process("evaluator")  # its imports of torch, scikit-learn and matplotlib are done
    with trace.span("import MLflow and open the store", "tracking"):
        unusable = _open_store(params)
    while True:
        try:
            with trace.span("idle", "wait"):
                job_params, name, prepared_root, model_dir, run_id = conn.recv()
        except EOFError:
            return
        try:
            if unusable is not None and run_id is not None:
                raise unusable
            with trace.span(f"{name}: evaluate", "compute"):
                ev = evaluate_model(job_params, name, prepared_root, model_dir)
            with trace.span(f"{name}: write evaluation", "io"):
                write_evaluation(model_dir, ev)
            if run_id is not None:
                with trace.span(f"{name}: log evaluation", "tracking"):
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


def _open_store(params: Params) -> Exception | None:
    """The worker's MLflow, imported before the first job: a one-variant edit waits for this
    process's logging, so its imports (about 2 s) overlap the stage process's training. The
    stage's store and experiment are set (a model logged by run id alone would otherwise be
    filed under the default experiment). A store that cannot be used is returned, to be the
    answer to every job that logs (the stage process says it in one line), not a traceback."""
    import mlflow
    import mlflow.pytorch  # noqa: F401 - what log_model needs, imported now

    from dlbasics.tracking import runs

    try:
        mlflow.set_experiment(experiment_id=runs.setup(params.tracking.experiment))
    except Exception as exc:  # noqa: BLE001 - handed to the stage process with the first job
        return exc
    return None


def _reevaluate(params: Params, name: str, prepared_root: Path, model_dir: Path,
                evaluator: Evaluator) -> str | None:
    """Submit a trained variant's evaluation again (new `evaluate` settings or evaluation
    code), to be added to the MLflow run that trained its weights; the run's id, or None (with
    a line saying so) when no run holds them."""
    from dlbasics.learn.modelfiles import read_model_info
    from dlbasics.tracking import runs

    sha = read_model_info(model_dir)["model_sha256"]
    run = runs.find_run(params.tracking.experiment, {"variant": name, "model_sha256": sha})
    if run is None:
        print(f"train {name}: no MLflow run holds its weights; its evaluation is only in "
              f"{model_dir}")
    evaluator.submit(params, name, prepared_root, model_dir, run.info.run_id if run else None)
    return run.info.run_id if run else None


def _train_and_evaluate(params: Params, name: str, prepared_root: Path, model_dir: Path,
                        evaluator: Evaluator) -> tuple[str, str]:
    """Train variant `name` and hand its evaluation, and the logging of its model, metrics and
    figures to its MLflow run (ended by then), to the evaluation process (train_all records it
    once done). Returns (the run's id, the training's line of results)."""
    from dlbasics.pipeline.variant import train_variant

    done = []

    def finish(run_id: str, results: str) -> None:
        evaluator.submit(params, name, prepared_root, model_dir, run_id)
        done.append((run_id, results))

    spec = params.train[name]
    train_variant(params, name, prepared_root / spec.dataset, model_dir, finish=finish)
    return done[0]


def _mark_failed(run_id: str | None, exc: BaseException) -> None:
    """A run whose evaluation failed after it ended ends FAILED, with the reason as a tag."""
    if run_id is None:
        return
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "failure", f"evaluation: {type(exc).__name__}: {exc}"[:5000])
    client.set_terminated(run_id, "FAILED")
