"""Runtime settings kept apart from hyper-parameters: device and threads.

The device is resolved once per stage and passed in; it never changes shuffling or
initialisation (those draw from CPU generators), only where the arithmetic runs.
"""

from __future__ import annotations

import os

import torch

from dlbasics.config import ConfigError, Runtime


def configure(runtime: Runtime, source: str = "params.yaml") -> torch.device:
    """Fix threads and deterministic kernels, and resolve `runtime.device` to a torch.device."""
    # cuBLAS needs a fixed workspace for deterministic matmuls; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(runtime.threads)
    torch.use_deterministic_algorithms(True, warn_only=False)
    if runtime.device == "cpu":
        return torch.device("cpu")
    if runtime.device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{source}: runtime.device: expected a CUDA GPU for 'cuda', found none on this "
                "machine; set runtime.device to auto or cpu"
            )
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
