"""hwlib.data.load_dataset: real MNIST/Fashion-MNIST from the shared read-only folder,
synthetic CIFAR-10/100 and SVHN in their real on-disk formats, and the offline errors."""

from __future__ import annotations

import io
import os
import pickle
import stat
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from hwlib import data as hwdata
from hwlib.data import DATASETS, data_root, load_dataset
from hwlib.errors import DatasetMissingError, ParameterError

torchvision_datasets = pytest.importorskip("torchvision.datasets")
from torchvision.datasets import cifar as tv_cifar  # noqa: E402
from torchvision.datasets import mnist as tv_mnist  # noqa: E402
from torchvision.datasets import svhn as tv_svhn  # noqa: E402

SHARED_DEFAULT = Path("/work/shared/data")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every path under root (root included) -> (kind, size, mtime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            p = Path(dirpath, name) if name else Path(dirpath)
            st = p.lstat()
            kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
            out[str(p.relative_to(root))] = (kind, st.st_size if kind == "file" else 0,
                                            st.st_mtime_ns)
    return out


def _files_under(root: Path) -> list[str]:
    """Anything under root that is not a directory."""
    return sorted(str(Path(d, f).relative_to(root))
                  for d, _, files in os.walk(root) for f in files)


class _Downloads:
    """Stands in for torchvision's download functions: records each call and fails as an
    offline machine would (URLError)."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        raise urllib.error.URLError("offline (test)")


@pytest.fixture
def no_network(monkeypatch) -> _Downloads:
    """Patch the download names exactly as the dataset modules imported them:
    mnist.py and cifar.py call ``download_and_extract_archive``, svhn.py ``download_url``."""
    fake = _Downloads()
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", fake)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake)
    monkeypatch.setattr(tv_svhn, "download_url", fake)
    return fake


# --------------------------------------------------------------------------------------
# 1. real MNIST / Fashion-MNIST from the shared, read-only folder
# --------------------------------------------------------------------------------------

def _require_shared(name: str) -> Path:
    """$HWLIB_DATA if it has the dataset, else /work/shared/data if that has it, else skip."""
    env = os.environ.get("HWLIB_DATA")
    candidates = ([Path(env)] if env else []) + [SHARED_DEFAULT]
    for root in candidates:
        if (root / DATASETS[name].folder).is_dir():
            return root
    pytest.skip(f"{name}: no {DATASETS[name].folder}/ under "
                f"{' or '.join(map(str, candidates))} (set HWLIB_DATA to a data root holding it)")


@pytest.fixture(scope="module", params=["mnist", "fashion_mnist"])
def shared_loaded(request):
    """Both splits of one real dataset, loaded once, with the folder's listing and mtimes
    taken before and after."""
    name = request.param
    root = _require_shared(name)
    before = _snapshot(root)
    train = load_dataset(name, train=True, root=root)
    test = load_dataset(name, train=False, root=root)
    after = _snapshot(root)
    return {"name": name, "root": root, "train": train, "test": test,
            "before": before, "after": after}


def test_shared_shapes_dtypes_and_ranges(shared_loaded):
    for split, count in (("train", 60000), ("test", 10000)):
        x, y = shared_loaded[split]
        assert x.shape == (count, 1, 28, 28), split
        assert x.dtype == torch.float32
        assert y.shape == (count,)
        assert y.dtype == torch.int64
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert torch.bincount(y, minlength=10).gt(0).all(), "every class 0..9 occurs"


def test_shared_pixels_match_the_idx_files(shared_loaded):
    """The first images and labels, straight from the idx files, scaled by 1/255."""
    raw = shared_loaded["root"] / DATASETS[shared_loaded["name"]].folder
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = shared_loaded[split]
        with open(raw / f"{prefix}-images-idx3-ubyte", "rb") as f:
            head = f.read(16 + 3 * 784)
        assert struct.unpack(">iiii", head[:16])[2:] == (28, 28)
        first = torch.frombuffer(bytearray(head[16:]), dtype=torch.uint8).reshape(3, 1, 28, 28)
        assert torch.equal(x[:3], first.float() / 255.0)
        with open(raw / f"{prefix}-labels-idx1-ubyte", "rb") as f:
            labels = f.read(8 + 20)[8:]
        assert y[:20].tolist() == list(labels)


def test_shared_folder_untouched(shared_loaded):
    assert shared_loaded["after"] == shared_loaded["before"], "loading wrote into the shared root"
    folder = shared_loaded["root"] / DATASETS[shared_loaded["name"]].folder
    assert not (folder.parent / "processed").exists()


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_shared_subset_is_deterministic(name):
    root = _require_shared(name)
    before = _snapshot(root)
    x_all, y_all = load_dataset(name, train=False, root=root)
    a = load_dataset(name, train=False, n=64, seed=1, root=root)
    b = load_dataset(name, train=False, n=64, seed=1, root=root)
    c = load_dataset(name, train=False, n=64, seed=2, root=root)
    assert _snapshot(root) == before, "loading wrote into the shared root"

    assert a[0].shape == (64, 1, 28, 28) and a[1].shape == (64,)
    assert a[0].dtype == torch.float32 and a[1].dtype == torch.int64
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])

    # every subset image, with its label, is one of the full split's (no duplicates)
    index = {}
    for i, img in enumerate((x_all * 255).round().to(torch.uint8).reshape(len(y_all), -1)):
        index.setdefault(img.numpy().tobytes(), []).append(int(y_all[i]))
    keys = [img.numpy().tobytes()
            for img in (a[0] * 255).round().to(torch.uint8).reshape(64, -1)]
    assert len(set(keys)) == 64
    for key, label in zip(keys, a[1].tolist()):
        assert label in index[key]


def test_hwlib_data_env_sets_the_default_root(monkeypatch):
    root = _require_shared("mnist")
    monkeypatch.setenv("HWLIB_DATA", str(root))
    assert data_root() == root
    x, y = load_dataset("mnist", train=False, n=10, seed=0)
    assert x.shape == (10, 1, 28, 28) and y.shape == (10,)


# --------------------------------------------------------------------------------------
# 2. synthetic CIFAR-10, CIFAR-100, SVHN in their real on-disk formats
# --------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (BINSTRING opcodes), as the original CIFAR files
    were pickled by Python 2: torchvision reads them with ``encoding="latin1"``, which turns
    the b"data"/b"labels" keys into "data"/"labels". A Python 3 pickle of bytes keys would
    stay bytes and torchvision could not read it."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_dump(obj, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


PER_BATCH = 6


def _pixels(rng, n) -> np.ndarray:
    """n images as CIFAR rows: uint8 (n, 3072), row-major (C, H, W), full 0..255 range."""
    x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    x[0, 0], x[-1, -1] = 0, 255
    return x


def _write_cifar10(root: Path, rng) -> dict[bool, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        x = _pixels(rng, PER_BATCH)
        y = [int(v) for v in rng.integers(0, 10, PER_BATCH)]
        _py2_dump({b"batch_label": f"training batch {i} of 5".encode(), b"labels": y,
                   b"data": x, b"filenames": [f"img_{i}_{j}.png".encode()
                                              for j in range(PER_BATCH)]},
                  folder / f"data_batch_{i}")
        train_x.append(x)
        train_y += y
    test_x = _pixels(rng, PER_BATCH)
    test_y = [9, 0, 1, 2, 3, 4]
    _py2_dump({b"batch_label": b"testing batch 1 of 1", b"labels": test_y, b"data": test_x,
               b"filenames": [f"test_{j}.png".encode() for j in range(PER_BATCH)]},
              folder / "test_batch")
    # torchvision's CIFAR10.meta: filename "batches.meta", key "label_names"
    _py2_dump({b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072,
               b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                b"dog", b"frog", b"horse", b"ship", b"truck"]},
              folder / "batches.meta")
    return {True: (np.concatenate(train_x), train_y), False: (test_x, test_y)}


def _write_cifar100(root: Path, rng) -> dict[bool, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for train, fname, n in ((True, "train", 2 * PER_BATCH), (False, "test", PER_BATCH)):
        x = _pixels(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        fine[0], fine[-1] = 99, 0
        _py2_dump({b"filenames": [f"{fname}_{j}.png".encode() for j in range(n)],
                   b"batch_label": f"{fname}ing batch 1 of 1".encode(),
                   b"fine_labels": fine, b"coarse_labels": [v // 5 for v in fine],
                   b"data": x},
                  folder / fname)
        out[train] = (x, fine)
    # torchvision's CIFAR100.meta: filename "meta", key "fine_label_names"
    _py2_dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
               b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]},
              folder / "meta")
    return out


def _write_svhn(root: Path, rng) -> dict[bool, tuple[np.ndarray, list[int]]]:
    """SVHN .mat files: X uint8 (32, 32, 3, N) as (H, W, C, N), y (N, 1) in 1..10, 10 = digit 0.

    Returns the expected images as (N, 3, 32, 32) and labels with 10 mapped to 0."""
    from scipy.io import savemat

    folder = root / "SVHN"
    folder.mkdir(parents=True)
    out = {}
    for train, fname, labels in ((True, "train_32x32.mat", [10, 1, 2, 3, 4, 5, 6, 7]),
                                 (False, "test_32x32.mat", [8, 9, 10, 1, 10, 2])):
        n = len(labels)
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        x[0, 0, 0, 0], x[-1, -1, -1, -1] = 0, 255
        savemat(folder / fname, {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(n, 1)})
        out[train] = (x.transpose(3, 2, 0, 1), [0 if v == 10 else v for v in labels])
    return out


WRITERS = {"cifar10": _write_cifar10, "cifar100": _write_cifar100, "svhn": _write_svhn}


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks the MD5 sums of the original CIFAR/SVHN files, which synthetic files
    cannot match. ``_check_integrity`` (the data files' MD5s) is made to pass, and for CIFAR
    the module's ``check_integrity`` too, because ``CIFAR10._load_meta`` checks the meta
    file's MD5 directly, not through ``_check_integrity``; it is kept an existence check."""
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_svhn.SVHN, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_synthetic_formats_load_exactly(name, tmp_path, skip_md5, no_network):
    expected = WRITERS[name](tmp_path, np.random.default_rng(1234))
    before = _snapshot(tmp_path)
    info = DATASETS[name]
    assert sorted(_files_under(tmp_path / info.folder)) == sorted(info.files)
    for train in (True, False):
        raw, labels = expected[train]
        want = torch.from_numpy(np.ascontiguousarray(raw)).reshape(-1, *info.shape)
        x, y = load_dataset(name, train=train, root=tmp_path)
        assert x.shape == (len(labels), *info.shape)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.is_contiguous()
        assert torch.equal(x, want.float() / 255.0), f"{name} train={train}: pixels / CHW order"
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        assert y.tolist() == labels
        assert 0 <= int(y.min()) and int(y.max()) < info.classes
    assert no_network.calls == []
    assert _snapshot(tmp_path) == before, "loading wrote into the data root"


def test_synthetic_subset(tmp_path, skip_md5, no_network):
    expected = _write_cifar10(tmp_path, np.random.default_rng(7))
    raw, labels = expected[True]
    full_x, full_y = load_dataset("cifar10", train=True, root=tmp_path)
    a = load_dataset("cifar10", train=True, n=5, seed=3, root=tmp_path)
    b = load_dataset("cifar10", train=True, n=5, seed=3, root=tmp_path)
    c = load_dataset("cifar10", train=True, n=5, seed=4, root=tmp_path)
    assert a[0].shape == (5, 3, 32, 32) and a[1].shape == (5,)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    rows = {full_x[i].numpy().tobytes(): int(full_y[i]) for i in range(len(full_y))}
    assert len(rows) == len(labels)
    assert len({img.numpy().tobytes() for img in a[0]}) == 5
    for img, label in zip(a[0], a[1].tolist()):
        assert rows[img.numpy().tobytes()] == label
    # n at the split's size: the whole split, in order; above it: refused, not capped
    for n in (None, len(labels)):
        x, y = load_dataset("cifar10", train=True, n=n, root=tmp_path)
        assert torch.equal(x, full_x) and torch.equal(y, full_y)
    with pytest.raises(ParameterError, match=f"n={len(labels) + 10}: must be at most"):
        load_dataset("cifar10", train=True, n=len(labels) + 10, root=tmp_path)


def test_hwlib_data_env_root_for_synthetic(tmp_path, monkeypatch, skip_md5, no_network):
    expected = _write_svhn(tmp_path, np.random.default_rng(5))
    monkeypatch.setenv("HWLIB_DATA", str(tmp_path))
    assert data_root() == tmp_path
    x, y = load_dataset("svhn", train=False)
    assert y.tolist() == expected[False][1]
    assert x.shape == (6, 3, 32, 32)


# --------------------------------------------------------------------------------------
# 3. missing data, offline
# --------------------------------------------------------------------------------------

def _assert_missing_message(err: DatasetMissingError, name: str, root: Path) -> str:
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
    assert str(root / DATASETS[name].folder) in msg, msg
    for f in DATASETS[name].files:
        assert f in msg, f"{f} not named in: {msg}"
    return msg


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_offline_raises_clear_error(name, train, tmp_path, no_network):
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DatasetMissingError) as info:
        load_dataset(name, train=train, root=root)
    assert isinstance(info.value, FileNotFoundError)
    _assert_missing_message(info.value, name, root)
    assert no_network.calls, "a writable root should have tried a download"
    assert _files_under(root) == [], "only (empty) folders may be created"


@pytest.mark.parametrize("sub", ["", "not/yet/made"])
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_read_only_root_never_downloads(name, sub, tmp_path, no_network):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("x")
    ro.chmod(0o555)
    try:
        before = _snapshot(ro)
        root = ro / sub if sub else ro
        with pytest.raises(DatasetMissingError) as info:
            load_dataset(name, root=root)
        _assert_missing_message(info.value, name, root)
        assert no_network.calls == [], "a download was attempted into a read-only root"
        # mode bits are what counts: the test may run as root, which could write anyway
        assert _snapshot(ro) == before, "something was written into the read-only root"
    finally:
        ro.chmod(0o755)


def test_read_only_detection_uses_mode_bits(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert hwdata._read_only(ro)
        assert hwdata._read_only(ro / "a" / "b")
    finally:
        ro.chmod(0o755)
    assert not hwdata._read_only(ro)
    assert not hwdata._read_only(tmp_path / "new" / "dir")


def test_partly_missing_names_the_missing_files(tmp_path, no_network):
    _write_cifar10(tmp_path, np.random.default_rng(0))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    with pytest.raises(DatasetMissingError) as info:
        load_dataset("cifar10", train=False, root=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert "data_batch_3" in msg and "batches.meta" in msg


# --------------------------------------------------------------------------------------
# 4. unknown name
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["imagenet", "MNIST", "", "cifar-10"])
def test_unknown_name_raises_parameter_error(bad, tmp_path, no_network):
    root = tmp_path / "data"
    with pytest.raises(ParameterError) as info:
        load_dataset(bad, root=root)
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "\n" not in msg
    assert repr(bad) in msg
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn"):
        assert name in msg
    assert not root.exists()
    assert no_network.calls == []


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_normalization_moments_are_the_training_sets(name):
    from hwlib.data import normalize

    _require_shared(name)
    x, _ = load_dataset(name, True)
    z = normalize(x, name)
    assert abs(float(z.mean())) < 2e-3 and abs(float(z.std()) - 1) < 2e-3
