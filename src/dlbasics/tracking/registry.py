"""The MLflow Model Registry: the winner of a comparison, findable by name.

Each `select@NAME` stage's refitted winner (and each train variant listed in
tracking.registry.variants) becomes a version of one registered model, tracking.registry.model,
as the pyfunc model of dlbasics.tracking.serving logged to the run that made it. The alias `champion`
moves to a new version only when its test score (the task's primary metric, tasks.PRIMARY) is
at least as good as the current champion's. A version is found again by the
sha256 of its weights, so a model registered once is never registered again (a forced re-run, a
re-evaluation, the same weights from another experiment).

Works with any store mlflow has a registry for: the project's sqlite store and a tracking
server. On a sqlite store, registering and moving the alias hold a lock beside the store, so
parallel experiments (dvc queue start -j 2) cannot both move the alias from one reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlbasics.config.params import Params
from dlbasics.learn.tasks import PRIMARY

ALIAS = "champion"


def registers(params: Params, name: str) -> bool:
    """Whether the model of `name` (a train variant or select@SEARCH) is registered: a registry
    is set, models are logged (tracking.log_models), and it is a search's winner (of
    registry.searches, when given) or one of registry.variants."""
    reg = params.tracking.registry
    if reg is None or not params.tracking.log_models:
        return False
    if name.startswith("select@"):
        return reg.searches is None or name.removeprefix("select@") in reg.searches
    return name in reg.variants


def at_least_as_good(metric: str, new: float, old: float) -> bool:
    """Whether test score `new` of primary metric `metric` (tasks.PRIMARY) is at least as good
    as `old`."""
    higher = next(m.higher_is_better for m in PRIMARY.values() if m.name == metric)
    return new >= old if higher else new <= old


def find_version(client: Any, name: str, model_sha256: str) -> Any | None:
    """The version of registered model `name` holding weights `model_sha256`, or None."""
    found = client.search_model_versions(
        f"name = '{name}' and tags.model_sha256 = '{model_sha256}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def champion(client: Any, name: str) -> Any | None:
    """The version the alias points at, or None (no such model, or no alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            return None
        raise


@contextmanager
def _registry_lock() -> Iterator[None]:
    """An exclusive lock beside a sqlite store (matching .gitignore's mlflow.db-*), nothing for
    other stores: a tracking server serialises nothing across clients."""
    import mlflow

    from dlbasics.tracking.runs import _sqlite_path

    path = _sqlite_path(mlflow.get_tracking_uri())
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if path is None or fcntl is None:
        yield
        return
    with open(path.with_name(f"{path.name}-registry.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def register(params: Params, name: str, run_id: str, model_dir: Path, prepared_root: Path
             ) -> dict[str, Any] | None:
    """Register the model in model_dir (written and evaluated: model.json, eval/metrics.json)
    of `name`, logged as a served model to MLflow run `run_id`, and move the champion alias to
    it when it scores at least as well. None when `name` is not registered (see `registers`);
    else {"name", "version", "new": registered now, "champion": the champion's version,
    "moved": the alias moved to it now}."""
    if not registers(params, name):
        return None
    import mlflow

    from dlbasics.data.prepared import load_prepared
    from dlbasics.learn.modelfiles import read_model_info
    from dlbasics.tracking import runs
    from dlbasics.tracking.serving import log_served_model, served_info

    reg = params.tracking.registry
    info = read_model_info(model_dir)
    metric = PRIMARY[info["task"]].name
    score = json.loads((model_dir / "eval" / "metrics.json").read_text())[f"test_{metric}"]
    client = mlflow.MlflowClient()
    with _registry_lock():
        version = find_version(client, reg.model, info["model_sha256"])
        new = version is None
        if new:
            test = load_prepared(prepared_root / info["dataset"], splits=("test",))
            example = test.splits["test"].X[:5].numpy()
            served = served_info(info, test.manifest, params.evaluate.multilabel_threshold)
            logged = log_served_model(run_id, model_dir, served, example)
            tags = {"variant": name, "task": info["task"], "dataset": info["dataset"],
                    "dataset_sha256": info["dataset_sha256"],
                    "model_sha256": info["model_sha256"],
                    "git_commit": runs.git_commit() or "unknown",
                    "metric": metric, f"test_{metric}": repr(float(score))}
            if os.environ.get("DVC_EXP_NAME"):
                tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
            version = mlflow.register_model(logged.model_uri, reg.model, tags=tags)
            words = info.get("chosen_words")
            if words:
                client.update_model_version(reg.model, version.version,
                                            description=f"{name}: {words}")
        moved, best, was = _promote(client, reg.model, version, metric)
    _say(reg.model, name, version, new, metric, score, moved, best, was)
    return {"name": reg.model, "version": int(version.version), "new": new,
            "champion": int(best.version), "moved": moved}


def _promote(client: Any, name: str, version: Any, metric: str) -> tuple[bool, Any, Any]:
    """Point the alias at `version` when no version holds it, or when its test score is at
    least as good as the holder's. (moved now, the champion after, the champion before)."""
    holder = champion(client, name)
    version = client.get_model_version(name, version.version)  # with its tags
    if holder is not None and holder.version == version.version:
        return False, holder, holder
    key = f"test_{metric}"
    if holder is not None:
        theirs = holder.tags.get(key)
        if theirs is None:  # another task's model (scored by another metric): not comparable
            return False, holder, holder
        if not at_least_as_good(metric, float(version.tags[key]), float(theirs)):
            return False, holder, holder
    client.set_registered_model_alias(name, ALIAS, version.version)
    return True, client.get_model_version(name, version.version), holder


def _say(reg_name: str, name: str, version: Any, new: bool, metric: str, score: float,
         moved: bool, best: Any, was: Any) -> None:
    head = (f"registry {reg_name}: {name} registered as version {version.version}" if new else
            f"registry {reg_name}: {name}'s weights are version {version.version} already")
    key = f"test_{metric}"
    if moved:
        tail = (f"{ALIAS} now (test {metric} {score:.4f}"
                + (f"; was version {was.version}, {float(was.tags[key]):.4f})" if was else ")"))
    else:
        held = best.tags.get(key)
        tail = (f"{ALIAS} stays version {best.version}"
                + (f" (test {metric} {float(held):.4f}; this one {score:.4f})"
                   if held is not None and best.version != version.version else ""))
    print(f"{head}; {tail}")


def main(argv: list[str] | None = None) -> int:
    """`python -m dlbasics.tracking.registry --name`: print tracking.registry.model of params.yaml (for
    `make serve`); exit 2 with one line when params.yaml sets no registry."""
    import argparse
    import sys

    from dlbasics.config.loading import load_params
    from dlbasics.errors import ConfigError

    ap = argparse.ArgumentParser(description="the registered model's name")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--name", action="store_true", help="print tracking.registry.model")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.params)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if params.tracking.registry is None:
        print(f"error: {args.params}: tracking.registry: expected a registry (model: ...), "
              "found nothing; nothing is registered to serve", file=sys.stderr)
        return 2
    print(params.tracking.registry.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
