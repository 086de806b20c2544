"""IDX reading, checking, loading and fetching, on tiny files the tests write (all offline).

Oracles: the IDX format itself (bytes packed by hand here), torchvision's own IDX parser and
its published md5 table, hashlib, and a real HTTP server on 127.0.0.1 for the download path.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import http.server
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dlbasics.data.idx import (
    DATASETS,
    FILES,
    OFFICIAL_SIZES,
    fetch,
    idx_bytes,
    load_idx_dataset,
    read_idx,
    write_idx,
)
from dlbasics.errors import DataError


def make_set(folder: Path, *, n_train: int = 5, n_test: int = 3, gz: bool = False,
             seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny, valid set of the four files into folder; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "X_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "X_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in FILES.items():
        write_idx(folder / (f"{stem}.gz" if gz else stem), arrays[key])
    return arrays


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ----------------------------------------------------------------------------- format


def test_reader_against_bytes_packed_by_hand(tmp_path):
    n = 2
    pixels = bytes(range(256)) * (n * 28 * 28 // 256) + bytes(n * 28 * 28 % 256)
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", n, 28, 28) + pixels)
    labels = tmp_path / "labels"
    labels.write_bytes(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 4) + bytes([7, 0, 9, 3]))

    images = read_idx(path, expect_ndim=3, expect_shape_tail=(28, 28))
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert images.tobytes() == pixels
    assert images[0, 0, 5] == 5 and images[0, 10, 0] == (10 * 28) % 256  # C order
    assert read_idx(labels, expect_ndim=1).tolist() == [7, 0, 9, 3]
    # The writer produces exactly those bytes.
    assert idx_bytes(images) == path.read_bytes()


def test_multibyte_types_are_big_endian(tmp_path):
    path = tmp_path / "ints"
    path.write_bytes(struct.pack(">HBB", 0, 0x0C, 2) + struct.pack(">II", 1, 2)
                     + struct.pack(">ii", -2, 70000))
    values = read_idx(path, expect_dtype=np.int32)
    assert values.tolist() == [[-2, 70000]] and values.dtype == np.dtype("int32")
    floats = np.array([1.5, -0.25], dtype=np.float32)
    write_idx(tmp_path / "floats", floats)
    expected = struct.pack(">I", 2) + struct.pack(">ff", 1.5, -0.25)
    assert (tmp_path / "floats").read_bytes() == struct.pack(">HBB", 0, 0x0D, 1) + expected


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_raw_and_gzip(tmp_path, suffix):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    path = tmp_path / f"train-images-idx3-ubyte{suffix}"
    write_idx(path, images)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    back = read_idx(path, expect_ndim=3, expect_shape_tail=(28, 28))
    np.testing.assert_array_equal(back, images)
    assert back.flags.writeable  # torch.from_numpy takes it without a warning
    for dtype in (np.int8, np.int16, np.int32, np.float32, np.float64):
        values = rng.normal(0, 100, (3, 2)).astype(dtype)
        write_idx(tmp_path / f"v{suffix}", values)
        np.testing.assert_array_equal(read_idx(tmp_path / f"v{suffix}", expect_dtype=dtype), values)


def test_gzip_output_is_deterministic(tmp_path):
    a = np.arange(28 * 28, dtype=np.uint8).reshape(1, 28, 28)
    write_idx(tmp_path / "a.gz", a)
    time.sleep(1.1)  # a timestamp in the gzip header would now differ
    write_idx(tmp_path / "b.gz", a)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_reader_agrees_with_torchvision_parser(tmp_path):
    from torchvision.datasets.mnist import read_image_file, read_label_file

    arrays = make_set(tmp_path)
    images = read_image_file(str(tmp_path / FILES["X_train"]))
    labels = read_label_file(str(tmp_path / FILES["y_train"]))
    np.testing.assert_array_equal(read_idx(tmp_path / FILES["X_train"]), images.numpy())
    np.testing.assert_array_equal(read_idx(tmp_path / FILES["y_train"]), labels.numpy())
    assert torch.equal(torch.from_numpy(arrays["X_train"]), images)


def test_bad_magic_and_wrong_type(tmp_path):
    good = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "a").write_bytes(b"\x01" + good[1:])
    with pytest.raises(DataError, match=r"a: not an IDX file \(magic 0100"):
        read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(good[:2] + b"\x07" + good[3:])  # 0x07 is no IDX type
    with pytest.raises(DataError, match="b: not an IDX file"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"")
    with pytest.raises(DataError, match=r"c: not an IDX file \(magic empty"):
        read_idx(tmp_path / "c")
    write_idx(tmp_path / "d", np.zeros((2, 28, 28), np.int32))
    with pytest.raises(DataError, match=r"d: holds int32 values \(type 0x0c\), expected uint8"):
        read_idx(tmp_path / "d")
    (tmp_path / "e.gz").write_bytes(good)  # named .gz, not gzip
    with pytest.raises(DataError, match="e.gz: not a valid or complete gzip file"):
        read_idx(tmp_path / "e.gz")
    with pytest.raises(DataError, match="nope: no such file"):
        read_idx(tmp_path / "nope")


def test_wrong_ndim_and_item_shape(tmp_path):
    write_idx(tmp_path / "labels", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"labels: has 1 dims \(5,\), expected 3"):
        read_idx(tmp_path / "labels", expect_ndim=3)
    write_idx(tmp_path / "small", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"small: items are \(8, 8\), expected \(28, 28\)"):
        read_idx(tmp_path / "small", expect_shape_tail=(28, 28))


def test_labels_file_in_place_of_images_is_named(tmp_path):
    make_set(tmp_path)
    # The labels file copied over the images file: a 1-d array where images (3-d) belong.
    (tmp_path / FILES["X_test"]).write_bytes((tmp_path / FILES["y_test"]).read_bytes())
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: has 1 dims .* expected 3"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_names_expected_and_found_size(tmp_path, suffix):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))  # 16 + 2352 = 2368 bytes
    cut = data[:-100]
    path = tmp_path / f"images{suffix}"
    path.write_bytes(gzip.compress(cut) if suffix else cut)
    kind = "decompressed " if suffix else ""
    with pytest.raises(DataError, match=rf"images{suffix}: truncated: header says 3 x 28 x 28 "
                                        rf"uint8 = 2368 {kind}bytes, found 2268"):
        read_idx(path)
    (tmp_path / "header").write_bytes(data[:9])
    with pytest.raises(DataError, match=r"header: truncated header: 3 dims need 16 bytes, "
                                        r"found 9 bytes"):
        read_idx(tmp_path / "header")


def test_header_claiming_more_than_the_file_holds(tmp_path):
    path = tmp_path / "huge"  # 2**32-1 x 2**32-1 x 28 bytes claimed, 4 given: no allocation
    path.write_bytes(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2**32 - 1, 2**32 - 1, 28)
                     + b"abcd")
    with pytest.raises(DataError, match=r"huge: truncated: .* found 20; "):
        read_idx(path)
    (tmp_path / "huge.gz").write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataError, match=r"huge.gz: truncated: .* decompressed bytes, found 20; "):
        read_idx(tmp_path / "huge.gz")


def test_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(5000, dtype=np.uint8) % 7))
    (tmp_path / "x.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="x.gz: not a valid or complete gzip file"):
        read_idx(tmp_path / "x.gz")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_trailing_bytes(tmp_path, suffix):
    data = idx_bytes(np.zeros(4, np.uint8)) + b"\x00" * 3  # 8 + 4 expected, 15 found
    path = tmp_path / f"labels{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError, match=rf"labels{suffix}: trailing bytes: header says 4 uint8 "
                                        r"= 12 (decompressed )?bytes, found 15"):
        read_idx(path)


def test_write_idx_rejects_what_idx_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot hold int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="1 to 255 dims"):
        write_idx(tmp_path / "x", np.array(3, np.uint8))
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- the table


def test_table_equals_torchvision():
    from torchvision.datasets import MNIST, FashionMNIST

    for name, tv in (("mnist", MNIST), ("fashion_mnist", FashionMNIST)):
        spec = DATASETS[name]
        assert [(f"{stem}.gz", spec.md5[f"{stem}.gz"]) for stem in FILES.values()] == tv.resources
        assert spec.torchvision_class == tv.__name__
        assert list(spec.mirrors) == tv.mirrors
    assert list(DATASETS["fashion_mnist"].class_names) == FashionMNIST.classes
    # torchvision names MNIST's classes "0 - zero" ...; ours are the digits.
    assert list(DATASETS["mnist"].class_names) == [c.split(" - ")[0] for c in MNIST.classes]
    assert list(DATASETS["mnist"].class_names) == [str(d) for d in range(10)]
    assert OFFICIAL_SIZES == (60000, 10000)


# ----------------------------------------------------------------------------- load


@pytest.mark.parametrize("gz", [False, True])
def test_load_tiny_set(tmp_path, gz):
    arrays = make_set(tmp_path, gz=gz)
    digests = {s: hashlib.sha256(idx_bytes(arrays[k])).hexdigest() for k, s in FILES.items()}
    data = load_idx_dataset(tmp_path, "fashion_mnist", expected_sizes=None, digests=digests)
    for key in FILES:
        np.testing.assert_array_equal(data[key], arrays[key])
    assert data["X_train"].dtype == np.uint8 and data["X_train"].shape == (5, 28, 28)
    assert data["y_train"].dtype == np.int64 and data["y_test"].shape == (3,)
    assert data["class_names"][0] == "T-shirt/top" and len(data["class_names"]) == 10
    # Each file by its stem and the sha256 of its IDX bytes, whatever its compression.
    raw_bytes = {s: gzip.decompress(p.read_bytes()) if gz else p.read_bytes()
                 for s in FILES.values() for p in [tmp_path / (f"{s}.gz" if gz else s)]}
    assert data["source"] == [{"file": s, "sha256": hashlib.sha256(raw_bytes[s]).hexdigest()}
                              for s in FILES.values()]


def test_official_sizes_are_the_default(tmp_path):
    make_set(tmp_path)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: 5 train images, the official "
                                        r"mnist has 60000"):
        load_idx_dataset(tmp_path, "mnist", verify_checksums=False)
    assert len(load_idx_dataset(tmp_path, "mnist", expected_sizes=(5, 3),
                                verify_checksums=False)["X_test"]) == 3


def test_raw_preferred_over_gz(tmp_path):
    raw = make_set(tmp_path, seed=1)
    make_set(tmp_path, gz=True, seed=2)  # different content, wrong md5: must not be read
    data = load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)
    np.testing.assert_array_equal(data["X_train"], raw["X_train"])
    assert [s["file"] for s in data["source"]] == list(FILES.values())


@pytest.mark.parametrize("gz", [False, True])
def test_content_checked_whatever_the_compression(tmp_path, gz):
    make_set(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    first = tmp_path / f"train-images-idx3-ubyte{suffix}"
    # A set of one's own cannot have the official digests: by default, an error that names the
    # first file, what it found and what was expected, and what to do, in one line.
    with pytest.raises(DataError) as err:
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None)
    found = hashlib.sha256(idx_bytes(read_idx(first))).hexdigest()
    official = DATASETS["mnist"].sha256["train-images-idx3-ubyte"]
    msg = str(err.value)
    assert msg.startswith(f"{first}: decompressed content has sha256 {found}, expected "
                          f"{official} (the official mnist train-images-idx3-ubyte); ")
    assert "verify_checksums: false" in msg and "\n" not in msg
    # Its own digests (by file stem, of the IDX bytes) are accepted; one wrong one is named.
    digests = {s: hashlib.sha256(idx_bytes(read_idx(tmp_path / f"{s}{suffix}"))).hexdigest()
               for s in FILES.values()}
    assert len(load_idx_dataset(tmp_path, "mnist", expected_sizes=None, digests=digests)
               ["y_test"]) == 3
    label_file = tmp_path / f"t10k-labels-idx1-ubyte{suffix}"
    with pytest.raises(DataError, match=rf"^{label_file}: decompressed content has sha256 "
                                        rf"{digests['t10k-labels-idx1-ubyte']}, expected 0+ "
                                        r"\(the sha256 given for t10k-labels-idx1-ubyte\)"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None,
                         digests={**digests, "t10k-labels-idx1-ubyte": "0" * 64})
    assert len(load_idx_dataset(tmp_path, "mnist", expected_sizes=None,
                                verify_checksums=False)["y_test"]) == 3


def test_identity_is_the_content(tmp_path):
    """The same arrays raw, gzipped at two levels, in two folders: one identity, one source
    record; one changed pixel: another identity. The official digests give the bare name."""
    arrays = make_set(tmp_path / "raw")
    for folder, level in (("gz1", 1), ("gz9", 9)):
        (tmp_path / folder).mkdir()
        for stem in FILES.values():
            (tmp_path / folder / f"{stem}.gz").write_bytes(
                gzip.compress((tmp_path / "raw" / stem).read_bytes(), compresslevel=level))
    loaded = [load_idx_dataset(tmp_path / f, "fashion_mnist", expected_sizes=None,
                               verify_checksums=False) for f in ("raw", "gz1", "gz9")]
    assert {d["identity"] for d in loaded} == {loaded[0]["identity"]}
    assert loaded[0]["identity"].startswith("fashion_mnist-") and len(loaded[0]["identity"]) == 26
    assert loaded[1]["source"] == loaded[0]["source"] == loaded[2]["source"]
    assert [s["file"] for s in loaded[0]["source"]] == list(FILES.values())
    arrays["X_test"][0, 0, 0] ^= 1
    write_idx(tmp_path / "raw" / FILES["X_test"], arrays["X_test"])
    changed = load_idx_dataset(tmp_path / "raw", "fashion_mnist", expected_sizes=None,
                               verify_checksums=False)
    assert changed["identity"] != loaded[0]["identity"]
    # content_identity: the bare name exactly for the official digests, for either set.
    from dlbasics.data.idx import content_identity

    for name, spec in DATASETS.items():
        assert content_identity(name, spec.sha256) == name
        other = {**spec.sha256, "t10k-labels-idx1-ubyte": "f" * 64}
        assert content_identity(name, other).startswith(f"{name}-")
    assert DATASETS["mnist"].sha256 != DATASETS["fashion_mnist"].sha256


def test_label_out_of_range(tmp_path):
    make_set(tmp_path)
    write_idx(tmp_path / FILES["y_train"], np.array([1, 2, 10, 3, 4], np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: label 10 at index 2 is "
                                        r"outside 0..9 for mnist"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)


def test_count_mismatch(tmp_path):
    make_set(tmp_path)
    write_idx(tmp_path / FILES["y_test"], np.array([1, 2], np.uint8))  # 3 images, 2 labels
    with pytest.raises(DataError, match=r"mnist test has 3 images in t10k-images-idx3-ubyte but "
                                        r"2 labels in t10k-labels-idx1-ubyte"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)


def test_missing_file_message(tmp_path):
    make_set(tmp_path)
    (tmp_path / FILES["y_train"]).unlink()
    with pytest.raises(DataError) as err:
        load_idx_dataset(tmp_path, "fashion_mnist", expected_sizes=None,
                         verify_checksums=False)
    assert str(err.value) == (
        f"{tmp_path}: missing train-labels-idx1-ubyte(.gz) for fashion_mnist; put the four IDX "
        f"files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte, raw or .gz) there, or set data.fashion_mnist.source: download"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=rf"{empty} \(nor {empty}/MNIST/raw\): missing "
                                        r"train-images-idx3-ubyte\(.gz\), train-labels"):
        load_idx_dataset(empty, "mnist")
    with pytest.raises(DataError, match="cifar: not an IDX dataset; known: fashion_mnist, mnist"):
        load_idx_dataset(tmp_path, "cifar")


def test_torchvision_layout_found(tmp_path):
    arrays = make_set(tmp_path / "FashionMNIST" / "raw", n_train=4)
    data = load_idx_dataset(tmp_path, "fashion_mnist", expected_sizes=(4, 3),
                            verify_checksums=False)
    np.testing.assert_array_equal(data["X_train"], arrays["X_train"])
    # MNIST's folder is another: not found under FashionMNIST's name.
    with pytest.raises(DataError, match="missing"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)


# ----------------------------------------------------------------------------- fetch


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def test_fetch_offline_fails_fast_and_leaves_nothing(tmp_path):
    from torchvision.datasets import MNIST

    if _reachable("ossci-datasets.s3.amazonaws.com", 443):
        pytest.skip("the network is up: this test is for the offline case")
    root = tmp_path / "data" / "raw"
    before = listing(tmp_path)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        fetch("mnist", root)
    assert time.monotonic() - start < 15  # in practice well under a second
    assert listing(tmp_path) == before
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("mnist: cannot be fetched, no mirror reachable: "
                          "ossci-datasets.s3.amazonaws.com:443 (")
    assert len(MNIST.mirrors) == 2 and "yann.lecun.com:80" in msg
    assert "data.mnist.source: local and data.mnist.path: <that folder>" in msg
    assert "t10k-labels-idx1-ubyte" in msg


def test_fetch_refused_mirror_fails_fast(tmp_path):
    # A port nothing listens on (bound, never listening): the connection is refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        before = listing(tmp_path)
        start = time.monotonic()
        with pytest.raises(DataError, match=rf"fashion_mnist: cannot be fetched, no mirror "
                                            rf"reachable: 127.0.0.1:{port} \(Connection refused\)"):
            fetch("fashion_mnist", tmp_path / "root", mirrors=[f"http://127.0.0.1:{port}/"])
        assert time.monotonic() - start < 15
    assert listing(tmp_path) == before


def test_fetch_uses_files_in_place_without_network(tmp_path):
    from torchvision.datasets import MNIST

    raw = tmp_path / "MNIST" / "raw"
    arrays = make_set(raw)
    unused = ["http://127.0.0.1:1/"]  # were it contacted, the fetch would fail
    assert fetch("mnist", tmp_path, expected_sizes=None, mirrors=unused, verify_checksums=False) == raw
    assert fetch("mnist", raw, expected_sizes=None, mirrors=unused,
                 verify_checksums=False) == raw  # the flat layout too
    # torchvision agrees the files are in place (it downloads nothing) and reads the same data.
    for train, key in ((True, "train"), (False, "test")):
        ds = MNIST(root=tmp_path, train=train, download=True)
        np.testing.assert_array_equal(ds.data.numpy(), arrays[f"X_{key}"])
        np.testing.assert_array_equal(ds.targets.numpy(), arrays[f"y_{key}"])
    # Files in place are checked, not trusted: a bad one is an error, not a silent download.
    write_idx(raw / FILES["y_test"], np.array([1], np.uint8))
    with pytest.raises(DataError, match="3 images in t10k-images-idx3-ubyte but 1 labels"):
        fetch("mnist", tmp_path, expected_sizes=None, mirrors=unused, verify_checksums=False)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/mirror: (folder, base URL)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_downloads_through_torchvision(tmp_path, mirror):
    served, url = mirror
    arrays = make_set(served, gz=True, n_train=6, n_test=2)
    checksums = {f"{s}.gz": md5_of(served / f"{s}.gz") for s in FILES.values()}
    root = tmp_path / "data" / "raw"
    (root / "FashionMNIST").mkdir(parents=True)  # an earlier, interrupted attempt
    (root / "FashionMNIST" / "half-written").write_bytes(b"x")
    got = fetch("fashion_mnist", root, expected_sizes=(6, 2), mirrors=[url], checksums=checksums)
    assert got == root / "FashionMNIST" / "raw"
    # torchvision's layout: each .gz and its decompressed file; nothing else left behind.
    assert listing(root) == sorted(
        ["FashionMNIST", "FashionMNIST/raw"]
        + [f"FashionMNIST/raw/{s}{x}" for s in FILES.values() for x in ("", ".gz")]
    )
    data = load_idx_dataset(root, "fashion_mnist", expected_sizes=(6, 2), verify_checksums=False)
    for key in FILES:
        np.testing.assert_array_equal(data[key], arrays[key])
    # A second call finds them in place: the server's files are gone and it still succeeds.
    for f in served.iterdir():
        f.unlink()
    assert fetch("fashion_mnist", root, expected_sizes=(6, 2), mirrors=[url],
                 checksums=checksums) == got


def test_failed_download_leaves_nothing(tmp_path, mirror):
    served, url = mirror
    make_set(served, gz=True)  # served files do not match the published md5s
    before = listing(tmp_path)
    with pytest.raises(DataError) as err:
        fetch("mnist", tmp_path / "new" / "root", expected_sizes=None, mirrors=[url])
    msg = str(err.value)
    assert msg.startswith(f"mnist: download from {url} failed (")
    assert "File not found or corrupted" in msg and "\n" not in msg
    assert listing(tmp_path) == before  # no temporary, and no new empty folders
    # Into an existing root: it stays, and holds nothing new.
    (tmp_path / "root").mkdir()
    with pytest.raises(DataError, match="download from"):
        fetch("mnist", tmp_path / "root", expected_sizes=None, mirrors=[url])
    assert os.listdir(tmp_path / "root") == []


# ----------------------------------------------------------------------------- edges (make mutate)


def test_content_identity_is_the_sha256_of_the_sorted_digests():
    from dlbasics.data.idx import content_identity

    digests = {stem: f"{i:x}" * 64 for i, stem in enumerate(FILES.values(), 1)}
    blob = '{' + ", ".join(f'"{s}": "{digests[s]}"' for s in sorted(digests)) + '}'
    want = "mnist-" + hashlib.sha256(blob.encode()).hexdigest()[:12]
    assert content_identity("mnist", digests) == want
    assert content_identity("mnist", dict(reversed(list(digests.items())))) == want


@pytest.mark.parametrize("name, key, debian", [
    ("fashion_mnist", None, " (Debian: apt-get install dataset-fashion-mnist)"),
    ("mnist", "images", "")])
def test_a_wrong_digest_says_what_to_do_in_full(tmp_path, name, key, debian):
    make_set(tmp_path)
    first = tmp_path / FILES["X_train"]
    found = hashlib.sha256(idx_bytes(read_idx(first))).hexdigest()
    with pytest.raises(DataError) as err:
        load_idx_dataset(tmp_path, name, expected_sizes=None, params_key=key)
    official = DATASETS[name].sha256[FILES["X_train"]]
    assert str(err.value) == (
        f"{first}: decompressed content has sha256 {found}, expected {official} (the official "
        f"{name} {FILES['X_train']}); the file is damaged or not that file: replace it with the "
        f"official file{debian}, or, for a set of your own, set data.{key or name}."
        "verify_checksums: false")


@pytest.mark.parametrize("name, key", [("fashion_mnist", None), ("mnist", "images")])
def test_missing_files_say_where_and_what_to_do_in_full(tmp_path, name, key):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(DataError) as err:
        load_idx_dataset(folder, name, params_key=key)
    sub = DATASETS[name].torchvision_class
    missing = ", ".join(f"{s}(.gz)" for s in FILES.values())
    debian = (" (on Debian, `apt-get install dataset-fashion-mnist` puts them in "
              "/usr/share/datasets/fashion-mnist)" if name == "fashion_mnist" else "")
    assert str(err.value) == (
        f"{folder} (nor {folder / sub / 'raw'}): missing {missing} for {name}; put the four IDX "
        f"files ({', '.join(FILES.values())}, raw or .gz) there{debian}, or set "
        f"data.{key or name}.source: download")
    # A folder that holds some of them: that folder is named, and no Debian hint.
    make_set(folder)
    (folder / FILES["y_test"]).unlink()
    with pytest.raises(DataError) as err:
        load_idx_dataset(folder, name, params_key=key)
    assert str(err.value).startswith(f"{folder}: missing {FILES['y_test']}(.gz) for {name}; ")
    assert "Debian" not in str(err.value)


def test_images_must_be_28_by_28_and_labels_one_dimensional(tmp_path):
    make_set(tmp_path)
    write_idx(tmp_path / FILES["X_test"], np.zeros((3, 28, 27), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: items are \(28, 27\), "
                                        r"expected \(28, 28\)"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)
    make_set(tmp_path)
    write_idx(tmp_path / FILES["y_test"], np.zeros((3, 1), np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: has 2 dims \(3, 1\), "
                                        r"expected 1"):
        load_idx_dataset(tmp_path, "mnist", expected_sizes=None, verify_checksums=False)


def test_fetched_files_are_verified_by_content_unless_only_md5s_are_given():
    from dlbasics.data.idx import _verification

    d = {"a": "0" * 64}
    assert _verification(True, None, None) == {"verify_checksums": True, "digests": None}
    assert _verification(True, {"a.gz": "m"}, d) == {"verify_checksums": True, "digests": d}
    # A custom set given only by its .gz md5s: torchvision checked them while downloading.
    assert _verification(True, {"a.gz": "m"}, None) == {"verify_checksums": False,
                                                        "digests": None}
    assert _verification(False, None, d) == {"verify_checksums": False, "digests": d}


def test_a_large_gzip_is_read_whole_across_partial_reads(tmp_path):
    # Zeros compress about 1000:1, and gzip hands a large read back in pieces.
    a = np.zeros((300, 28, 28), np.uint8)
    a[::7, 3, 5] = 255
    write_idx(tmp_path / "x.gz", a)
    assert (tmp_path / "x.gz").stat().st_size < a.size // 50
    assert np.array_equal(read_idx(tmp_path / "x.gz"), a)


def test_trailing_bytes_beyond_a_megabyte_are_all_counted(tmp_path):
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    data = idx_bytes(a)
    (tmp_path / "t").write_bytes(data + b"\0" * (3 << 20))
    with pytest.raises(DataError) as err:
        read_idx(tmp_path / "t")
    assert f"trailing bytes: header says 4 x 4 uint8 = {len(data)} bytes, found " \
           f"{len(data) + (3 << 20)};" in str(err.value)


def test_wider_types_come_back_in_native_byte_order(tmp_path):
    a = np.array([[1, -2], [300, -32768]], dtype=np.int16)
    write_idx(tmp_path / "w", a)
    back = read_idx(tmp_path / "w", expect_dtype=None)
    assert back.dtype.isnative and back.dtype == np.int16 and np.array_equal(back, a)


def test_dimensions_must_fit_the_header(tmp_path):
    assert idx_bytes(np.zeros((2**32 - 1, 0), np.uint8))[:4] == b"\0\0\x08\x02"
    with pytest.raises(ValueError):
        idx_bytes(np.zeros((2**32, 0), np.uint8))
    with pytest.raises(ValueError):
        idx_bytes(np.zeros((0, 2**32), np.uint8))


def test_gzip_files_carry_no_timestamp(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((2, 2), np.uint8))
    raw = (tmp_path / "a.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # MTIME 0: the same bytes always


class _Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes a call, as a pipe or a socket may."""

    def __init__(self, data: bytes, step: int):
        self._data, self._pos, self._step = data, 0, step

    def readable(self):
        return True

    def readinto(self, b):
        k = min(self._step, len(b), len(self._data) - self._pos)
        b[:k] = self._data[self._pos:self._pos + k]
        self._pos += k
        return k


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_reads_gather_short_reads_up_to_the_count_or_the_end(step):
    from dlbasics.data.idx import _read_exact

    data = bytes(range(256)) * 40  # 10,240 bytes
    fh = _Trickle(data, step)
    assert bytes(_read_exact(fh, 1000)) == data[:1000]
    assert bytes(_read_exact(fh, 9000)) == data[1000:10000]
    assert bytes(_read_exact(fh, 1000)) == data[10000:]  # fewer only at the end of the file
    assert bytes(_read_exact(fh, 10)) == b""
