"""What every notebook calls first: check its parameters and set up the session.

``hwlib.setup(PROFILE, notebook="notebooks/<chapter>/<name>.ipynb", **knobs)`` checks every
knob (one line naming a bad one, before any compute), fills ``None`` knobs from the profile
(and the chapter's own profile settings), sets one torch thread, the seed, the torch device and
the plot style, and opens the results store.

A run whose knobs differ from the notebook's own defaults (its ``parameters`` cell) is a
*custom run*: its entries and scorecard measurements go to ``results/<profile>/custom/<hash of
the overrides>/``, so that it never replaces the book's results or verdicts.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

import torch

from ..errors import ParameterError
from .params import check_profile, resolve
from .plotting import use_style
from .profiles import CHAPTER_PROFILES
from .provenance import PROJECT_ROOT
from .store import Entry, ResultStore, canonical, one_thread
from .torch_device import pick_device

#: Display names of the datasets, for tables and figures.
DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                  "cifar100": "CIFAR-100", "svhn": "SVHN"}
#: The short dataset names in the ids of book-profile claims (``sddhr.table1.fmnist...``).
CLAIM_DATASET = {"mnist": "mnist", "fashion_mnist": "fmnist", "cifar10": "cifar10",
                 "cifar100": "cifar100", "svhn": "svhn"}


@functools.lru_cache(maxsize=64)
def _defaults(notebook: str, mtime: float) -> dict[str, Any]:
    doc = json.loads((PROJECT_ROOT / notebook).read_text())
    for cell in doc["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            out = {}
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                        node.targets[0], ast.Name):
                    out[node.targets[0].id] = ast.literal_eval(node.value)
            return out
    raise ParameterError(f"notebook={notebook!r}: it has no cell tagged 'parameters'")


def notebook_defaults(notebook: str | Path) -> dict[str, Any]:
    """The knobs of a notebook's ``parameters`` cell and their default values."""
    path = PROJECT_ROOT / notebook
    if not path.exists():
        raise ParameterError(f"notebook={str(notebook)!r}: no such notebook in "
                             f"{PROJECT_ROOT / 'notebooks'}")
    return dict(_defaults(str(notebook), path.stat().st_mtime))


def overrides_of(notebook: str | Path, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs whose values differ from the notebook's defaults (``PROFILE`` aside)."""
    defaults = notebook_defaults(notebook)
    out = {}
    for name, value in knobs.items():
        if name == "PROFILE":
            continue
        if name not in defaults:
            raise ParameterError(f"unknown parameter {name!r} for {notebook}; allowed: "
                                 f"{', '.join(sorted(defaults))}")
        if canonical(value) != canonical(defaults[name]):
            out[name] = value
    return out


def namespace_of(overrides: Mapping[str, Any]) -> str:
    """The store namespace of a run: ``""`` for the defaults, else ``custom/<hash>``."""
    if not overrides:
        return ""
    text = json.dumps(canonical(dict(overrides)), sort_keys=True)
    return "custom/" + hashlib.sha256(text.encode()).hexdigest()[:12]


def chapter_of(notebook: str | Path) -> str:
    """The chapter of ``notebooks/<chapter>/<name>.ipynb``."""
    parts = Path(notebook).parts
    if len(parts) < 3 or parts[0] != "notebooks" or parts[1] not in CHAPTER_PROFILES:
        raise ParameterError(f"notebook={str(notebook)!r}: must be notebooks/<chapter>/"
                             f"<name>.ipynb with a chapter among "
                             f"{', '.join(CHAPTER_PROFILES)}")
    return parts[1]


@dataclass
class Session:
    """A notebook's resolved parameters and the services it computes with.

    Attributes:
        profile: ``smoke``, ``book`` or ``paper``.
        params: every knob, with ``None`` values filled from the profile.
        store: the results store of this profile (and run namespace).
        torch_device: the torch device experiments run on.
        notebook: the notebook (``notebooks/<chapter>/<name>.ipynb``), or None.
        overrides: the knobs that differ from the notebook's defaults (a custom run).
    """

    profile: str
    params: dict[str, Any]
    store: ResultStore
    torch_device: torch.device
    notebook: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    p: SimpleNamespace = field(init=False)
    recorded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.p = SimpleNamespace(**self.params)

    @property
    def device(self) -> torch.device:
        """The torch device (an alias of :attr:`torch_device`, kept for old notebooks)."""
        return self.torch_device

    @property
    def custom(self) -> bool:
        """True for a run with parameters that differ from the notebook's defaults."""
        return bool(self.overrides)

    def record(self, claim_id: str, values: Any, sources: Iterable[Any],
               detail: str = "") -> str:
        """Store a measurement of a scorecard claim (see :func:`hwlib.study.scorecard.record`)
        with this run's profile, parameters and namespace; returns its verdict."""
        from . import scorecard

        verdict = scorecard.record(self.store, claim_id, values, sources, detail,
                                   params=self.params, notebook=self.notebook)
        self.recorded.append(claim_id)
        return verdict

    @property
    def datasets(self) -> list[str]:
        """The datasets this run uses (its ``datasets`` and ``dataset`` knobs)."""
        out = list(self.params.get("datasets") or [])
        if self.params.get("dataset"):
            out.append(self.params["dataset"])
        return out

    def record_claim(self, base: str, values: Any, sources: Iterable[Any], detail: str = "",
                     dataset: str | None = None) -> str | None:
        """Record a reading under every claim it measures on ``dataset`` (default: the run's
        one dataset): the claim ``base`` and its dataset-tagged twins (see
        :func:`hwlib.study.scorecard.ids_for`). Returns the verdict of the last one recorded
        (None when no claim is about this dataset)."""
        from . import scorecard

        if dataset is None:
            sets = self.datasets
            dataset = sets[0] if len(sets) == 1 else None
        verdict = None
        for cid in scorecard.ids_for(base, dataset):
            verdict = self.record(cid, values, sources, detail)
        return verdict

    def check_recorded(self) -> list[str]:
        """Raise one line naming the claims this notebook should have recorded for its
        profile and datasets but did not; returns the claims recorded."""
        from . import scorecard
        from ..errors import HwlibError

        if self.notebook is None:
            return list(self.recorded)
        missing = [c for c in scorecard.expected(self.notebook, self.profile, self.datasets)
                   if c not in self.recorded]
        if missing:
            raise HwlibError(f"{self.notebook} did not record {', '.join(missing)} at the "
                             f"{self.profile} profile")
        return list(self.recorded)

    def scorecard(self, prefix: str | tuple[str, ...] = "") -> Any:
        """This chapter's scorecard rows whose claim id starts with ``prefix`` (or one of
        several), as this run sees them (its own measurements first), as a table for the
        page."""
        from . import scorecard

        chapter = chapter_of(self.notebook) if self.notebook else None
        card = scorecard.table(chapter, store=self.store)
        card = card[card.claim.str.startswith(prefix)]
        cols = ["claim", "paper", "measured", "profile", "verdict"]
        return card[cols].style.hide(axis="index")


class Phrase:
    """Words glued into a page's text (myst-nb shows a glued value's ``repr``, which for a
    plain ``str`` would carry quotes).

    Args:
        text: the words.
    """

    def __init__(self, text: Any) -> None:
        self.text = str(text)

    def __repr__(self) -> str:
        return self.text


def _manifest(record: Mapping[str, Any]) -> None:
    path = os.environ.get("HWLIB_MANIFEST")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(canonical(dict(record))) + "\n")


def setup(PROFILE: str = "book", chapter: str | None = None,  # noqa: N803 - notebook's name
          notebook: str | None = None, namespace: Mapping[str, Any] | None = None,
          **knobs: Any) -> Session:
    """Check the notebook's parameters, then set threads, seed, device and plot style.

    A notebook calls ``S = hwlib.setup(notebook="notebooks/<chapter>/<name>.ipynb",
    namespace=globals())``: the knobs of its ``parameters`` cell are read from ``namespace``.

    Args:
        PROFILE: ``smoke``, ``book`` or ``paper`` (with ``namespace``: read from it).
        chapter: the chapter whose own profile settings fill ``None`` knobs (see
            :data:`hwlib.study.profiles.CHAPTER_PROFILES`); default: the notebook's chapter.
        notebook: the notebook's path from the project root; its ``parameters`` cell names the
            knobs and gives the defaults that tell a custom run from the book's.
        namespace: where the knobs' values are (a notebook's ``globals()``).
        **knobs: the parameters given one by one (``None`` means "the profile's value").

    Returns:
        The session; ``session.p.<knob>`` gives each resolved parameter.

    Raises:
        ParameterError: one line naming a bad parameter and what is allowed.
    """
    if namespace is not None:
        if notebook is None:
            raise ParameterError("setup(namespace=...) needs notebook=... (its parameters)")
        names = [k for k in notebook_defaults(notebook) if k != "PROFILE"]
        missing = [k for k in names if k not in namespace]
        if missing:
            raise ParameterError(f"{notebook}: parameters {', '.join(missing)} are not set")
        PROFILE = namespace.get("PROFILE", PROFILE)  # noqa: N806
        knobs = {**{k: namespace[k] for k in names}, **knobs}
    if notebook is not None and chapter is None:
        chapter = chapter_of(notebook)
    params = resolve(PROFILE, chapter, **knobs)
    overrides = overrides_of(notebook, knobs) if notebook is not None else {}
    namespace = namespace_of(overrides)
    profile_device = str(check_profile(PROFILE, chapter)["torch_device"])
    device = pick_device(params.get("torch_device") or profile_device)
    one_thread()
    torch.manual_seed(int(params.get("seed", 0)))
    use_style()
    store = ResultStore(PROFILE, namespace=namespace)
    _manifest({"action": "session", "profile": PROFILE, "notebook": notebook,
               "namespace": namespace, "overrides": overrides, "params": params})
    return Session(PROFILE, params, store, device, notebook, overrides)


def stale_sources(sources: Iterable[Entry]) -> list[str]:
    """The stale entries among ``sources``, as ``experiment/key``."""
    return [f"{e.provenance['experiment']}/{e.provenance['key']}" for e in sources
            if getattr(e, "stale", False)]
