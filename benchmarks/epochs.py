"""One epoch of MLP 784-256-10 on random Fashion-MNIST-shaped data: the project's loop against
the sources' data path and a plain TensorDataset DataLoader, and against the float32 matmul
throughput."""

from __future__ import annotations

import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from benchmarks.shapes import BATCH, CLASSES, FEATURES, SIDE, N
from benchmarks.timing import alternated, best_of, quiet, spread
from dlbasics.config.variants import ModelSpec, OptimizerSpec
from dlbasics.data.prepared import Split
from dlbasics.learn.models import build_model
from dlbasics.learn.training import build_loss, build_optimizer, fit

# FLOPs of one epoch of 784-256-10: 2 * in * out per layer and row, three times (the forward
# product and backward's two).
EPOCH_FLOP = 3 * 2 * (FEATURES * 256 + 256 * CLASSES) * N
MATMUL = 2048  # the throughput reference: three [2048, 2048] @ [2048, 2048] products
MATMUL_FLOP = 3 * 2 * MATMUL**3


def sources_dataset(images: np.ndarray, labels: np.ndarray, root: Path):
    """The sources' data path, exactly: torchvision's FashionMNIST class with ToTensor, read
    from IDX files written under `root` (the layout its download leaves). Each item goes
    uint8 tensor -> PIL image -> ToTensor, one at a time, as the book's loader does."""
    from torchvision import datasets, transforms

    from dlbasics.data.idx import write_idx

    raw = root / "FashionMNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels.astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", images[:10])  # present, as the class requires
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:10].astype(np.uint8))
    return datasets.FashionMNIST(str(root), train=True, transform=transforms.ToTensor(),
                                 download=False)


def loader_epoch(model: nn.Module, loader, opt, loss_fn) -> None:
    """The sources' training loop over a DataLoader: one epoch."""
    model.train()
    for xb, yb in loader:
        loss = loss_fn(model(xb.reshape(xb.shape[0], -1)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()


def bench_epochs(seed: int, repeats: int, threads: int) -> dict[str, Any]:
    """The epoch paths (and the matmul limit) with `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {**_bench_epochs(seed, repeats), "threads": threads}
    finally:
        torch.set_num_threads(before)


def _epoch_paths(seed: int, images: torch.Tensor, labels: torch.Tensor,
                 root: Path) -> dict[str, Callable[[], None]]:
    """One epoch from the same initial weights by each path: images [N, 28, 28] uint8, labels
    [N]; the sources' IDX files go under root."""
    X = images.reshape(N, FEATURES).float() / 255  # what `prepare` would store
    spec = ModelSpec(kind="mlp", hidden=[256], activation="relu")
    loss_fn = build_loss("cross_entropy")
    data = sources_dataset(images.numpy(), labels.numpy(), root)

    def fresh():
        model = build_model(spec, FEATURES, CLASSES, torch.Generator().manual_seed(seed))
        return model, build_optimizer(OptimizerSpec(lr=0.1), model)

    def project():
        model, opt = fresh()
        with quiet():
            fit(model, loss_fn, opt, Split(X, labels), None, epochs=1, batch_size=BATCH,
                generator=torch.Generator().manual_seed(seed), task="classification")

    def sources():
        model, opt = fresh()
        with warnings.catch_warnings():  # "4 workers > 2 cores": the sources' setting, kept
            warnings.simplefilter("ignore", UserWarning)
            loader = torch.utils.data.DataLoader(
                data, batch_size=BATCH, shuffle=True, num_workers=4,
                generator=torch.Generator().manual_seed(seed))
            loader_epoch(model, loader, opt, loss_fn)

    def tensor_dataset():
        model, opt = fresh()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X, labels), batch_size=BATCH, shuffle=True,
            generator=torch.Generator().manual_seed(seed))
        loader_epoch(model, loader, opt, loss_fn)

    return {"project": project, "sources": sources, "tensor_dataset": tensor_dataset}


def _bench_epochs(seed: int, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, SIDE, SIDE), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
        paths = _epoch_paths(seed, images, labels, Path(tmp))
        paths["project"]()  # warm-up (allocator, kernels)
        # The epoch and the matmul limit in turns, so that both see the same load.
        g2 = torch.Generator().manual_seed(1)
        a, b = (torch.randn(MATMUL, MATMUL, generator=g2) for _ in range(2))
        a @ b  # warm-up

        def matmul():
            for _ in range(3):
                a @ b

        both = alternated({"project": paths["project"], "matmul": matmul}, repeats)
        sources_s = best_of(paths["sources"], 1)  # slow paths: one epoch each
    tensordataset_s = best_of(paths["tensor_dataset"], 1)
    return _epoch_figures(both["project"], both["matmul"], sources_s, tensordataset_s)


def _epoch_figures(project: list[float], matmul: list[float], sources_s: float,
                   tensordataset_s: float) -> dict[str, Any]:
    """Seconds, ratios and GFLOP/s from the timings (project and matmul taken in turns)."""
    out: dict[str, Any] = {"project": spread(project), "matmul": spread(matmul)}
    out["project_epoch_s"] = project_s = out["project"]["median_s"]
    out["sources_epoch_s"] = sources_s
    out["tensordataset_epoch_s"] = tensordataset_s
    out["epoch_gflop"] = EPOCH_FLOP / 1e9
    out["project_gflops"] = EPOCH_FLOP / project_s / 1e9
    mm = [MATMUL_FLOP / t / 1e9 for t in matmul]
    out["matmul_gflops"] = statistics.median(mm)
    out["vs_sources"] = sources_s / project_s
    out["vs_tensordataset"] = tensordataset_s / project_s
    # Per pair of neighbouring timings: the fraction of the matmul limit, then its spread.
    ratios = [EPOCH_FLOP / tp / 1e9 / m for tp, m in zip(project, mm)]
    out["of_matmul"] = statistics.median(ratios)
    out["of_matmul_min"], out["of_matmul_max"] = min(ratios), max(ratios)
    return out
