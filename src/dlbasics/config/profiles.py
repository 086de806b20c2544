"""The `profile` switch and the `profiles` it names: settings laid over the file before it is
validated (a full-size image set, the real Fashion-MNIST). `dlbasics.config.overlay` lays them.
"""

from __future__ import annotations

from typing import Any

from dlbasics.config.base import Strict

IMAGE_KINDS = ("digits", "mnist", "fashion_mnist")


class ProfileSpec(Strict):
    """Settings laid over the file when `profile` names this entry: a switch for a whole kind
    of run (e.g. a full-size image set) that leaves every entry's own settings in place for
    the default. Applied before validation, so DVC, the train stage's skipping and MLflow all
    see each variant's settings as resolved."""

    description: str = ""
    # Key paths of the whole file set first, each to the value as written (a mapping replaces
    # the entry whole): e.g. data.images to a Fashion-MNIST folder, train.softmax.seeds, a
    # search's grid. The sections below then apply to the result.
    overrides: dict[str, Any] = {}
    # Keys set in prepare.<name> of every image dataset (kind digits, mnist, fashion_mnist).
    prepare: dict[str, Any] = {}
    # Key paths (e.g. batch_size, optimizer.lr) set in every variant trained on an image dataset.
    variants: dict[str, Any] = {}
    # Keys set in every search whose base variant trains on an image dataset (e.g. max_rows).
    searches: dict[str, Any] = {}
    # lesson name -> keys set in that entry of `lessons`.
    lessons: dict[str, dict[str, Any]] = {}
