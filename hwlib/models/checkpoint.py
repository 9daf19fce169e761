"""A torch model's weights inside a stored result, and back (npz arrays, no pickle)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

STATE_PREFIX = "state."
"""Prefix of the arrays that hold a model's state dict in a result entry."""


def state_arrays(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """A torch model's state dict as result arrays, ``state.<name>``, for a stored entry."""
    return {STATE_PREFIX + k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_state_arrays(model: torch.nn.Module, result: Mapping[str, Any]) -> torch.nn.Module:
    """Load the ``state.<name>`` arrays of a result (see :func:`state_arrays`) into ``model``;
    return the model."""
    model.load_state_dict({k[len(STATE_PREFIX):]: torch.as_tensor(np.asarray(v))
                           for k, v in result.items() if k.startswith(STATE_PREFIX)})
    return model
