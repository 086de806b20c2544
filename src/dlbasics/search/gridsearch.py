"""The K-fold grid search of a `select` search: every configuration on the same folds, trained
in lockstep epoch by epoch with early stopping, batched where that is faster, on local worker
processes or Ray; then the chosen configuration refitted on the whole training split."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

from dlbasics.data.prepared import Prepared, Split
from dlbasics.learn.tasks import PRIMARY, choose
from dlbasics.learn.training import HEARTBEAT_S, Progress, make_trainer
from dlbasics.search.selection import fold_indices, n_parameters, primary_score


def _arch_key(spec) -> str:
    """What configurations must share to train as one batched model: everything but the
    optimiser's lr, momentum and weight decay. (_Batched gives each configuration its own
    initial weights, but configurations of another init stay a job of their own: with
    runtime.workers processes, more and smaller jobs balance better; select@tuned measured
    slower merged, its [512] group then the whole makespan.)"""
    raw = spec.model_dump(mode="json")
    raw["optimizer"] = {"name": spec.optimizer.name}
    return json.dumps(raw, sort_keys=True)


def _batchable(spec) -> bool:
    from dlbasics.learn.batched import supports

    return (spec.solver == "gradient" and spec.penalty is None and spec.features is None
            and spec.poly_features is None
            and supports(spec.model, spec.optimizer, spec.loss))


class _Folds:
    """The K folds of the training split, on the device: [(train Split, val Split)]."""

    def __init__(self, data: Prepared, k: int, seed: int, device: torch.device,
                 max_rows: int | None = None):
        X, y = data.splits["train"].X, data.splits["train"].y
        stratify = data.task in ("classification", "binary")
        if max_rows is not None and max_rows < len(y):
            # A seeded subset (stratified for classifiers) keeps a large set's search affordable.
            from sklearn.model_selection import train_test_split

            rows, _ = train_test_split(np.arange(len(y)), train_size=max_rows, random_state=seed,
                                       stratify=y.numpy() if stratify else None)
            rows_t = torch.from_numpy(np.sort(rows))
            X, y = X[rows_t], y[rows_t]
        folds = fold_indices(y.numpy(), k, seed, stratify=stratify)
        self.splits = []
        for tr, va in folds:
            tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
            self.splits.append((Split(X[tr_t].to(device), y[tr_t].to(device)),
                                Split(X[va_t].to(device), y[va_t].to(device))))


class _Sequential:
    """One configuration: K fold fits (fresh models from its initial weights), advanced one
    epoch at a time with training.train_epoch, exactly as training.fit trains."""

    def __init__(self, params, spec, name: str, data: Prepared, folds: _Folds, device):
        from dlbasics.learn.training import build_loss, build_optimizer, build_penalty
        from dlbasics.rng import derive_seed, torch_generator

        make_model, _ = make_trainer(params, spec, name, data, device)
        torch.manual_seed(derive_seed(params.seed, "dropout", name))  # nn.Dropout's masks
        self.spec, self.folds, self.task = spec, folds, data.task
        self.loss_fn = build_loss(spec.loss)
        self.fits = []
        for _ in folds.splits:
            model = make_model()
            self.fits.append((model, build_optimizer(spec.optimizer, model),
                              build_penalty(spec.penalty, model),
                              torch_generator(params.seed, "batches", data.manifest["identity"])))
        self.alive = [0]

    def epoch(self, score: bool = True) -> list[list[tuple[float, float]]]:
        """One epoch of every fold: [[(mean batch loss, validation score) per fold]]."""
        from dlbasics.learn.training import predict, train_epoch

        out = []
        for (model, opt, penalty, gen), (train, val) in zip(self.fits, self.folds.splits):
            loss, _ = train_epoch(model, self.loss_fn, opt, train.X, train.y, penalty=penalty,
                                  batch_size=self.spec.batch_size, generator=gen)
            ok = score and math.isfinite(loss)
            out.append((loss, primary_score(self.task, predict(model, val.X), val.y) if ok
                        else math.nan))
        return [out]

    def train_scores(self, positions) -> list[list[float]]:
        """The training score of each fold now, for the configurations at `positions`."""
        from dlbasics.learn.training import predict

        return [[primary_score(self.task, predict(model, train.X), train.y)
                 for (model, *_), (train, _) in zip(self.fits, self.folds.splits)]
                for _ in positions]

    def keep(self, positions) -> None:
        self.alive = [self.alive[k] for k in positions]


class _Batched:
    """G configurations of one architecture on the K folds: the folds of one training size (all
    of them, with stratified folds of equal size) as more members of one BatchedTrainer, K * G
    members in lockstep; each fold draws its batch order from its own generator."""

    def __init__(self, params, specs, data: Prepared, folds: _Folds, device):
        from dlbasics.learn.batched import BatchedTrainer
        from dlbasics.rng import torch_generator

        spec = specs[0]
        man = data.manifest
        # Each configuration's seeded initial weights (its init and init_std).
        inits = [{k: v.detach().cpu()
                  for k, v in make_trainer(params, s, "select", data, device)[0]().state_dict()
                  .items()} for s in specs]
        self.task = data.task
        self.folds = folds
        sizes: dict[tuple[int, int], list[int]] = {}
        for i, (train, val) in enumerate(folds.splits):
            sizes.setdefault((len(train.y), len(val.y)), []).append(i)
        # (fold indices, their trainer, their stacked train and validation sets)
        self.groups = []
        for members in sizes.values():
            train = Split(torch.stack([folds.splits[i][0].X for i in members]),
                          torch.stack([folds.splits[i][0].y for i in members]))
            val = Split(torch.stack([folds.splits[i][1].X for i in members]),
                        torch.stack([folds.splits[i][1].y for i in members]))
            trainer = BatchedTrainer(
                spec.model, man["n_features"], man["n_outputs"], [s.optimizer for s in specs],
                inits, train.X, train.y, loss=spec.loss, batch_size=spec.batch_size,
                generator=[torch_generator(params.seed, "batches", man["identity"])
                           for _ in members])
            self.groups.append((members, trainer, train, val))

    @property
    def alive(self) -> list[int]:
        return self.groups[0][1].alive

    @property
    def trainers(self) -> list[_FoldTrainer]:
        """Per fold, in fold order: its configurations' weights (state_dict(position))."""
        out = {}
        for members, trainer, _, _ in self.groups:
            out.update({i: _FoldTrainer(trainer, j) for j, i in enumerate(members)})
        return [out[i] for i in sorted(out)]

    def _scores(self, split_of, positions, losses=None) -> list[list[float]]:
        """[position][fold] of the primary score on each fold's split (split_of: 0 training, 1
        validation); NaN where `losses` ([position][fold]) is not finite."""
        per_fold: dict[int, list[float]] = {}
        for members, trainer, *splits in self.groups:
            split = splits[split_of]
            out = trainer.outputs(split.X)  # [K, G, N, out]
            for j, i in enumerate(members):
                per_fold[i] = [
                    primary_score(self.task, out[j, p], split.y[j])
                    if losses is None or math.isfinite(losses[p][i]) else math.nan
                    for p in positions]
        return [list(config) for config in zip(*(per_fold[i] for i in sorted(per_fold)))]

    def epoch(self, score: bool = True) -> list[list[tuple[float, float]]]:
        """One epoch of every fold: [alive][fold] of (mean batch loss, validation score)."""
        losses: dict[int, list[float]] = {}  # fold -> [alive]
        for members, trainer, _, _ in self.groups:
            per_config = trainer.epoch()  # [alive][K]
            for j, i in enumerate(members):
                losses[i] = [fold_losses[j] for fold_losses in per_config]
        by_config = [list(c) for c in zip(*(losses[i] for i in sorted(losses)))]  # [alive][fold]
        positions = range(len(self.alive))
        if not score:
            return [[(loss, math.nan) for loss in config] for config in by_config]
        scores = self._scores(1, positions, by_config)
        return [list(zip(ls, ss)) for ls, ss in zip(by_config, scores)]

    def train_scores(self, positions) -> list[list[float]]:
        """The training score of each fold now, for the configurations at `positions`."""
        return self._scores(0, list(positions))

    def keep(self, positions) -> None:
        for _, trainer, _, _ in self.groups:
            trainer.keep(positions)


class _FoldTrainer:
    """One fold of a _Batched group's trainer."""

    def __init__(self, trainer, fold: int):
        self.trainer, self.fold = trainer, fold

    def state_dict(self, position: int) -> dict[str, torch.Tensor]:
        return self.trainer.state_dict(position, self.fold)


def _run(runner, max_epochs: int, patience: int | None, higher: bool, metric: str,
         k: int) -> dict[int, dict[str, Any]]:
    """Train the runner's configurations in lockstep over the folds, epoch by epoch, with early
    stopping on the mean validation score across folds. Returns, per configuration (index into
    the runner's list), its record: the fold scores at its chosen epoch, their mean and sd, the
    chosen and the trained epochs, the mean validation curve; or its divergence."""
    sign = 1.0 if higher else -1.0
    curves: dict[int, list[float]] = {g: [] for g in runner.alive}
    # Per configuration: (best epoch, its mean validation score, per fold (train, val) there).
    best: dict[int, tuple[int, float, list[tuple[float, float]]]] = {}
    done: dict[int, dict[str, Any]] = {}
    for epoch in range(1, max_epochs + 1):
        # Without early stopping only the last epoch is scored.
        scores = runner.epoch(score=patience is not None or epoch == max_epochs)
        keep, improved, means = [], [], {}
        for pos, (g, folds) in enumerate(zip(runner.alive, scores)):
            if not all(math.isfinite(loss) for loss, _ in folds):
                done[g] = {"diverged": True, "diverged_epoch": epoch}
                continue
            keep.append(pos)
            if patience is None and epoch < max_epochs:
                continue
            means[g] = float(np.mean([v for _, v in folds]))
            curves[g].append(means[g])
            if g not in best or sign * means[g] > sign * best[g][1]:
                improved.append(pos)
        # Training scores only where they will be reported: at a new best epoch.
        for pos, trains in zip(improved, runner.train_scores(improved) if improved else []):
            g = runner.alive[pos]
            best[g] = (epoch, means[g], [(t, v) for t, (_, v) in zip(trains, scores[pos])])
        still = []
        for pos in keep:
            g = runner.alive[pos]
            if g in means and (epoch == max_epochs
                               or (patience is not None and epoch - best[g][0] >= patience)):
                done[g] = _record(best[g][2], best[g][0], epoch, curves[g], metric, k)
            else:
                still.append(pos)
        runner.keep(still)
        if not runner.alive:
            break
    return done


def _record(folds: list[tuple[float, float]], epoch: int, trained: int, curve: list[float],
            metric: str, k: int) -> dict[str, Any]:
    """A configuration's result: per fold (train, val) scores at its chosen epoch."""
    rec: dict[str, Any] = {
        "diverged": False,
        "folds": [{"fold": i, f"train_{metric}": tr, f"val_{metric}": va, "epochs": epoch}
                  for i, (tr, va) in enumerate(folds)],
        "epochs_chosen": epoch, "epochs_trained": trained, "val_curve": curve,
    }
    for j, part in ((0, "train"), (1, "val")):
        vals = np.array([f[j] for f in folds])
        rec[f"{part}_{metric}_mean"] = float(vals.mean())
        rec[f"{part}_{metric}_std"] = float(vals.std(ddof=1)) if k > 1 else 0.0
    return rec


def _unique_settings(params, search: str):
    """(grid configurations, settings JSON -> index into specs, unique specs in grid order).

    A grid point that resolves to settings already listed (dropout of a 0-layer model) is
    trained once."""
    from dlbasics.config.params import grid_variants

    configs = grid_variants(params, search)
    unique: dict[str, int] = {}
    specs = []
    for _, spec in configs:
        key = spec.model_dump_json()
        if key not in unique:
            unique[key] = len(specs)
            specs.append(spec)
    return configs, unique, specs


def _jobs(specs, manifest: dict[str, Any], mode: str) -> list[tuple[str, list[int]]]:
    """The units of work: ("batched", the configurations of one architecture) when the size rule
    says batching is faster, else ("sequential", [one configuration]); largest first."""
    from dlbasics.learn.batched import batched_is_faster

    groups: dict[str, list[int]] = {}
    for u, spec in enumerate(specs):
        groups.setdefault(_arch_key(spec) if _batchable(spec) else f"seq{u}", []).append(u)
    jobs = []
    for members in groups.values():
        spec = specs[members[0]]
        if mode == "auto" and _batchable(spec) and batched_is_faster(
                spec.model, manifest["n_features"], manifest["n_outputs"], len(members)):
            jobs.append(("batched", members))
        else:
            jobs += [("sequential", [u]) for u in members]

    def cost(job) -> int:  # weights x epochs x configurations: a rough size, for the order
        spec = specs[job[1][0]]
        widths = [manifest["n_features"], *spec.model.hidden, manifest["n_outputs"]]
        return sum(a * b for a, b in zip(widths, widths[1:])) * spec.epochs * len(job[1])

    return sorted(jobs, key=lambda j: (-cost(j), j[1][0]))


def _job(params, search: str, kind: str, members: list[int], data: Prepared,
         device) -> dict[int, dict[str, Any]]:
    """Train one job's configurations on the K folds: {index into the unique specs: record}."""
    from dlbasics.rng import derive_seed

    sel = params.select.searches[search]
    metric = PRIMARY[data.task]
    _, _, specs = _unique_settings(params, search)
    folds = _Folds(data, sel.k, derive_seed(params.seed, "folds", data.manifest["identity"]),
                   device, max_rows=sel.max_rows)
    if kind == "batched":
        runner = _Batched(params, [specs[u] for u in members], data, folds, device)
    else:
        runner = _Sequential(params, specs[members[0]], f"select@{search}", data, folds, device)
    done = _run(runner, specs[members[0]].epochs, sel.patience, metric.higher_is_better,
                metric.name, sel.k)
    return {u: {**done[g], "path": kind} for g, u in enumerate(members)}


def _job_in_worker(params, search: str, kind: str, members: list[int],
                   data: Prepared, device: str = "cpu") -> dict[int, dict[str, Any]]:
    """A job in a process of its own (a local worker or a Ray task)."""
    from dlbasics.runtime import configure

    configure(params.runtime)  # the same threads as the stage process: the same bits
    return _job(params, search, kind, members, data, torch.device(device))


def _job_line(name: str, kind: str, members: list[int]) -> str:
    if kind == "batched":
        return f"{name}: configurations {members} trained together, batched"
    return f"{name}: configuration {members[0]} trained on its own"


def run_search(params, search: str, data: Prepared, device: torch.device | None = None,
               batched: str | None = None, log=None, ray=None):
    """K-fold cross-validation of every configuration of the named search, then the best one
    (by mean validation score; ties to the smaller model) refitted on the whole training split.

    One seeded (stratified) fold split is shared by every configuration; each (configuration,
    fold) fit starts from a fresh model with the configuration's seeded initial weights. With
    `patience`, every configuration trains its K folds in lockstep and stops once the mean
    validation score has not improved for `patience` epochs; its best epoch is its answer and
    the refit trains that many epochs. Configurations that share an architecture train as one
    batched model when `batched` (default: the search's setting) is auto and the size rule says
    it is faster. A configuration whose loss becomes NaN or infinite in any fold is recorded as
    diverged (with the epoch) and excluded. With runtime.executor ray the jobs are Ray tasks
    (dlbasics.search.cluster), on `ray` when given connected, else on a connection made here.
    Returns (table of configurations in grid order, the chosen record, its spec as refitted,
    the refitted model, its history).

    What a person sees (training.Progress): on a terminal a bar of the configurations, then
    one of the refit's epochs; one line per job as it ends (`log`, by default printed above
    the bar); the refit's line of results.
    """
    sel = params.select.searches[search]
    device = device or torch.device("cpu")
    metric = PRIMARY[data.task]
    name = f"select@{search}"
    configs, unique, specs = _unique_settings(params, search)
    jobs = _jobs(specs, data.manifest, batched or sel.batched)
    results = _run_jobs(params, search, jobs, data, device, log, ray)
    table = []
    for i, (values, spec) in enumerate(configs):
        make_model, _ = make_trainer(params, spec, name, data, device)
        table.append({"config": i, "values": values, "n_parameters": n_parameters(make_model()),
                      "epochs_max": spec.epochs, **results[unique[spec.model_dump_json()]]})
    if all(r["diverged"] for r in table):
        raise params.error(f"select.searches.{search}.grid",
                           "expected at least one configuration that trains, found every one "
                           "diverged; lower the optimizer.lr values")
    best = choose(table, metric)
    spec = configs[best["config"]][1].model_copy(update={"epochs": best["epochs_chosen"]})
    make_model, train_fn = make_trainer(params, spec, name, data, device)
    model = make_model()
    history = train_fn(model, data.splits)
    return table, best, spec, model.cpu(), history


def _run_jobs(params, search: str, jobs, data: Prepared, device, log, ray
              ) -> dict[int, dict[str, Any]]:
    """Every job's records ({index into the unique specs: record}): on Ray (runtime.executor
    ray; on `ray` when given connected), in runtime.workers spawned processes, or here. Each
    job says one line as it ends; in a log, HEARTBEAT_S seconds without one (worker
    processes) bring a line of how many configurations are done."""
    name = f"select@{search}"
    progress = Progress(name, sum(len(members) for _, members in jobs), unit="configuration")
    say = log or progress.write

    def ended(kind: str, members: list[int], where: str = "") -> None:
        say(_job_line(name, kind, members) + where)
        progress.advance(len(members), status="")

    try:
        return _run_jobs_reported(params, search, jobs, data, device, ray, ended, progress)
    finally:
        progress.close()


def _run_jobs_reported(params, search: str, jobs, data: Prepared, device, ray, ended,
                       progress: Progress) -> dict[int, dict[str, Any]]:
    """_run_jobs's work: `ended(kind, members)` as each job ends."""
    results: dict[int, dict[str, Any]] = {}
    workers = min(params.runtime.workers, len(jobs)) if device.type == "cpu" else 1
    if params.runtime.executor == "ray":
        from contextlib import nullcontext

        from dlbasics.search import cluster

        with (nullcontext(ray) if ray is not None
              else cluster.connected(params.runtime.ray, params.runtime.threads)) as conn:
            results = cluster.run_jobs(
                conn, params, search, jobs, data, _job_in_worker,
                lambda kind, members: ended(kind, members, ", on Ray"))
    elif workers > 1:
        # Jobs in parallel processes of runtime.threads threads each: the same arithmetic as in
        # this process, so the same bits whatever the number of workers (tested).
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        import torch.multiprocessing as torch_mp

        with ProcessPoolExecutor(workers, mp_context=torch_mp.get_context("spawn")) as pool:
            try:
                futures = {pool.submit(_job_in_worker, params, search, kind, members, data): i
                           for i, (kind, members) in enumerate(jobs)}
                pending = set(futures)
                while pending:
                    # Woken at least every HEARTBEAT_S, so that a log hears of a long wait.
                    finished, pending = wait(pending, timeout=HEARTBEAT_S,
                                             return_when=FIRST_COMPLETED)
                    progress.advance(0, status="")
                    for fut in sorted(finished, key=futures.get):
                        results.update(fut.result())  # keyed by configuration: order immaterial
                        ended(*jobs[futures[fut]])
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    else:
        for kind, members in jobs:
            results.update(_job(params, search, kind, members, data, device))
            ended(kind, members)
    return results
