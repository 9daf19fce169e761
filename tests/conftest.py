"""Shared fixtures: a throwaway results store, and one torch thread per test process."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def store(tmp_path):
    from hwlib.study.store import ResultStore

    return ResultStore("smoke", root=tmp_path / "results")
