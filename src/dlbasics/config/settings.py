"""The settings of a run that are not hyper-parameters: `runtime` (device, threads, the Ray
cluster) and `tracking` (the MLflow store, experiment and registry).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from dlbasics.config.base import KeyProblem, Strict

# ----------------------------------------------------------------------------- runtime / tracking


class RaySettings(Strict):
    """Where and how the select stages run their jobs when runtime.executor is ray."""

    # host:port of the head's GCS, ray://host:port (Ray Client) or auto; RAY_ADDRESS wins.
    # None (and no RAY_ADDRESS): a private Ray instance on 127.0.0.1 for the stage's duration.
    address: str | None = None
    # CPUs a task declares (default: runtime.threads, the threads it computes with).
    cpus_per_task: Annotated[int, Field(ge=1, le=512)] | None = None
    # GPUs a task declares; above 0 the task trains on CUDA (not bit-identical to CPU).
    gpus_per_task: Annotated[float, Field(ge=0, le=16)] = 0.0
    # Times a task is run again when its worker process or node dies.
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3


class Runtime(Strict):
    """How to run, not what to compute: not a DVC dependency of any trained stage."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1, le=512)] = 2
    # Processes that train a search's configurations side by side (select stages, CPU only);
    # each one computes exactly as one process would, so the results do not depend on it.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Who runs a select stage's jobs: local processes (runtime.workers) or a Ray cluster
    # (runtime.ray). The same bits either way on CPU (tested).
    executor: Literal["local", "ray"] = "local"
    ray: RaySettings = RaySettings()


class Registry(Strict):
    """What goes to the MLflow Model Registry (dlbasics.tracking.registry): every search's refitted
    winner (or those in `searches`) and the train variants in `variants`, as versions of one
    registered model, named `model`; alias `champion` on the best test score."""

    model: Annotated[str, Field(min_length=1, max_length=128)]
    searches: list[str] | None = None  # names under select.searches; None: every search
    variants: list[str] = []  # names under train

    @model_validator(mode="after")
    def _name_fits_a_uri(self) -> Registry:
        if not _REGISTERED_NAME.fullmatch(self.model):
            raise KeyProblem(("model",), "letters, digits, '.', '_' or '-', starting with a "
                              "letter or digit (it is written models:/<model>@champion)",
                              self.model)
        return self


_REGISTERED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Tracking(Strict):
    experiment: Annotated[str, Field(min_length=1)] = "dlbasics"
    log_models: bool = True
    registry: Registry | None = None  # None: nothing is registered
