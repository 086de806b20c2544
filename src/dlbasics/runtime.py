"""Runtime settings kept apart from hyper-parameters: device and threads.

The device is resolved once per stage and passed in; it never changes shuffling or
initialisation (those draw from CPU generators), only where the arithmetic runs.
"""

from __future__ import annotations

import os

import torch

from dlbasics.config.settings import Runtime
from dlbasics.errors import ConfigError


def configure(runtime: Runtime, source: str = "params.yaml") -> torch.device:
    """Fix threads and deterministic kernels, and resolve `runtime.device` to a torch.device."""
    # The thread count is fixed because it can change the order of float reductions.
    torch.set_num_threads(runtime.threads)
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{source}: runtime.device: expected a CUDA GPU for 'cuda', found none on this "
            "machine; set runtime.device to auto or cpu"
        )
    if runtime.device == "cpu" or not torch.cuda.is_available():
        # The CPU kernels used here are deterministic already; switching the global flag on
        # would import torch._inductor (4 s per stage) for nothing.
        return torch.device("cpu")
    # cuBLAS needs a fixed workspace for deterministic matmuls.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    return torch.device("cuda")
