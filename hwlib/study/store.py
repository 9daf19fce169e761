"""The results store: every long computation, keyed by its fully resolved config.

An entry is one file, ``<root>/<profile>/<experiment>/<key>.json`` (only JSON-able values) or
``<key>.npz`` (with arrays; the JSON part sits in the ``__meta__`` member). No pickle: npz files
are read with ``allow_pickle=False``. Each entry records its provenance: the config, the code
fingerprint of the experiment's modules, versions, the torch thread count, device, seed, wall
time, date, the entries it read while it was computed (with their checksums), and a checksum
of its own content.

The store verifies what it serves. An entry is recomputed (with a warning naming why) when it

* cannot be read, or its checksum does not match its content (tampered or truncated);
* holds another experiment, key or config than the one asked for (a file copied over another);
* lacks an output its experiment declares (``@experiment(name, outputs=...)``);

and it is *stale* when the code behind it changed, when an entry it read has since changed
(or is gone), or when it was computed from a stale entry. A stale entry is recomputed, or,
with ``allow_stale=True`` (``HWLIB_ALLOW_STALE=1``), returned marked stale; whatever is then
computed from it is stored marked stale too, so stale input never yields a fresh output.

Writes are atomic (a temporary file in the same folder, fsync, ``os.replace``), with the
permissions the umask allows: a run killed at any moment leaves either the old entry or the
new one, and parallel writers cannot corrupt each other. Temporary files left by a killed
writer are removed the next time a store is opened there.

Namespaces: a notebook run with parameters that differ from its defaults stores its entries
and measurements under ``<profile>/custom/<hash of the overrides>/``; it reads the default
namespace's entries (same key, same config) but never writes there.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import ParameterError, StoreError
from .provenance import PROJECT_ROOT, environment, function_fingerprint, utc_now

#: The profiles whose folders a store may use.
PROFILE_NAMES = ("smoke", "book", "paper")
#: The process start (temporary files older than this, by a margin, are a dead writer's).
PROCESS_START = time.time()
#: Seconds a temporary file must predate this process to count as left behind.
TMP_MARGIN_S = 60.0
_UMASK = os.umask(0)
os.umask(_UMASK)


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


def one_thread() -> int:
    """Limit this process to one torch thread (the setting every stored result is computed
    with: two threads run small products slower here and change the summation order);
    returns the thread count."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return torch.get_num_threads()


@dataclass
class Entry:
    """One stored result.

    Attributes:
        result: the experiment's output (numbers, lists, strings and numpy arrays).
        provenance: config, code fingerprint, versions, threads, device, seed, wall time,
            date, the entries read while computing it (``inputs``) and ``checksum``.
        stale: True when it must not be taken as current (see the module text).
        path: the file it lives in.
        stale_reason: why it is stale ("" when fresh).
    """

    result: dict[str, Any]
    provenance: dict[str, Any]
    stale: bool = False
    path: Path | None = None
    stale_reason: str = ""

    def __getitem__(self, name: str) -> Any:
        return self.result[name]

    @property
    def checksum(self) -> str:
        """The checksum of the entry's content (its identity for the entries computed from it)."""
        return self.provenance["checksum"]

    def source(self) -> dict[str, Any]:
        """How a measurement or another entry names this one."""
        p = self.provenance
        return {"experiment": p["experiment"], "key": p["key"], "checksum": p["checksum"],
                "module": p.get("module"), "function": p.get("function"),
                "code_fingerprint": p.get("code_fingerprint"),
                "namespace": p.get("namespace", ""), "stale": bool(self.stale)}


@dataclass(frozen=True)
class Experiment:
    """A named, importable function ``config -> result dict``, with its code fingerprint.

    Attributes:
        name: the store's folder for its entries, e.g. ``"sddhr.conductance_mc"``.
        fn: a module-level function (so worker processes can import it).
        outputs: names every result must hold (checked when an entry is read back).
    """

    name: str
    fn: Callable[[dict[str, Any]], dict[str, Any]]
    outputs: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the code the function reaches: what it uses of its own module, and
        every hwlib module it takes a name from (:func:`~hwlib.study.provenance.
        function_fingerprint`)."""
        return function_fingerprint(self.fn.__module__, self.fn.__name__)

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.fn(config)


def experiment(name: str, outputs: Sequence[str] = ()) -> Callable[[Callable], Experiment]:
    """Decorator: register a function as a stored experiment called ``name`` whose results
    hold (at least) ``outputs``."""

    def wrap(fn: Callable) -> Experiment:
        return Experiment(name, fn, tuple(outputs))

    return wrap


# --- dependency tracking: which entries a computation read --------------------------------

_INPUTS: contextvars.ContextVar[list | None] = contextvars.ContextVar("hwlib_inputs",
                                                                       default=None)


@contextlib.contextmanager
def track_inputs() -> Iterator[list[dict[str, Any]]]:
    """Within the block, every entry read from or written to a store is noted as an input
    of the computation (the list yielded), once per key."""
    found: list[dict[str, Any]] = []
    token = _INPUTS.set(found)
    try:
        yield found
    finally:
        _INPUTS.reset(token)


def note_input(entry: Entry) -> None:
    """Note ``entry`` as an input of the computation under way (if any). Code that caches a
    network rebuilt from an entry calls this on every use, so that each computation that uses
    it records it."""
    found = _INPUTS.get()
    if found is None:
        return
    src = entry.source()
    if not any(s["experiment"] == src["experiment"] and s["key"] == src["key"] for s in found):
        found.append(src)


# --- the store a computation runs under -------------------------------------------------------

_CURRENT: contextvars.ContextVar["ResultStore | None"] = contextvars.ContextVar(
    "hwlib_store", default=None)


@contextlib.contextmanager
def using(store: "ResultStore") -> Iterator["ResultStore"]:
    """Within the block, :func:`current_store` returns ``store`` (for its profile)."""
    token = _CURRENT.set(store)
    try:
        yield store
    finally:
        _CURRENT.reset(token)


def current_store(profile: str) -> "ResultStore":
    """The store of the computation under way when it has this profile (so that an experiment
    that reads another, e.g. a trained network, follows the run's root, namespace and stale
    policy), else the default store of ``profile``."""
    store = _CURRENT.get()
    if store is not None and store.profile == profile:
        return store
    return ResultStore(profile)


# --- encoding -------------------------------------------------------------------------------


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy()
    return value


def _checksum(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of an entry's JSON part (without the checksum itself) and of its arrays."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, allow_nan=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:24]


def _split(result: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
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
    return plain, arrays


def _encode(result: Mapping[str, Any], provenance: dict[str, Any]) -> tuple[str, bytes]:
    """The file suffix and bytes of an entry; sets ``provenance["checksum"]``."""
    plain, arrays = _split(result)
    prov = canonical({k: v for k, v in provenance.items() if k != "checksum"})
    # the JSON round trip first, so that the checksum covers what a reader will see
    meta = json.loads(json.dumps({"provenance": prov, "result": plain,
                                  "arrays": sorted(arrays)}, allow_nan=True))
    provenance["checksum"] = meta["provenance"]["checksum"] = _checksum(meta, arrays)
    text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=True)
    if not arrays:
        return ".json", text.encode()
    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=np.frombuffer(text.encode(), dtype=np.uint8), **arrays)
    return ".npz", buf.getvalue()


def _read_meta(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z["__meta__"].tobytes().decode())


def _decode(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an entry and verify its checksum; raise StoreError if it does not match."""
    arrays: dict[str, np.ndarray] = {}
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
    else:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["__meta__"].tobytes().decode())
            for name in meta["arrays"]:
                arrays[name] = z[name]
    prov = dict(meta["provenance"])
    stored = prov.pop("checksum", None)
    if stored is None:
        raise StoreError("no checksum (written by an older hwlib)")
    if _checksum({**meta, "provenance": prov}, arrays) != stored:
        raise StoreError("checksum mismatch: the content was changed after it was written")
    result = dict(meta["result"])
    result.update(arrays)
    return result, meta["provenance"]


_META_CACHE: dict[tuple, dict[str, Any]] = {}


def entry_meta(path: Path) -> dict[str, Any] | None:
    """The provenance of the entry at ``path`` without reading its arrays (cached per file
    version), or None when it is missing or unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    if key not in _META_CACHE:
        try:
            _META_CACHE[key] = _read_meta(path)["provenance"]
        except Exception:  # noqa: BLE001 - unreadable: treated as missing
            return None
    return _META_CACHE[key]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never a part.

    The file gets the permissions of a plain ``open`` under the current umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_SWEPT: set[str] = set()


def sweep_temporary_files(folder: Path) -> list[Path]:
    """Remove the ``.tmp-*`` files a killed writer left under ``folder`` (those older than
    this process by :data:`TMP_MARGIN_S`); once per folder and process. Returns them."""
    key = str(folder)
    if key in _SWEPT or not folder.exists():
        return []
    _SWEPT.add(key)
    removed = []
    for path in folder.rglob(".tmp-*"):
        try:
            if path.is_file() and path.stat().st_mtime < PROCESS_START - TMP_MARGIN_S:
                path.unlink()
                removed.append(path)
        except OSError:
            pass
    return removed


def check_profile_name(profile: str) -> str:
    """Return ``profile`` or raise one line naming the allowed profiles."""
    if profile not in PROFILE_NAMES:
        raise ParameterError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILE_NAMES)}")
    return profile


class ResultStore:
    """Stored results of one profile, keyed by experiment and fully resolved config.

    Args:
        profile: the profile's folder under ``root`` (``smoke``, ``book`` or ``paper``).
        root: the store's top folder; default :func:`default_root`.
        allow_stale: return stale entries marked stale instead of recomputing them; default
            from ``HWLIB_ALLOW_STALE``.
        namespace: ``""`` (the default run) or ``"custom/<hash>"`` for a run with overrides:
            its own entries are written there, and entries of the default namespace are read
            when it lacks them.
    """

    def __init__(self, profile: str, root: Path | str | None = None,
                 allow_stale: bool | None = None, namespace: str = "") -> None:
        self.root = Path(root) if root is not None else default_root()
        self.profile = check_profile_name(profile)
        if allow_stale is None:
            allow_stale = os.environ.get("HWLIB_ALLOW_STALE", "") not in ("", "0")
        self.allow_stale = allow_stale
        if namespace and not namespace.startswith("custom/"):
            raise ParameterError(f"namespace={namespace!r}: must be '' or 'custom/<hash>'")
        self.namespace = namespace
        self.log: list[dict[str, Any]] = []  # entries read or written, for the status page
        sweep_temporary_files(self.root / self.profile)

    def spec(self) -> dict[str, Any]:
        """What rebuilds this store in a worker process (:meth:`from_spec`)."""
        return {"root": str(self.root), "profile": self.profile, "namespace": self.namespace,
                "allow_stale": self.allow_stale}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "ResultStore":
        """The store described by :meth:`spec`."""
        return cls(spec["profile"], spec["root"], spec["allow_stale"], spec["namespace"])

    @property
    def base(self) -> Path:
        """The folder of this store's namespace."""
        return self.root / self.profile / self.namespace if self.namespace else (
            self.root / self.profile)

    def folder(self, experiment_name: str) -> Path:
        """The folder of one experiment's entries in this store's namespace."""
        return self.base / experiment_name

    def _bases(self) -> list[Path]:
        default = self.root / self.profile
        return [self.base, default] if self.namespace else [default]

    def paths(self, name: str, key: str) -> list[Path]:
        """Where an entry may live, in the order it is looked up."""
        return [b / name / f"{key}{s}" for b in self._bases() for s in (".json", ".npz")]

    def _note(self, entry: Entry, action: str) -> None:
        rec = {"action": action, "path": str(entry.path), "stale": entry.stale,
               "stale_reason": entry.stale_reason, "profile": self.profile,
               "namespace": self.namespace,
               **{k: entry.provenance.get(k) for k in
                  ("experiment", "key", "checksum", "code_fingerprint", "date", "wall_time_s",
                   "seed", "device", "threads", "torch", "hwlib", "git_commit")}}
        self.log.append(rec)
        manifest = os.environ.get("HWLIB_MANIFEST")
        if manifest:
            with open(manifest, "a") as f:  # one short line per append: atomic in practice
                f.write(json.dumps(rec) + "\n")

    def _why_stale(self, exp: Experiment, prov: Mapping[str, Any]) -> str:
        if prov.get("code_fingerprint") != exp.fingerprint:
            return "its code changed"
        if prov.get("stale_inputs"):
            return "it was computed from stale entries"
        for src in prov.get("inputs", []):
            current = self.current_checksum(src["experiment"], src["key"])
            if current != src.get("checksum"):
                what = "is gone" if current is None else "has changed"
                return f"its input {src['experiment']}/{src['key']} {what}"
        return ""

    def current_checksum(self, name: str, key: str) -> str | None:
        """The checksum of the stored entry ``name/key`` as it is now (None if missing)."""
        for path in self.paths(name, key):
            meta = entry_meta(path)
            if meta is not None:
                return meta.get("checksum")
        return None

    def load(self, exp: Experiment, config: Mapping[str, Any]) -> Entry | None:
        """The stored entry, or None when it is missing, not what was asked for, corrupt, or
        stale (unless allowed). Every reason to recompute but a plain miss is warned about."""
        key = config_key(exp.name, config)
        for path in self.paths(exp.name, key):
            if not path.exists():
                continue
            try:
                result, prov = _decode(path)
            except Exception as err:  # noqa: BLE001 - any unreadable file is reported
                warnings.warn(f"corrupt result entry {path} ({type(err).__name__}: {err}); "
                              "recomputing", stacklevel=2)
                return None
            wrong = self._mismatch(exp, key, config, prov, result)
            if wrong:
                warnings.warn(f"result entry {path} {wrong}; recomputing", stacklevel=2)
                return None
            reason = self._why_stale(exp, prov)
            if reason and not self.allow_stale:
                return None
            entry = Entry(result, prov, bool(reason), path, reason)
            self._note(entry, "read")
            note_input(entry)
            return entry
        return None

    @staticmethod
    def _mismatch(exp: Experiment, key: str, config: Mapping[str, Any],
                  prov: Mapping[str, Any], result: Mapping[str, Any]) -> str:
        if prov.get("experiment") != exp.name or prov.get("key") != key:
            return (f"holds {prov.get('experiment')}/{prov.get('key')}, not "
                    f"{exp.name}/{key}")
        if canonical(prov.get("config")) != json.loads(json.dumps(canonical(config))):
            return "holds another config than the one asked for"
        missing = [k for k in exp.outputs if k not in result]
        if missing:
            return f"lacks the outputs {', '.join(missing)}"
        return ""

    def save(self, exp: Experiment, config: Mapping[str, Any], result: Mapping[str, Any],
             wall_time_s: float, device: str = "cpu",
             inputs: Sequence[Mapping[str, Any]] = (), threads: int | None = None) -> Entry:
        """Store a result atomically with its provenance and return it as an entry.

        Args:
            exp: the experiment.
            config: its fully resolved config.
            result: what it returned.
            wall_time_s: compute time.
            device: the torch device it ran on.
            inputs: the entries read while computing it (see :func:`track_inputs`).
            threads: the torch thread count it ran with (default: this process's).
        """
        import torch

        missing = [k for k in exp.outputs if k not in result]
        if missing:
            raise StoreError(f"{exp.name}: result lacks the declared outputs "
                             f"{', '.join(missing)}")
        key = config_key(exp.name, config)
        inputs = [dict(s) for s in inputs]
        prov = {
            "experiment": exp.name,
            "key": key,
            "config": canonical(config),
            "seed": config.get("seed"),
            "code_fingerprint": exp.fingerprint,
            "module": exp.fn.__module__,
            "function": exp.fn.__name__,
            "device": device,
            "threads": int(threads if threads is not None else torch.get_num_threads()),
            "wall_time_s": round(float(wall_time_s), 4),
            "date": utc_now(),
            "namespace": self.namespace,
            "inputs": inputs,
            "stale_inputs": [f"{s['experiment']}/{s['key']}" for s in inputs if s.get("stale")],
            **environment(),
        }
        suffix, data = _encode(result, prov)
        path = self.folder(exp.name) / f"{key}{suffix}"
        atomic_write(path, data)
        for other in (self.folder(exp.name) / f"{key}{s}" for s in (".json", ".npz")):
            if other != path:  # an older entry of the other format
                other.unlink(missing_ok=True)
        reason = "it was computed from stale entries" if prov["stale_inputs"] else ""
        entry = Entry(_decode(path)[0], prov, bool(reason), path, reason)
        self._note(entry, "computed")
        note_input(entry)
        return entry

    def get_or_compute(self, exp: Experiment, config: Mapping[str, Any],
                       device: str = "cpu") -> Entry:
        """The stored entry if fresh, else compute it now (one torch thread), store it and
        return it."""
        entry = self.load(exp, config)
        if entry is not None:
            return entry
        threads = one_thread()
        start = time.perf_counter()
        with track_inputs() as inputs, using(self):
            result = exp(dict(config))
        return self.save(exp, config, result, time.perf_counter() - start, device, inputs,
                         threads)
