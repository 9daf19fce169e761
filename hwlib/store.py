"""The results store: every long computation, keyed by its fully resolved config.

An entry is one file, ``<root>/<profile>/<experiment>/<key>.json`` (only JSON-able values) or
``<key>.npz`` (with arrays; the JSON part sits in the ``__meta__`` member). No pickle: npz files
are read with ``allow_pickle=False``. Each entry records its provenance: the config, the code
fingerprint of the experiment's modules, versions, device, seed, wall time and date.

Writes are atomic (a temporary file in the same folder, fsync, ``os.replace``): a run killed
at any moment leaves either the old entry or the new one, never half of one, and parallel
writers cannot corrupt each other. A corrupt or unreadable entry is reported and recomputed. An
entry whose code fingerprint differs from the current code is stale: it is recomputed, or, with
``allow_stale=True`` (``HWLIB_ALLOW_STALE=1``), returned marked stale.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .errors import StoreError
from .provenance import PROJECT_ROOT, code_fingerprint, environment, utc_now


def default_root() -> Path:
    """``$HWLIB_RESULTS``, else ``results/`` in the project checkout, else ``./results``."""
    if os.environ.get("HWLIB_RESULTS"):
        return Path(os.environ["HWLIB_RESULTS"])
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "results"
    return Path("results")


def canonical(obj: Any) -> Any:
    """Turn numpy/torch scalars, tuples and paths into plain JSON values, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_key(experiment: str, config: Mapping[str, Any]) -> str:
    """The entry key: a hash of the experiment's name and its fully resolved config."""
    text = json.dumps({"experiment": experiment, "config": canonical(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Entry:
    """One stored result.

    Attributes:
        result: the experiment's output (numbers, lists, strings and numpy arrays).
        provenance: config, code fingerprint, versions, device, seed, wall time, date.
        stale: True when the code that produced it differs from the current code.
        path: the file it lives in.
    """

    result: dict[str, Any]
    provenance: dict[str, Any]
    stale: bool = False
    path: Path | None = None

    def __getitem__(self, name: str) -> Any:
        return self.result[name]


@dataclass(frozen=True)
class Experiment:
    """A named, importable function ``config -> result dict``, with its code fingerprint.

    Attributes:
        name: the store's folder for its entries, e.g. ``"sddhr.conductance_mc"``.
        fn: a module-level function (so worker processes can import it).
    """

    name: str
    fn: Callable[[dict[str, Any]], dict[str, Any]]

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the function's module and every hwlib module it imports."""
        return code_fingerprint(self.fn.__module__)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.fn(config)


def experiment(name: str) -> Callable[[Callable], Experiment]:
    """Decorator: register a function as a stored experiment called ``name``."""

    def wrap(fn: Callable) -> Experiment:
        return Experiment(name, fn)

    return wrap


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    return value


STATE_PREFIX = "state."
"""Prefix of the arrays that hold a model's state dict in a result entry."""


def state_arrays(model: Any) -> dict[str, np.ndarray]:
    """A torch model's state dict as result arrays, ``state.<name>``, for a stored entry."""
    return {STATE_PREFIX + k: _to_numpy(v) for k, v in model.state_dict().items()}


def load_state_arrays(model: Any, result: Mapping[str, Any]) -> Any:
    """Load the ``state.<name>`` arrays of a result (see :func:`state_arrays`) into ``model``;
    return the model."""
    import torch

    model.load_state_dict({k[len(STATE_PREFIX):]: torch.as_tensor(np.asarray(v))
                           for k, v in result.items() if k.startswith(STATE_PREFIX)})
    return model


def _encode(result: Mapping[str, Any], provenance: Mapping[str, Any]) -> tuple[str, bytes]:
    arrays: dict[str, np.ndarray] = {}
    plain: dict[str, Any] = {}
    for k, v in result.items():
        v = _to_numpy(v)
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise StoreError(f"result {k!r}: object arrays cannot be stored without pickle")
            arrays[k] = v
        else:
            plain[k] = canonical(v)
    meta = {"provenance": canonical(provenance), "result": plain, "arrays": sorted(arrays)}
    text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=True)
    if not arrays:
        return ".json", text.encode()
    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=np.frombuffer(text.encode(), dtype=np.uint8), **arrays)
    return ".npz", buf.getvalue()


def _decode(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
        return meta["result"], meta["provenance"]
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes().decode())
        result = dict(meta["result"])
        for name in meta["arrays"]:
            result[name] = z[name]
    return result, meta["provenance"]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """Stored results of one profile, keyed by experiment and fully resolved config.

    Args:
        profile: the profile's folder under ``root`` (``smoke``, ``book`` or ``paper``).
        root: the store's top folder; default :func:`default_root`.
        allow_stale: return stale entries marked stale instead of recomputing them; default
            from ``HWLIB_ALLOW_STALE``.
    """

    def __init__(self, profile: str, root: Path | str | None = None,
                 allow_stale: bool | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.profile = profile
        if allow_stale is None:
            allow_stale = os.environ.get("HWLIB_ALLOW_STALE", "") not in ("", "0")
        self.allow_stale = allow_stale
        self.log: list[dict[str, Any]] = []  # entries read or written, for the status page

    def folder(self, experiment_name: str) -> Path:
        """The folder of one experiment's entries."""
        return self.root / self.profile / experiment_name

    def _paths(self, name: str, key: str) -> list[Path]:
        base = self.folder(name) / key
        return [base.with_suffix(".json"), base.with_suffix(".npz")]

    def _note(self, entry: Entry, action: str) -> None:
        rec = {"action": action, "path": str(entry.path), "stale": entry.stale,
               **{k: entry.provenance.get(k) for k in
                  ("experiment", "key", "code_fingerprint", "date", "wall_time_s", "seed",
                   "device", "torch", "hwlib", "git_commit")}}
        self.log.append(rec)
        manifest = os.environ.get("HWLIB_MANIFEST")
        if manifest:
            with open(manifest, "a") as f:  # one short line per append: atomic in practice
                f.write(json.dumps(rec) + "\n")

    def load(self, exp: Experiment, config: Mapping[str, Any]) -> Entry | None:
        """The stored entry, or None when it is missing, corrupt, or stale (unless allowed)."""
        key = config_key(exp.name, config)
        for path in self._paths(exp.name, key):
            if not path.exists():
                continue
            try:
                result, prov = _decode(path)
            except Exception as err:  # noqa: BLE001 - any unreadable file is reported
                warnings.warn(f"corrupt result entry {path} ({type(err).__name__}: {err}); "
                              "recomputing", stacklevel=2)
                return None
            stale = prov.get("code_fingerprint") != exp.fingerprint
            if stale and not self.allow_stale:
                return None
            entry = Entry(result, prov, stale, path)
            self._note(entry, "read")
            return entry
        return None

    def save(self, exp: Experiment, config: Mapping[str, Any], result: Mapping[str, Any],
             wall_time_s: float, device: str = "cpu") -> Entry:
        """Store a result atomically with its provenance and return it as an entry."""
        key = config_key(exp.name, config)
        prov = {
            "experiment": exp.name,
            "key": key,
            "config": canonical(config),
            "seed": config.get("seed"),
            "code_fingerprint": exp.fingerprint,
            "module": exp.fn.__module__,
            "device": device,
            "wall_time_s": round(float(wall_time_s), 4),
            "date": utc_now(),
            **environment(),
        }
        suffix, data = _encode(result, prov)
        path = self.folder(exp.name) / f"{key}{suffix}"
        atomic_write(path, data)
        for other in self._paths(exp.name, key):  # an older entry of the other format
            if other != path:
                other.unlink(missing_ok=True)
        entry = Entry(_decode(path)[0], prov, False, path)
        self._note(entry, "computed")
        return entry

    def get_or_compute(self, exp: Experiment, config: Mapping[str, Any],
                       device: str = "cpu") -> Entry:
        """The stored entry if fresh, else compute it now, store it and return it."""
        entry = self.load(exp, config)
        if entry is not None:
            return entry
        start = time.perf_counter()
        result = exp(dict(config))
        return self.save(exp, config, result, time.perf_counter() - start, device)
