"""dlbasics.io beyond the success path (tests/test_data.py has that): the write that fails, the
temporary names the writers use, the stale files a killed writer leaves and the next one
removes, the exact bytes of the stable formats, and the dataset digest."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys

import numpy as np
import pytest

from dlbasics.io import (
    atomic_directory,
    dumps_json,
    manifest_digest,
    npy_bytes,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

# Python's audit events name every temporary file and folder as it is made: the writers'
# temporary names, seen without changing the code under test.
_SEEN: list[tuple[str, tuple]] | None = None


def _hook(event: str, args: tuple) -> None:
    if _SEEN is not None and event in ("tempfile.mkstemp", "tempfile.mkdtemp", "os.rename"):
        _SEEN.append((event, args))


sys.addaudithook(_hook)


@pytest.fixture
def seen():
    global _SEEN
    _SEEN = []
    yield _SEEN
    _SEEN = None


def test_a_failed_write_raises_its_error_and_leaves_no_temporary_file(tmp_path):
    # A folder where the file should go: the final rename fails, after the data was written.
    target = tmp_path / "out.json"
    (target / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        write_bytes_atomic(target, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    assert [p.name for p in target.iterdir()] == ["inside"]


def test_a_write_of_bad_data_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "text, not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_the_temporary_file_is_a_hidden_sibling_named_for_its_target(tmp_path, seen):
    target = tmp_path / "sub" / "m.json"
    write_bytes_atomic(target, b"x")
    made = [a[0] for e, a in seen if e == "tempfile.mkstemp"]
    assert len(made) == 1
    tmp = made[0]
    # Beside the target (one filesystem: the rename is atomic), hidden, and of the form the
    # next writer's stale-file sweep removes: .<name>.<random>.tmp
    assert os.path.dirname(tmp) == str(target.parent)
    assert re.fullmatch(r"\.m\.json\..+\.tmp", os.path.basename(tmp)), tmp


def test_the_temporary_folder_is_a_hidden_sibling_named_for_its_target(tmp_path, seen):
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "f").write_text("x")
    made = [a[0] for e, a in seen if e == "tempfile.mkdtemp"]
    assert len(made) == 1 and os.path.dirname(made[0]) == str(tmp_path)
    assert re.fullmatch(r"\.d\..+\.tmp", os.path.basename(made[0])), made[0]


def _stale(folder, name):
    """What a killed writer of `name` leaves in `folder`: a temporary file and folder, an .old."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f".{name}.abc123.tmp").write_bytes(b"half")
    (folder / f".{name}.def456.tmp").mkdir()
    (folder / f".{name}.def456.tmp" / "part").write_bytes(b"half")
    (folder / f".{name}.789.old").mkdir()
    (folder / f".{name}.789.old" / "was").write_bytes(b"old")


@pytest.mark.parametrize("write", ["file", "folder"])
def test_the_next_writer_removes_what_a_killed_one_left_and_nothing_else(tmp_path, write):
    name = "m.json" if write == "file" else "d"
    _stale(tmp_path, name)
    keep = [".other.abc.tmp", f".{name}.abc.keep", f"{name}.abc.tmp", f".{name}x.abc.tmp"]
    for k in keep:
        (tmp_path / k).write_bytes(b"not ours")
    # A stale temporary name that is a link to a folder: the link goes, the folder it points at
    # (someone else's) stays whole.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "precious").write_bytes(b"keep")
    (tmp_path / f".{name}.link.tmp").symlink_to(tmp_path / "elsewhere")
    if write == "file":
        write_bytes_atomic(tmp_path / name, b"new")
    else:
        with atomic_directory(tmp_path / name) as tmp:
            (tmp / "f").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "elsewhere", *keep])
    assert (tmp_path / "elsewhere" / "precious").read_bytes() == b"keep"


def test_text_and_json_writers_write_utf8(tmp_path):
    write_text_atomic(tmp_path / "t.txt", "μ = 0.5\n")
    assert (tmp_path / "t.txt").read_bytes() == "μ = 0.5\n".encode()
    write_json_atomic(tmp_path / "j.json", {"b": 1, "a": "é"})
    assert (tmp_path / "j.json").read_text() == dumps_json({"a": "é", "b": 1})


def test_dumps_json_exact_form():
    assert dumps_json({"b": [1, 2], "a": {"d": 1.5, "c": None}}) == (
        '{\n  "a": {\n    "c": null,\n    "d": 1.5\n  },\n  "b": [\n    1,\n    2\n  ]\n}\n')


def test_npy_bytes_is_numpy_load_able_and_refuses_objects():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    import io

    back = np.load(io.BytesIO(npy_bytes(a)), allow_pickle=False)
    assert back.dtype == a.dtype and np.array_equal(back, a)
    # No pickles in a DVC output: an object array is refused, not pickled.
    with pytest.raises(ValueError):
        npy_bytes(np.array([{"a": 1}], dtype=object))


@pytest.mark.parametrize("size", [0, 1, 5, 1 << 20, (1 << 20) + 3])
def test_sha256_file_equals_hashlib_over_chunk_edges(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f", chunk=7) == hashlib.sha256(data).hexdigest()


def test_manifest_digest_is_the_sha256_of_the_sorted_file_map():
    files = {"y_train.npy": "b" * 64, "X_train.npy": "a" * 64}
    want = hashlib.sha256(json.dumps(dict(sorted(files.items()))).encode()).hexdigest()
    assert manifest_digest({"sha256": files, "task": "classification"}) == want
    # The order of the map and the manifest's other keys do not change it; a file's digest does.
    assert manifest_digest({"sha256": dict(reversed(list(files.items())))}) == want
    assert manifest_digest({"sha256": {**files, "X_train.npy": "c" * 64}}) != want
    assert manifest_digest({}) == hashlib.sha256(b"{}").hexdigest()
