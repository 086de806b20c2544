"""The project's image variants against scikit-learn peers on real Fashion-MNIST, on the
project's own split: the official 10000 test images kept, validation (prepare.images'
val_fraction) carved out of the 60000 training images, pixels in [0, 1] (profile full_size).

Every model trains on the same training rows at one thread (torch.set_num_threads(1) and
threadpoolctl's limit of 1 for BLAS and OpenMP, in this process) and is scored on the official
test rows. The models are timed in turns (A, B, C, ... then again), and the goal is the
issue's: for each peer, a project variant at least as accurate in no more time.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from benchmarks.fashion import FASHION_DIR, fashion_entry
from benchmarks.timing import alternated, quiet, spread

# The project's variants timed against them: key -> (base variant of params.yaml, key paths set
# over it after profile full_size's). The last two are params-expressible answers to the peers
# on the same rows: mlp_adam with half the hidden units, Xavier initial weights and three times
# the learning rate, 11 epochs against MLPClassifier and 4 against LogisticRegression.
_H128 = {"model.hidden": [128], "model.init": "xavier", "optimizer.lr": 0.003}
PROJECT: dict[str, tuple[str, dict[str, Any]]] = {
    "softmax": ("softmax", {}),
    "mlp_adam": ("mlp_adam", {}),
    "mlp_adam_h128": ("mlp_adam", {**_H128, "epochs": 11}),
    "mlp_adam_h128_short": ("mlp_adam", {**_H128, "epochs": 4}),
}


def _logreg(seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(solver="lbfgs", max_iter=100, random_state=seed)


def _mlp(seed: int):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(256,), solver="adam", learning_rate_init=0.001,
                         batch_size=256, max_iter=10, random_state=seed)


# The peers, in the order they are timed: key -> (what the row says, how to build it from a
# seed). d2l's settings where the two libraries share them: batch 256, 10 passes, adam 0.001.
PEERS: dict[str, tuple[str, Callable[[int], Any]]] = {
    "logreg": ("scikit-learn LogisticRegression (lbfgs, 100 iterations)", _logreg),
    "mlp_sklearn": ("scikit-learn MLPClassifier 784-256-10 (adam 0.001, batch 256, 10 epochs)",
                    _mlp),
}


def peers_params(repo_params: Path, fashion_dir: Path) -> dict[str, Any]:
    """params.yaml (as a mapping) for the peers run: the repo's seed and runtime, data.images
    the Fashion-MNIST IDX files in `fashion_dir` (default checks), the repo's prepare.images
    without a test fraction (the official test set is kept), and one train entry per PROJECT
    model. Profile full_size's `prepare` and `variants` keys are laid over the entries here,
    not by selecting the profile, so that a PROJECT model's own keys (epochs) come last."""
    from dlbasics.config.base import set_path

    base = yaml.safe_load(repo_params.read_text())
    profile = base["profiles"]["full_size"]
    prepare = {k: v for k, v in base["prepare"]["images"].items()
               if k not in ("test_fraction", "n_test")}
    train = {}
    for key, (variant, over) in PROJECT.items():
        entry = base["train"][variant]
        for path, value in {**profile.get("variants", {}), **over}.items():
            entry = set_path(entry, path, value)
        train[key] = entry
    return {
        "seed": base["seed"], "runtime": base.get("runtime", {}),
        "tracking": {"experiment": "bench-peers", "log_models": False},
        "data": {"images": fashion_entry(fashion_dir)},
        "prepare": {"images": {**prepare, **profile.get("prepare", {})}},
        "train": train,
    }


def prepared_fashion(params, root: Path):
    """The project's generate and prepare of `params` (see peers_params) into root: the
    Prepared images dataset, exactly the rows and pixels the pipeline's variants see."""
    from dlbasics.data.prepared import load_prepared, prepare_all
    from dlbasics.data.sources import generate_all

    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    return load_prepared(root / "prepared" / "images")


def _subset(data, rows: int | None):
    """The first `rows` training rows (all when None); val and test kept whole."""
    from dlbasics.data.prepared import Prepared, Split

    if rows is None:
        return data
    train = data.splits["train"]
    return Prepared(data.manifest, {**data.splits,
                                    "train": Split(train.X[:rows], train.y[:rows])})


def _peer_job(make: Callable[[], Any], data, out: dict[str, float]) -> Callable[[], None]:
    """A fit of the peer make() builds on the training rows; its test accuracy into out."""
    from sklearn.exceptions import ConvergenceWarning

    X, y = data.splits["train"].X.numpy(), data.splits["train"].y.numpy()  # [N, 784], [N]
    Xt, yt = data.splits["test"].X.numpy(), data.splits["test"].y.numpy()

    def job() -> None:
        model = make()
        with warnings.catch_warnings():
            # Both stop at their iteration budget on purpose (d2l's 10 epochs, lbfgs's 100).
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        out["accuracy"] = float((model.predict(Xt) == yt).mean())

    return job


def _project_job(params, name: str, data, out: dict[str, float]) -> Callable[[], None]:
    """A fit of variant `name` by the project's trainer (make_trainer: the train stage's
    initial weights, batch order and loop) on the training rows; its test accuracy into out.
    Validation and test are left out of the fit (no per-epoch scoring, as the peers have none)
    and scored once after it."""
    from dlbasics.data.prepared import Split
    from dlbasics.learn.training import build_loss, evaluate_split, make_trainer

    spec = params.train[name]
    make_model, train_fn = make_trainer(params, spec, name, data, torch.device("cpu"))
    empty = Split(data.splits["val"].X[:0], data.splits["val"].y[:0])
    splits = {"train": data.splits["train"], "val": empty, "test": empty}

    def job() -> None:
        model = make_model()
        with quiet():
            train_fn(model, splits)
        scored = evaluate_split(model, build_loss(spec.loss), data.splits["test"], data.task)
        out["accuracy"] = scored["accuracy"]

    return job


@contextlib.contextmanager
def one_thread():
    """torch and every BLAS / OpenMP pool of this process at one thread, then as they were."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def compare(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """For each peer, each project model against it: project time / peer time (the median of
    the ratios of the runs taken in the same turn) and the accuracy difference (project - peer);
    `meets` when the project model is at least as accurate in no more time."""
    out = []
    for peer in (k for k, m in models.items() if m["side"] == "peer"):
        p = models[peer]
        for key in (k for k, m in models.items() if m["side"] == "project"):
            m = models[key]
            ratios = [a / b for a, b in zip(m["times_s"], p["times_s"])]
            diff = m["accuracy"] - p["accuracy"]
            ratio = statistics.median(ratios)
            out.append({"peer": peer, "project": key, "time_ratio": ratio,
                        "time_ratio_min": min(ratios), "time_ratio_max": max(ratios),
                        "accuracy_diff": diff, "meets": diff >= 0 and ratio <= 1})
    return out


def goals(comparisons: list[dict[str, Any]]) -> dict[str, list[str]]:
    """peer -> the project models that meet the goal against it (empty: not met)."""
    out: dict[str, list[str]] = {}
    for c in comparisons:
        out.setdefault(c["peer"], [])
        if c["meets"]:
            out[c["peer"]].append(c["project"])
    return out


def bench_peers(repo_params: Path, repeats: int = 1, rows: int | None = None,
                fashion_dir: Path = FASHION_DIR) -> dict[str, Any]:
    """Each of PEERS and PROJECT trained on the project's training rows of real Fashion-MNIST
    (the first `rows` of them when given) at one thread, `repeats` times in turns; accuracy on
    the official test rows, fit seconds, the comparisons and the load average. Without the
    data: {"skipped": the reason}, and nothing is timed."""
    from dlbasics.config.loading import parse_params

    if not fashion_dir.is_dir():
        reason = f"no Fashion-MNIST at {fashion_dir}: peers not measured"
        print(reason, flush=True)
        return {"skipped": reason}
    params = parse_params(peers_params(repo_params, fashion_dir), "bench peers params")
    with tempfile.TemporaryDirectory(prefix="dlbasics-peers-") as tmp:
        data = _subset(prepared_fashion(params, Path(tmp)), rows)
    accuracy: dict[str, dict[str, float]] = {k: {} for k in (*PEERS, *PROJECT)}
    jobs = {k: _peer_job(lambda make=make: make(params.seed), data, accuracy[k])
            for k, (_, make) in PEERS.items()}
    jobs.update({k: _project_job(params, k, data, accuracy[k]) for k in PROJECT})
    load_start = os.getloadavg()[0]
    with one_thread():
        times = alternated(jobs, repeats)
    models: dict[str, dict[str, Any]] = {}
    for k in jobs:
        if k in PEERS:
            side, what = "peer", PEERS[k][0]
        else:
            variant, over = PROJECT[k]
            spec = params.train[k]
            side = "project"
            what = (f"project {variant}" + "".join(f", {a} {b}" for a, b in over.items()
                                                    if a != "epochs")
                    + f" (batch {spec.batch_size}, {spec.epochs} epochs)")
        models[k] = {"side": side, "what": what, "accuracy": accuracy[k]["accuracy"],
                     "times_s": times[k], **spread(times[k])}
    comparisons = compare(models)
    return {"data": "real Fashion-MNIST", "path": str(fashion_dir),
            "n_train": int(data.splits["train"].y.shape[0]),
            "n_test": int(data.splits["test"].y.shape[0]), "threads": 1, "repeats": repeats,
            "load_avg_1min": {"start": load_start, "end": os.getloadavg()[0]},
            "models": models, "comparisons": comparisons, "goals": goals(comparisons)}
