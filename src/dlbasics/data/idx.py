"""MNIST and Fashion-MNIST from their IDX files: a reader and writer, a checked loader, a fetcher.

IDX (LeCun's format): magic `00 00 <type> <ndim>`, then `ndim` big-endian uint32 dimensions, then
the values in C order, big-endian. Each set is four files, raw or gzip-compressed:
  train-images-idx3-ubyte  [N_train, 28, 28] uint8    train-labels-idx1-ubyte  [N_train] uint8
  t10k-images-idx3-ubyte   [N_test, 28, 28] uint8     t10k-labels-idx1-ubyte   [N_test] uint8

A set is known by the sha256 of each file's decompressed IDX bytes (`content_identity`), never
by its folder or its compression: Debian's re-compressed .gz files, the published ones and the
raw files are the same set.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import queue
import shutil
import socket
import struct
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt

from dlbasics.errors import DataError
from dlbasics.io import write_bytes_atomic

# The four files of a set, by the array each one holds.
FILES: dict[str, str] = {
    "X_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "X_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
OFFICIAL_SIZES: tuple[int, int] = (60_000, 10_000)  # (N_train, N_test) of both sets
IMAGE_SHAPE: tuple[int, int] = (28, 28)

_GZIP_MAX_RATIO = 1032  # deflate expands at most ~1032x

# IDX type code -> numpy dtype (big-endian where it matters).
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class IdxDataset:
    """One published IDX set: where torchvision keeps it and gets it, each .gz's md5, classes."""

    name: str
    torchvision_class: str  # also the folder torchvision writes: <root>/<class>/raw
    mirrors: tuple[str, ...]  # base URLs torchvision tries in turn
    md5: Mapping[str, str]  # published md5 per .gz file name (what torchvision checks)
    sha256: Mapping[str, str]  # the official sha256 of each file's decompressed IDX bytes
    class_names: tuple[str, ...]


# The sha256 of each file's decompressed IDX bytes, as published with the sets (the same bytes
# the published .gz files hold; Debian's re-compressed copies hold them too).
_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# As published, and as torchvision's `mirrors` and `resources` list them (a test holds them
# equal); kept here so that an offline failure is known before torchvision is imported.
DATASETS: dict[str, IdxDataset] = {
    "mnist": IdxDataset(
        name="mnist",
        torchvision_class="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        sha256=_MNIST_SHA256,
        class_names=tuple(str(d) for d in range(10)),
    ),
    "fashion_mnist": IdxDataset(
        name="fashion_mnist",
        torchvision_class="FashionMNIST",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        sha256=_FASHION_SHA256,
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
    ),
}


def dataset_spec(name: str) -> IdxDataset:
    if name not in DATASETS:
        raise DataError(f"{name}: not an IDX dataset; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# ----------------------------------------------------------------------------- read / write


def _read_exact(fh: BinaryIO, n: int) -> bytearray:
    """Up to n bytes from fh into one writable buffer (fewer only at end of file)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = fh.readinto(view[got:])
        if not k:
            break
        got += k
    del view
    return buf if got == n else buf[:got]


_FIX = "replace it with an intact copy"  # what a damaged file's message tells the user to do


def _read_idx_header(fh: BinaryIO, path: Path, kind: str) -> tuple[int, tuple[int, ...], bytes]:
    """(type code, dims, the header's bytes) of the IDX file open at `fh`; DataError if
    malformed."""
    head = _read_exact(fh, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (magic {bytes(head).hex() or 'empty'}, expected "
            f"00 00 <type 08/09/0b/0c/0d/0e> <ndim>); {_FIX}"
        )
    ndim = head[3]
    raw_dims = _read_exact(fh, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{path}: truncated header: {ndim} dims need {4 + 4 * ndim} bytes, found "
            f"{4 + len(raw_dims)} {kind}bytes; {_FIX}"
        )
    return head[2], struct.unpack(f">{ndim}I", raw_dims), bytes(head + raw_dims)


def _read_idx_payload(path: Path) -> tuple[int, tuple[int, ...], bytearray, str]:
    """(type code, dims, payload, sha256 of the decompressed bytes) of an IDX file whose size is
    exactly what its header says."""
    opener = gzip.open if path.suffix == ".gz" else open
    kind = "decompressed " if path.suffix == ".gz" else ""
    try:
        with opener(path, "rb") as fh:
            code, dims, head = _read_idx_header(fh, path, kind)
            dtype = _IDX_TYPES[code]
            header = 4 + 4 * len(dims)
            expected = header + math.prod(dims) * dtype.itemsize
            # A corrupt header can claim any size: allocate no more than the file could hold.
            limit = path.stat().st_size * (_GZIP_MAX_RATIO if kind else 1)
            need = expected - header
            payload = _read_exact(fh, need) if need <= limit else bytearray()
            extra = 0
            while block := fh.read(1 << 20):
                extra += len(block)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a valid or complete gzip file ({exc}); {_FIX}") from None
    found = header + len(payload) + extra
    if found != expected:
        what = "truncated" if found < expected else "trailing bytes"
        shape = " x ".join(map(str, dims))
        raise DataError(
            f"{path}: {what}: header says {shape} {dtype.name} = {expected} {kind}bytes, "
            f"found {found}; {_FIX}"
        )
    digest = hashlib.sha256(head)
    digest.update(payload)
    return code, dims, payload, digest.hexdigest()


def _check_idx_expectations(
    path: Path,
    code: int,
    dims: tuple[int, ...],
    expect_dtype: npt.DTypeLike | None,
    expect_ndim: int | None,
    expect_shape_tail: tuple[int, ...] | None,
) -> None:
    """DataError naming `path` when its type or dims are not what the caller expects."""
    dtype = _IDX_TYPES[code]
    if expect_dtype is not None and dtype.newbyteorder("=") != np.dtype(expect_dtype):
        raise DataError(
            f"{path}: holds {dtype.name} values (type 0x{code:02x}), expected "
            f"{np.dtype(expect_dtype).name}; is it the right file?"
        )
    if expect_ndim is not None and len(dims) != expect_ndim:
        raise DataError(
            f"{path}: has {len(dims)} dims {tuple(dims)}, expected {expect_ndim}; is it the right "
            f"file (images are 3-d, labels 1-d)?"
        )
    if expect_shape_tail is not None and tuple(dims[1:]) != tuple(expect_shape_tail):
        raise DataError(
            f"{path}: items are {tuple(dims[1:])}, expected {tuple(expect_shape_tail)}; "
            f"is it the right file?"
        )


def read_idx(
    path: str | Path,
    *,
    expect_dtype: npt.DTypeLike | None = np.uint8,
    expect_ndim: int | None = None,
    expect_shape_tail: tuple[int, ...] | None = None,
) -> np.ndarray:
    """The array in an IDX file (gzip when the name ends in .gz), shape = its header's dims.

    The payload is read once into a writable buffer and viewed, not copied (uint8/int8; wider
    types are converted to native byte order). Any disagreement between header, expectations and
    the file's exact size raises DataError naming the file.
    """
    return read_idx_digest(path, expect_dtype=expect_dtype, expect_ndim=expect_ndim,
                           expect_shape_tail=expect_shape_tail)[0]


def read_idx_digest(
    path: str | Path,
    *,
    expect_dtype: npt.DTypeLike | None = np.uint8,
    expect_ndim: int | None = None,
    expect_shape_tail: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, str]:
    """read_idx's array and the sha256 of the file's IDX bytes (decompressed for a .gz): the
    same digest for a raw file and any gzip of it."""
    path = Path(path)
    code, dims, payload, digest = _read_idx_payload(path)
    _check_idx_expectations(path, code, dims, expect_dtype, expect_ndim, expect_shape_tail)
    dtype = _IDX_TYPES[code]
    array = np.frombuffer(payload, dtype=dtype).reshape(dims)
    return (array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))), digest


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"IDX cannot hold {array.dtype}; use one of {sorted(map(str, codes))}")
    if array.ndim == 0 or array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX needs 1 to 255 dims each < 2**32, got shape {array.shape}")
    header = struct.pack(">HBB", 0, codes[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzip-compressed when the name ends in .gz (atomically).

    gzip's header gets mtime 0 and no name, so the same array always gives the same bytes.
    """
    path = Path(path)
    data = idx_bytes(array)
    write_bytes_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


# ----------------------------------------------------------------------------- load


def _candidate_dirs(directory: Path, spec: IdxDataset) -> list[Path]:
    """`directory` itself, then the layout torchvision writes under it."""
    return [directory, directory / spec.torchvision_class / "raw"]


def _pick(folder: Path, stem: str) -> Path | None:
    """The raw file if present (no decompression), else the .gz, else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_idx_files(
    directory: str | Path, name: str, params_key: str | None = None
) -> dict[str, Path]:
    """The four files of `name` in `directory` or `directory/<TorchvisionClass>/raw`, by key.

    The first of the two folders holding any of the files is used; a missing file raises.
    """
    directory, spec = Path(directory), dataset_spec(name)
    folders = _candidate_dirs(directory, spec)
    holding = [f for f in folders if any(_pick(f, s) for s in FILES.values())]
    folder = holding[0] if holding else directory
    found = {key: _pick(folder, stem) for key, stem in FILES.items()}
    missing = [f"{FILES[k]}(.gz)" for k, p in found.items() if p is None]
    if missing:
        where = f"{folder}" if holding else f"{directory} (nor {folders[1]})"
        debian = (" (on Debian, `apt-get install dataset-fashion-mnist` puts them in "
                  "/usr/share/datasets/fashion-mnist)"
                  if name == "fashion_mnist" and not holding else "")
        raise DataError(
            f"{where}: missing {', '.join(missing)} for {name}; put the four IDX files "
            f"({', '.join(FILES.values())}, raw or .gz) there{debian}, "
            f"or set data.{params_key or name}.source: download"
        )
    return {k: p for k, p in found.items() if p is not None}


def content_identity(name: str, digests: Mapping[str, str]) -> str:
    """What a set is, from the sha256 of its four files' IDX bytes (by file stem): `name` itself
    for the official files, else `name-<12 hex digits>` of the digests. No path, no compression."""
    digests = {stem: digests[stem] for stem in FILES.values()}
    if digests == dict(dataset_spec(name).sha256):
        return name
    blob = json.dumps(digests, sort_keys=True).encode()
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:12]}"


def _check_digest(path: Path, name: str, stem: str, found: str, expected: str,
                  params_key: str | None, official: bool) -> None:
    if found == expected:
        return
    what = f"the official {name} {stem}" if official else f"the sha256 given for {stem}"
    fix = ("replace it with the official file" + (
        " (Debian: apt-get install dataset-fashion-mnist)" if name == "fashion_mnist" else "")
        + f", or, for a set of your own, set data.{params_key or name}.verify_checksums: false")
    raise DataError(f"{path}: decompressed content has sha256 {found}, expected {expected} "
                    f"({what}); the file is damaged or not that file: {fix}")


def load_idx_dataset(
    directory: str | Path,
    name: str,
    *,
    params_key: str | None = None,
    expected_sizes: tuple[int, int] | None = OFFICIAL_SIZES,
    verify_checksums: bool = True,
    digests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Load and check one set: X_train [N, 28, 28] uint8, y_train [N] int64, X_test, y_test.

    directory: holds the four files (raw or .gz; raw preferred), directly or as torchvision
      lays them out (`<directory>/MNIST/raw`).
    expected_sizes: (N_train, N_test); None accepts any size (a custom or tiny set).
    verify_checksums: each file's decompressed IDX bytes must have the official sha256 (or the
      one in `digests`), whatever the compression: Debian's, the published and raw files pass.
    digests: sha256 per file stem, overriding the official ones (a custom set's own).
    Returns also class_names, source: [{"file": stem, "sha256": of the IDX bytes}] and
    identity (content_identity).
    """
    spec = dataset_spec(name)
    paths = locate_idx_files(directory, name, params_key)
    expected = {**spec.sha256, **(digests or {})}
    out: dict[str, Any] = {}
    found: dict[str, str] = {}
    for key, path in paths.items():
        stem = FILES[key]
        if key.startswith("X"):
            out[key], found[stem] = read_idx_digest(path, expect_ndim=3,
                                                    expect_shape_tail=IMAGE_SHAPE)
        else:
            labels, found[stem] = read_idx_digest(path, expect_ndim=1)
            if labels.size and labels.max() >= len(spec.class_names):
                bad = int(np.argmax(labels >= len(spec.class_names)))
                raise DataError(
                    f"{path}: label {labels[bad]} at index {bad} is outside 0..9 for {name}; "
                    f"is it the right file?"
                )
            out[key] = labels.astype(np.int64)
        if verify_checksums:
            _check_digest(path, name, stem, found[stem], expected[stem], params_key,
                          official=stem not in (digests or {}))
    for split, n_expected in zip(("train", "test"), expected_sizes or (None, None)):
        n_images, n_labels = len(out[f"X_{split}"]), len(out[f"y_{split}"])
        if n_images != n_labels:
            raise DataError(
                f"{paths[f'X_{split}'].parent}: {name} {split} has {n_images} images in "
                f"{paths[f'X_{split}'].name} but {n_labels} labels in "
                f"{paths[f'y_{split}'].name}; the two files must come from the same set"
            )
        if n_expected is not None and n_images != n_expected:
            raise DataError(
                f"{paths[f'X_{split}']}: {n_images} {split} images, the official {name} has "
                f"{n_expected}; use the official files, or, for a custom set, expected_sizes=None"
            )
    out["class_names"] = list(spec.class_names)
    out["source"] = [{"file": stem, "sha256": found[stem]} for stem in FILES.values()]
    out["identity"] = content_identity(name, found)
    return out


# ----------------------------------------------------------------------------- fetch


def _unreachable(urls: Sequence[str], timeout: float) -> list[str]:
    """Probe each URL's host:port in parallel, `timeout` seconds in all (DNS included).

    Returns [] as soon as one answers, else one 'host:port (reason)' per URL.
    """
    answers: queue.Queue[tuple[str, str, str | None]] = queue.Queue()

    def probe(url: str) -> None:
        parts = urlparse(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        where = f"{host}:{port}"
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answers.put((url, where, None))
        except OSError as exc:
            answers.put((url, where, exc.strerror or str(exc) or type(exc).__name__))

    # Daemon threads: a resolver that hangs past the deadline cannot hold the process.
    for url in urls:
        threading.Thread(target=probe, args=(url,), daemon=True).start()
    deadline = time.monotonic() + timeout
    failures = {url: f"{url} (no answer in {timeout:g} s)" for url in urls}
    for _ in urls:
        try:
            url, where, reason = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if reason is None:
            return []
        failures[url] = f"{where} ({reason})"
    return [failures[url] for url in urls]  # in mirror order, whichever answered first


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` and its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def _remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove each of `folders` in turn (deepest first) until one is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _local_copy(
    root: Path,
    name: str,
    params_key: str | None,
    expected_sizes: tuple[int, int] | None,
    checksums: Mapping[str, str] | None,
    digests: Mapping[str, str] | None,
    verify_checksums: bool,
) -> Path | None:
    """The folder under `root` holding all four files of `name`, checked; None if any is missing."""
    try:
        paths = locate_idx_files(root, name, params_key)
    except DataError:
        return None
    # All four present: check them (raw files have no published md5; .gz files do).
    load_idx_dataset(root, name, expected_sizes=expected_sizes, params_key=params_key,
                     **_verification(verify_checksums, checksums, digests))
    return paths["X_train"].parent


def _verification(verify: bool, checksums: Mapping[str, str] | None,
                  digests: Mapping[str, str] | None) -> dict[str, Any]:
    """load_idx_dataset's checks for fetched files: the official content digests, or a custom
    set's own; a custom set given only by its .gz md5s was checked by torchvision's download."""
    return {"verify_checksums": verify and (checksums is None or digests is not None),
            "digests": digests}


def _offline_fix(name: str, params_key: str | None) -> str:
    """How to supply `name`'s files without network, the end of a failed fetch's message."""
    return (
        f"put the four IDX files ({', '.join(FILES.values())}, raw or .gz) in a folder and set "
        f"data.{params_key or name}.source: local and "
        f"data.{params_key or name}.path: <that folder>"
    )


def _torchvision_source(spec: IdxDataset, urls: list[str], md5s: Mapping[str, str]) -> type:
    """torchvision's dataset class for `spec`, made to download from `urls` and check `md5s`."""
    import torchvision.datasets as tvd  # lazily: heavy, and only needed to download

    base = getattr(tvd, spec.torchvision_class)
    # Same class name, so torchvision still writes <root>/<class>/raw.
    return type(base.__name__, (base,), {
        "mirrors": urls,
        "resources": [(f"{stem}.gz", md5s[f"{stem}.gz"]) for stem in FILES.values()],
    })


def _download(source: type, folder: Path, timeout: float, name: str, url: str, fix: str) -> None:
    """`source` downloads into `folder`, each network read bounded by `timeout` seconds."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        source(root=folder, train=True, download=True)
    except (RuntimeError, URLError, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{name}: download from {url} failed ({reason}); {fix}") from None
    finally:
        socket.setdefaulttimeout(previous)


def fetch(
    name: str,
    root: str | Path,
    *,
    params_key: str | None = None,
    timeout: float = 5.0,
    expected_sizes: tuple[int, int] | None = OFFICIAL_SIZES,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    digests: Mapping[str, str] | None = None,
    verify_checksums: bool = True,
) -> Path:
    """Download `name` through torchvision into `root/<TorchvisionClass>/raw`; return that folder.

    Files already in `root` (either layout) are checked and used, without network. Otherwise
    the host is probed first (`timeout` seconds: offline fails fast with one line), torchvision
    downloads into a temporary folder inside `root` and, once the files check out, it is renamed
    into place, so a failed or interrupted download leaves nothing half-written and no new empty
    folder. `timeout` also bounds each network read of the download.
    mirrors: base URLs to use instead of torchvision's; checksums: md5 per .gz overriding the
    published ones, which torchvision checks as it downloads (with mirrors, for a set served
    locally); digests: sha256 per file stem of such a set's IDX bytes, and verify_checksums:
    False for no content check (see load_idx_dataset).
    """
    spec, root = dataset_spec(name), Path(root)
    local = _local_copy(root, name, params_key, expected_sizes, checksums, digests,
                        verify_checksums)
    if local is not None:
        return local

    urls = list(spec.mirrors if mirrors is None else mirrors)
    if not urls:
        raise ValueError("fetch: mirrors must hold at least one base URL")
    fix = _offline_fix(name, params_key)
    failures = _unreachable(urls, timeout)
    if failures:
        raise DataError(
            f"{name}: cannot be fetched, no mirror reachable: {'; '.join(failures)}; "
            f"without network, {fix}"
        )
    source = _torchvision_source(spec, urls, {**spec.md5, **(checksums or {})})
    dest = root / spec.torchvision_class
    created = _missing_ancestors(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.torchvision_class}.", suffix=".fetching",
                                    dir=root))
        try:
            _download(source, tmp, timeout, name, urls[0], fix)
            load_idx_dataset(tmp, name, expected_sizes=expected_sizes, params_key=params_key,
                             **_verification(verify_checksums, checksums, digests))
            if dest.exists():  # an earlier, incomplete attempt: swap it out
                os.replace(dest, tmp / ".previous")
            os.replace(tmp / spec.torchvision_class, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        _remove_if_empty(created)  # only the folders this call made, and only if still empty
        raise
    return dest / "raw"
