"""Bad input fails before any compute, with one line naming the parameter and what is allowed."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hwlib
from hwlib.errors import ParameterError
from hwlib.study.params import KNOBS, check_param, parse_value, resolve
from hwlib.study.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
NB = "notebooks/sddhr/01_conductance_moments.ipynb"


def test_profiles_share_their_knobs():
    keys = [set(v) for v in PROFILES.values()]
    assert keys[0] == keys[1] == keys[2]
    assert set(PROFILES) == {"smoke", "book", "paper"}
    for name in keys[0]:
        assert name in KNOBS, name


@pytest.mark.parametrize("name,value,needle", [
    ("sigma_rel_nominal", -0.1, "sigma_rel_nominal=-0.1: must be a float in [0, 1]"),
    ("sigma_scales", [1, -2], "sigma_scales=[1, -2]: must be a non-empty list"),
    ("sigma_scales", [], "non-empty list"),
    ("mc_samples", 0, "mc_samples=0: must be a int >= 1"),
    ("mc_samples", 2.5, "mc_samples=2.5"),
    ("device", "tpu", "one of auto, cpu, cuda"),
    ("datasets", ["imagenet"], "mnist, fashion_mnist"),
    ("bogus", 1, "unknown parameter 'bogus'"),
])
def test_bad_values_one_line(name, value, needle):
    with pytest.raises(ParameterError) as err:
        check_param(name, value)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_unknown_profile():
    with pytest.raises(ParameterError, match="unknown profile 'fast'; allowed: smoke, book, paper"):
        hwlib.setup("fast")


def test_resolve_fills_from_profile():
    p = resolve("smoke", mc_samples=None, seed=1)
    assert p["mc_samples"] == PROFILES["smoke"]["mc_samples"] and p["seed"] == 1
    assert resolve("book", mc_samples=7)["mc_samples"] == 7


def test_parse_value():
    assert parse_value("12") == 12 and parse_value("[1, 2.5]") == [1, 2.5]
    assert parse_value("None") is None and parse_value("cpu") == "cpu"


def _cli(*args):
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "hwlib", *args], cwd=ROOT, capture_output=True,
                         text=True, env={**__import__("os").environ, "HWLIB_BUILD_ROOT": "/nonexistent"})
    return out, time.perf_counter() - start


@pytest.mark.parametrize("args,needle", [
    (["run", NB, "-p", "sigma_scale", "12"], "unknown parameter 'sigma_scale'; allowed:"),
    (["run", NB, "-p", "sigma_rel_nominal", "-1"], "sigma_rel_nominal=-1: must be"),
    (["run", NB, "--set", "mc_samples=0"], "mc_samples=0: must be"),
    (["run", NB, "--profile", "huge"], "unknown profile 'huge'"),
    (["run", "notebooks/nope.ipynb"], "notebook 'notebooks/nope.ipynb' not found"),
    (["book", "--profile", "huge"], "unknown profile 'huge'"),
])
def test_cli_rejects_before_compute(args, needle):
    out, wall = _cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert wall < 30  # no kernel started, nothing executed


def test_every_notebook_parameter_is_registered():
    from hwlib.study.pipeline import notebook_parameters, toc_notebooks

    import nbformat

    for nb in toc_notebooks():
        params = notebook_parameters(nb)
        doc = nbformat.read(ROOT / nb, as_version=4)
        cell = next(c for c in doc.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [ln for ln in cell.source.splitlines() if ln and not ln.startswith("#")]
        assert len(params) == len(assigned), f"{nb}: papermill could not parse every line"
        for name, info in params.items():
            assert name in KNOBS, f"{nb}: parameter {name} is not in hwlib.study.params.KNOBS"
            check_param(name, parse_value(info["default"]))


def test_device_choice():
    import torch

    from hwlib.study.torch_device import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert hwlib.setup("paper").device == pick_device("auto")  # the paper profile: auto
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="device='cuda': no CUDA device here"):
            hwlib.setup("book", device="cuda")
    with pytest.raises(ParameterError, match="device='tpu'"):
        pick_device("tpu")


def test_chapter_settings_override_the_shared_ones(monkeypatch):
    from hwlib.study import profiles

    monkeypatch.setitem(profiles.CHAPTER_PROFILES["hasgd"], "smoke", {"epochs": 7})
    assert resolve("smoke", "hasgd", epochs=None)["epochs"] == 7
    assert resolve("smoke", None, epochs=None)["epochs"] == PROFILES["smoke"]["epochs"]
    with pytest.raises(ParameterError, match="unknown chapter 'nope'"):
        resolve("smoke", "nope", epochs=None)
    assert set(profiles.CHAPTER_PROFILES) == {"sddhr", "memory_faults", "hasgd", "memristive"}
    for chapter in profiles.CHAPTER_PROFILES.values():
        assert set(chapter) == set(PROFILES)


def test_shared_checks_name_the_parameter_and_the_first_bad_value():
    import numpy as np
    import torch

    from hwlib.errors import check_int, check_probability

    for ok in (0, 1, 0.5, np.array([0.0, 1.0]), torch.tensor([0.2, 0.3])):
        check_probability("p", ok)
    for bad, shown in ((1.5, "1.5"), (-0.1, "-0.1"), (float("nan"), "nan"), (True, "True"),
                       ("0.1", "'0.1'"), (torch.tensor([0.2, 1.5]), "1.5"),
                       (np.array([0.3, -2.0]), "-2.0")):
        with pytest.raises(ParameterError, match=r"^p=" + re.escape(shown)
                           + r": must be a probability in \[0, 1\]$"):
            check_probability("p", bad)
    assert check_int("epochs", np.int64(3), 1) == 3
    for bad in (0, 2.0, True, "3"):
        with pytest.raises(ParameterError, match=r"^epochs=.*: must be an int >= 1$"):
            check_int("epochs", bad, 1)
