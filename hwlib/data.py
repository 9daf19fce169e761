"""Datasets through ``torchvision.datasets``, from one data root, as in-memory tensors.

The data root is ``$HWLIB_DATA`` if set, else ``data/`` in the project checkout (``./data``
elsewhere). Missing data is downloaded when the network allows and the root is writable;
otherwise the error names the folder and the files expected. Nothing is ever written into a
read-only root (such as a shared, read-only copy of the datasets).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import DatasetMissingError, ParameterError
from .study.provenance import PROJECT_ROOT


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset lives under the data root and what it looks like.

    Attributes:
        folder: its folder under the data root, as torchvision lays it out.
        files: the files torchvision reads there.
        shape: one image's shape (C, H, W).
        classes: the number of classes.
        mean: per-channel mean of the training images, pixels in [0, 1].
        std: per-channel standard deviation of the training images.
    """

    folder: str
    files: tuple[str, ...]
    shape: tuple[int, int, int]
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("MNIST/raw", (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), (1, 28, 28), 10,
        (0.1307,), (0.3081,)),
    "fashion_mnist": DatasetInfo("FashionMNIST/raw", (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"), (1, 28, 28), 10,
        (0.2860,), (0.3530,)),
    "cifar10": DatasetInfo("cifar-10-batches-py", (
        "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
        "test_batch", "batches.meta"), (3, 32, 32), 10,
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo("cifar-100-python", ("train", "test", "meta"), (3, 32, 32), 100,
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": DatasetInfo("SVHN", ("train_32x32.mat", "test_32x32.mat"), (3, 32, 32), 10,
                     (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


def data_root() -> Path:
    """``$HWLIB_DATA`` if set, else ``data/`` in the checkout, else ``./data``."""
    if os.environ.get("HWLIB_DATA"):
        return Path(os.environ["HWLIB_DATA"])
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "data"
    return Path("data")


def _missing(name: str, root: Path) -> list[str]:
    info = DATASETS[name]
    folder = root / info.folder
    return [f for f in info.files if not (folder / f).exists()]


def _torchvision(name: str, root: Path, train: bool, download: bool):
    from torchvision import datasets

    if name == "mnist":
        return datasets.MNIST(root, train=train, download=download)
    if name == "fashion_mnist":
        return datasets.FashionMNIST(root, train=train, download=download)
    if name == "cifar10":
        return datasets.CIFAR10(root, train=train, download=download)
    if name == "cifar100":
        return datasets.CIFAR100(root, train=train, download=download)
    return datasets.SVHN(root / "SVHN", split="train" if train else "test", download=download)


def _read_only(root: Path) -> bool:
    """True when the root (or its nearest existing parent) has no write bit set.

    Mode bits, not ``os.access``: root may write anywhere, but a folder marked read-only
    (``r-xr-xr-x``) is never written into.
    """
    path = root
    while not path.exists() and path != path.parent:
        path = path.parent
    return not (path.stat().st_mode & 0o222) or not os.access(path, os.W_OK)


def ensure_available(name: str, root: Path | str | None = None) -> Path:
    """Make sure a dataset's files are under the data root, downloading them if they are
    missing and the root is writable; return its folder.

    Raises:
        ParameterError: an unknown dataset name.
        DatasetMissingError: the files are not there and cannot be had, in one line naming
            the folder, the missing files and what to do.
    """
    if name not in DATASETS:
        raise ParameterError(f"dataset {name!r}: must be one of {', '.join(DATASETS)}")
    root = Path(root) if root is not None else data_root()
    folder = root / DATASETS[name].folder
    missing = _missing(name, root)
    if not missing:
        return folder
    if _read_only(root) or _read_only(folder):
        raise DatasetMissingError(
            f"{name}: {folder} lacks {', '.join(missing)} and {root} is read-only; "
            "set HWLIB_DATA to a folder that has them")
    try:
        for train in (True, False):
            _torchvision(name, root, train, download=True)
    except Exception as err:  # noqa: BLE001 - offline, refused, corrupt download
        raise DatasetMissingError(
            f"{name}: {folder} lacks {', '.join(missing)} and downloading failed "
            f"({type(err).__name__}); put the files there or set HWLIB_DATA") from None
    return folder


def load_dataset(name: str, train: bool = True, n: int | None = None, seed: int = 0,
                 root: Path | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset as tensors: images in [0, 1], shape (N, C, H, W), and int64 labels.

    Args:
        name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or ``svhn``.
        train: the training split (else the test split).
        n: keep a fixed random subset of this many images (``None``: all).
        seed: the subset's seed.
        root: the data root; default :func:`data_root`.

    Raises:
        ParameterError: an unknown dataset name.
        DatasetMissingError: the files are not on disk and cannot be downloaded.
    """
    if name not in DATASETS:
        raise ParameterError(f"dataset {name!r}: must be one of {', '.join(DATASETS)}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ParameterError(f"n={n!r}: must be a whole number >= 1, or None for all")
    root = Path(root) if root is not None else data_root()
    ensure_available(name, root)
    ds = _torchvision(name, root, train, download=False)
    data = ds.data
    if not isinstance(data, torch.Tensor):
        data = torch.from_numpy(data)
    if data.dim() == 3:  # MNIST-like (N, H, W)
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:  # CIFAR (N, H, W, C)
        data = data.permute(0, 3, 1, 2)
    labels = torch.as_tensor(getattr(ds, "targets", None) if hasattr(ds, "targets")
                             else ds.labels, dtype=torch.int64)
    if n is not None and n > len(labels):
        split = "training" if train else "test"
        raise ParameterError(f"n={n!r}: must be at most {len(labels):,}, the {name} {split} "
                             "set, or None for all")
    if n is not None and n < len(labels):
        idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
        data, labels = data[idx], labels[idx]
    return data.contiguous().float().div_(255.0), labels


def normalize(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(x - mean) / std`` per channel, with the dataset's published training-set moments.

    Args:
        x: images (N, C, H, W) in [0, 1].
        name: the dataset (see :data:`DATASETS`).
    """
    info = DATASETS[name]
    mean = torch.tensor(info.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def black(name: str) -> tuple[float, ...]:
    """The value of a black pixel (0) of dataset ``name`` after :func:`normalize`, per
    channel: ``-mean / std``."""
    info = DATASETS[name]
    return tuple(-m / s for m, s in zip(info.mean, info.std))


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4,
                     fill: float | Sequence[float] = 0.0) -> torch.Tensor:
    """The standard CIFAR augmentation of a batch: a random crop of each padded image and a
    random horizontal flip, each image independently.

    Args:
        x: images (N, C, H, W), on any device.
        generator: a CPU generator (the draws are the same on every device).
        pad: padding on each side, pixels.
        fill: the padding's value, one number or one per channel. Pad with black, as
            torchvision's ``RandomCrop`` does on pixel values: 0 for images in [0, 1], and
            :func:`black` for normalized images (0 would be the mean pixel there).
    """
    b, c, h, w = x.shape
    if isinstance(fill, (int, float)):
        xp = F.pad(x, (pad, pad, pad, pad), value=float(fill))
    else:
        if len(fill) != c:
            raise ParameterError(f"fill: {len(fill)} values for {c} channels")
        xp = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1).expand(
            b, c, h + 2 * pad, w + 2 * pad).clone()
        xp[:, :, pad:pad + h, pad:pad + w] = x
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]
    out = xp[torch.arange(b, device=x.device)[:, None, None], :, rows, cols]
    return out.permute(0, 3, 1, 2).contiguous()
