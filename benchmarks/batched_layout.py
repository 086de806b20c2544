"""GFLOP/s at one thread of the products a batched search step runs (select@tuned's shapes:
batch 32, 64 inputs, 10 classes, K folds x G configurations), in the row-major layout the batched
trainer used before ([B, h] @ [h, C], baddbmm) and in the feature-major one it uses now
(W [C, h] @ a [h, B], nn.Linear's own weight layout). Run:
    .venv/bin/python -m benchmarks.batched_layout
"""

from __future__ import annotations

import time

import torch


def _us(fn, n: int = 200, repeats: int = 5) -> float:
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def layouts(members: int = 12, folds: int = 3, hidden: int = 512, n_in: int = 64,
            classes: int = 10, batch: int = 32) -> list[tuple[str, float, float]]:
    """(product, microseconds, GFLOP/s) for one step's products of `members` stacked models."""
    m, g = members, members // folds
    a, h, dz = (torch.randn(m, batch, hidden), torch.randn(m, hidden, batch),
                torch.randn(m, classes, batch))
    w_rm, w_fm = torch.randn(m, hidden, classes), torch.randn(m, classes, hidden)
    x = torch.randn(folds, batch, n_in)
    w0 = torch.randn(folds, g * hidden, n_in)
    dz0 = torch.randn(folds, g * hidden, batch)
    out = m * batch * hidden * classes * 2
    first = folds * g * hidden * n_in * batch * 2
    rows = [
        ("output fwd, row-major  [B,h]@[h,C]", lambda: torch.bmm(a, w_rm), out),
        ("output dW,  row-major  [h,B]@[B,C]", lambda: torch.bmm(a.transpose(1, 2),
                                                                 dz.transpose(1, 2)), out),
        ("output fwd, feature-major [C,h]@[h,B]", lambda: torch.bmm(w_fm, h), out),
        ("output dW,  feature-major [C,B]@[B,h]", lambda: torch.bmm(dz, h.transpose(1, 2)), out),
        ("output da,  feature-major [h,C]@[C,B]", lambda: torch.bmm(w_fm.transpose(1, 2), dz),
         out),
        ("first fwd,  per fold [G*h,in]@[in,B]", lambda: torch.bmm(w0, x.transpose(1, 2)), first),
        ("first dW,   per fold [G*h,B]@[B,in]", lambda: torch.bmm(dz0, x), first),
    ]
    res = []
    for name, fn, flops in rows:
        us = _us(fn)
        res.append((name, us, flops / us / 1e3))
    return res


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, us, gf in layouts():
        print(f"{name:42s} {us:8.1f} us {gf:6.1f} GFLOP/s")
