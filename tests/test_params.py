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
    ("mc_samples", 0, "mc_samples=0: must be a int >= 100"),
    ("mc_samples", 2.5, "mc_samples=2.5"),
    ("torch_device", "tpu", "one of auto, cpu, cuda"),
    ("block_ratios", [10, 5, 5], "block_ratios=[10, 5, 5]: must be a list of 4"),
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
    assert resolve("book", mc_samples=700)["mc_samples"] == 700


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

    from hwlib.study.session import chapter_of

    for nb in toc_notebooks():
        params = notebook_parameters(nb)
        doc = nbformat.read(ROOT / nb, as_version=4)
        cell = next(c for c in doc.cells if "parameters" in c.metadata.get("tags", []))
        assigned = [ln for ln in cell.source.splitlines() if ln and not ln.startswith("#")]
        assert len(params) == len(assigned), f"{nb}: could not parse every line"
        for name, value in params.items():
            assert name in KNOBS, f"{nb}: parameter {name} is not in hwlib.study.params.KNOBS"
            check_param(name, value, chapter=chapter_of(nb))


def test_device_choice():
    import torch

    from hwlib.study.torch_device import pick_device

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert hwlib.setup("paper").torch_device == pick_device("auto")  # paper profile: auto
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="torch_device='cuda': no CUDA device here"):
            hwlib.setup("book", torch_device="cuda")
    with pytest.raises(ParameterError, match="device='tpu'"):
        pick_device("tpu")


def test_chapter_settings_override_the_shared_ones(monkeypatch):
    from hwlib.study import profiles

    monkeypatch.setitem(profiles.CHAPTER_PROFILES["hasgd"], "smoke", {"epochs": 7})
    assert resolve("smoke", "hasgd", epochs=None)["epochs"] == 7
    assert resolve("smoke", None, epochs=None)["epochs"] == PROFILES["smoke"]["epochs"]
    with pytest.raises(ParameterError, match="unknown chapter 'nope'"):
        resolve("smoke", "nope", epochs=None)
    assert set(profiles.CHAPTER_PROFILES) == {"sddhr", "memory_faults", "hasgd", "memristive",
                                              "arena", "peers", "guide"}
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


# --- every bad parameter fails in under a second, before any entry is written --------------


@pytest.mark.parametrize("nb,overrides,needle", [
    ("notebooks/memory_faults/04_depth.ipynb", {"block_ratios": [10, 5, 5]},
     "block_ratios=[10, 5, 5]: must be a list of 4"),
    ("notebooks/sddhr/01_conductance_moments.ipynb", {"mc_samples": 1}, "mc_samples=1"),
    ("notebooks/memristive/01_bitstream_arithmetic.ipynb", {"mc_samples": 1}, "mc_samples=1"),
    ("notebooks/hasgd/02_noise_level.ipynb", {"n_train": 10_000_000},
     "n_train=10000000: must be at most 60,000, the fashion_mnist training set"),
    ("notebooks/sddhr/04_accuracy_vs_variation.ipynb", {"table_scale": 7},
     "table_scale=7: must be one of sigma_scales"),
    ("notebooks/sddhr/01_conductance_moments.ipynb", {"sigma_rel_nominal": 0.5},
     "the largest sigma/mu is 7.5; must be at most 1"),
])
def test_bad_parameters_fail_fast_and_write_nothing(nb, overrides, needle, tmp_path,
                                                    monkeypatch):
    from hwlib.study import pipeline

    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path / "results"))
    start = time.perf_counter()
    with pytest.raises(ParameterError) as err:
        pipeline.validate(Path(nb), "book", overrides)
    assert time.perf_counter() - start < 1.0
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "results").exists()


def test_bad_environment_fails_before_the_kernel(tmp_path, monkeypatch):
    from hwlib.errors import DatasetMissingError, HwlibError
    from hwlib.study import pipeline

    nb = Path("notebooks/hasgd/02_noise_level.ipynb")
    monkeypatch.setenv("HWLIB_WORKERS", "0")
    start = time.perf_counter()
    with pytest.raises(ParameterError, match="HWLIB_WORKERS='0'"):
        pipeline.validate(nb, "book", {})
    monkeypatch.delenv("HWLIB_WORKERS")
    empty = tmp_path / "empty"
    empty.mkdir()
    empty.chmod(0o555)  # a read-only folder without the dataset: nothing to download into
    monkeypatch.setenv("HWLIB_DATA", str(empty))
    with pytest.raises(DatasetMissingError, match="fashion_mnist: .* lacks"):
        pipeline.validate(nb, "book", {})
    assert time.perf_counter() - start < 1.0
    assert issubclass(DatasetMissingError, HwlibError)


def test_set_items_may_hold_spaces():
    from hwlib.__main__ import split_items

    assert split_items("sigma_scales=[1, 2] seed=3") == [("sigma_scales", "[1, 2]"),
                                                         ("seed", "3")]
    assert split_items("x='a b'") == [("x", "'a b'")]
    with pytest.raises(ParameterError, match="P item '1,': must be NAME=VALUE"):
        split_items("1, 2")


@pytest.mark.parametrize("call,needle", [
    (lambda: __import__("hwlib.hardware.mram", fromlist=["x"]).g_moments_first_order(3000, -90),
     "sigma=-90"),
    (lambda: __import__("hwlib.hardware.sram", fromlist=["x"]).faulty_cells(
        100, -0.1, __import__("torch").Generator()), "p=-0.1: must be a probability"),
    (lambda: __import__("hwlib").ResultStore("fast"), "unknown profile 'fast'"),
    (lambda: __import__("hwlib.chapters.sddhr", fromlist=["x"]).moment_sweep(None, []),
     "sigma_scales=[]"),
    (lambda: __import__("hwlib.chapters.sddhr", fromlist=["x"]).moment_sweep(None, [1],
                                                                          n_samples=0),
     "n_samples=0: must be an int >= 100"),
    (lambda: __import__("hwlib.chapters.sddhr", fromlist=["x"]).run_study(None, ["mnist"], [],
                                                                       5, epochs=1),
     "sigma_scales=[]"),
    (lambda: __import__("hwlib.chapters.sddhr", fromlist=["x"]).run_study(None, ["mnist"], [1],
                                                                       5, epochs=0),
     "epochs=0: must be an int >= 1"),
    (lambda: __import__("hwlib.chapters.sddhr", fromlist=["x"]).run_study(None, [], [1], 5,
                                                                       epochs=1),
     "datasets=[]"),
])
def test_library_calls_refuse_bad_input(call, needle):
    with pytest.raises(ParameterError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_training_refuses_zero_epochs():
    import torch

    from hwlib.methods.training import Step, fit

    model = torch.nn.Linear(4, 2)
    step = Step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    for bad in (0, -1):
        with pytest.raises(ParameterError, match=f"epochs={bad}: must be an int >= 1"):
            fit(step, torch.randn(8, 4), torch.randint(0, 2, (8,)), epochs=bad, batch_size=4)
