"""Atomic, deterministic file output and content digests.

Every output is written to a temporary name beside its target and renamed into place, so a
killed process never leaves a half-written file where DVC (or the next stage) would trust it.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# In a model directory (dlbasics.learn.modelfiles): its evaluation files (gathered by `collect`)
# and the per-epoch history of its final fit.
EVAL_DIR = "eval"
HISTORY = "history.json"


def _remove_stale(path: Path) -> None:
    """Remove temporary siblings of `path` left by a writer that was killed (kill -9 gives no
    chance to clean up). One stage writes a given output at a time (DVC locks the repository),
    so any such sibling is stale."""
    if not path.parent.is_dir():
        return
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if stale.name.endswith((".tmp", ".old")):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps_json(obj: Any) -> str:
    """Stable JSON: sorted keys, fixed indentation, trailing newline, no NaN."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_bytes_atomic(path, dumps_json(obj).encode())


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def npy_bytes(array: np.ndarray) -> bytes:
    """The .npy encoding of `array` (deterministic: no timestamps, unlike .npz)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` whole.

    On any error (or a kill) the temporary directory is removed and `path` is left as it was.
    """
    path = Path(path)
    # Parents made here are removed again if the work fails: nothing new is left behind.
    made = [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    try:
        yield tmp
        # Two renames: the window without `path` is as short as the filesystem allows.
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        if not path.exists():
            for parent in reversed(made):
                try:
                    parent.rmdir()  # only if still empty
                except OSError:
                    break


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """A prepared dataset's one content digest: sha256 of its manifest's {file: sha256} map (the
    digest MLflow records for the dataset, the report shows and model.json keeps)."""
    return sha256_bytes(json.dumps(manifest.get("sha256", {}), sort_keys=True).encode())
