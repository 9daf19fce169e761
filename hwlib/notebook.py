"""What every notebook calls first: check its parameters and set up the session."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from .device import pick_device
from .params import check_profile, resolve
from .plotting import use_style
from .store import ResultStore
from .sweep import one_thread


@dataclass
class Session:
    """A notebook's resolved parameters and the services it computes with.

    Attributes:
        profile: ``smoke``, ``book`` or ``paper``.
        params: every knob, with ``None`` values filled from the profile.
        store: the results store of this profile.
        device: the torch device experiments run on.
    """

    profile: str
    params: dict[str, Any]
    store: ResultStore
    device: torch.device
    p: SimpleNamespace = field(init=False)

    def __post_init__(self) -> None:
        self.p = SimpleNamespace(**self.params)


def setup(PROFILE: str = "book", chapter: str | None = None,  # noqa: N803 - notebook's name
          **knobs: Any) -> Session:
    """Check the notebook's parameters, then set threads, seed, device and plot style.

    Args:
        PROFILE: ``smoke``, ``book`` or ``paper``.
        chapter: the chapter whose own profile settings fill ``None`` knobs (see
            :data:`hwlib.profiles.CHAPTER_PROFILES`); ``None``: the shared settings.
        **knobs: the notebook's other parameters (``None`` means "the profile's value").

    Returns:
        The session; ``session.p.<knob>`` gives each resolved parameter.

    Raises:
        ParameterError: one line naming a bad parameter and what is allowed.
    """
    params = resolve(PROFILE, chapter, **knobs)
    # The notebook's `device` knob if it has one, else the profile's (auto: CUDA if present).
    device = pick_device(params.get("device") or str(check_profile(PROFILE, chapter)["device"]))
    one_thread()
    torch.manual_seed(int(params.get("seed", 0)))
    use_style()
    return Session(PROFILE, params, ResultStore(PROFILE), device)
