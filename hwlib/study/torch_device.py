"""Choosing the torch device: CUDA when present (``auto``), or forced by a parameter."""

from __future__ import annotations

import torch

from ..errors import ParameterError


def pick_device(preference: str | None = "auto") -> torch.device:
    """Return the torch device to compute on.

    Args:
        preference: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"`` or ``"cuda"``.

    Raises:
        ParameterError: an unknown preference, or ``"cuda"`` on a machine without CUDA.
    """
    preference = preference or "auto"
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError("torch_device='cuda': no CUDA device here; use 'auto' or 'cpu'")
        return torch.device("cuda")
    raise ParameterError(f"torch_device={preference!r}: must be one of auto, cpu, cuda")
