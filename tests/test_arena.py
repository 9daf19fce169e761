"""The arena: the grid's configs, the severity calibration against its targets, the heat map's
arithmetic, and every cell stored with provenance and read back."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch

from hwlib.chapters import arena as A
from hwlib.errors import ParameterError
from hwlib.study.store import ResultStore


def _session(tmp_path, **over):
    params = dict(dataset="fashion_mnist", network="mlp", hidden_widths=[64, 64], width=0.25,
                  epochs=1, batch_size=256, lr=3e-3, n_train=4096, n_calib=2048, n_test=1024,
                  precision="fp32")
    params.update(over)
    return types.SimpleNamespace(store=ResultStore("smoke", root=tmp_path),
                                 torch_device=torch.device("cpu"), params=params)


@pytest.fixture
def fmnist():
    from hwlib.data import DATASETS, data_root

    if not (data_root() / DATASETS["fashion_mnist"].folder).exists():
        pytest.skip("Fashion-MNIST not under the data root (set HWLIB_DATA)")


def test_calibration_lands_within_tolerance_of_its_targets(tmp_path, monkeypatch, fmnist):
    """The calibrated severity costs the standard network its target loss on the held-out
    images, measured again independently of the calibration's own bookkeeping."""
    monkeypatch.setenv("HWLIB_WORKERS", "1")
    S = _session(tmp_path)
    common = A.settings(S)
    table, sev, entries = A.calibrate_devices(S, common, ["sram", "crossbar"], (2.0, 10.0),
                                              chips=4, grid_points=9, bisections=7)
    model = A._standard_network({**common, "binary": False, "seed": 0})
    _, (xc, yc), _ = A.splits(common)
    from hwlib.methods.evaluation import accuracy, accuracy_on_chips

    clean = 100 * accuracy(model, xc, yc)
    for d in ("sram", "crossbar"):
        for target, s in zip((2.0, 10.0), sev[d]):
            assert np.isfinite(s) and s > 0, (d, target)
            hw = A.DEVICES[d].hardware(s, model, xc)
            drop = clean - 100 * float(np.mean(accuracy_on_chips(model, hw, xc, yc, [1, 2, 3, 4])))
            assert abs(drop - target) <= max(1.0, 0.2 * target), (d, target, drop)
    assert (table.achieved - table["drop"]).abs().max() <= 2.0


def test_grid_cells_are_stored_with_provenance_and_read_back(tmp_path, monkeypatch, fmnist):
    monkeypatch.setenv("HWLIB_WORKERS", "1")
    S = _session(tmp_path, n_train=1024, n_calib=512, n_test=512)
    common = A.settings(S)
    sev = {"sram": [0.01, 0.05, 0.1], "mram": [1.0, 2.0, 4.0]}
    configs = A.grid_configs(common, ["sram", "mram"], ["standard", "sampling", "ddhr",
                                                        "parametric", "erasure"], sev, [0], 2,
                             ddhr_chips=1)
    # parametric applies to MRAM only, erasure to SRAM only; DDHR one network per chip
    assert not any(c["method"] == "parametric" and c["device"] == "sram" for c in configs)
    assert not any(c["method"] == "erasure" and c["device"] == "mram" for c in configs)
    assert sum(c["method"] == "ddhr" for c in configs) == 2 * 3
    middle = [c for c in configs if c["method"] == "sampling" and c["severity"] == 0.05]
    assert middle[0]["test_severities"] == [0.01, 0.05, 0.1]  # the transfer row
    frame, entries = A.run_grid(S, configs)
    for e in entries:
        prov = e.provenance
        assert prov["config"]["method"] in A.METHODS and prov["code_fingerprint"]
    # a warm render computes nothing: every cell is read back, no file is written again
    files = {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*.npz")}
    frame2, entries2 = A.run_grid(S, configs)
    assert {f: f.stat().st_mtime_ns for f in tmp_path.rglob("*.npz")} == files
    assert [e.path for e in entries2] == [e.path for e in entries]
    pd.testing.assert_frame_equal(frame, frame2)
    heat = A.heat_table(frame, sev)
    assert set(heat.method) == {"standard", "sampling", "ddhr", "parametric", "erasure"}
    std = heat[heat.method == "standard"]
    assert np.allclose(std.share.dropna(), 0.0)  # NaN: no gap to close (clean <= standard)


def test_heat_table_share_of_the_gap():
    rows = []
    for seed in (0, 1):
        for m, acc in (("standard", 60.0), ("sampling", 75.0 + seed)):
            for chip in (1, 2):
                rows.append({"device": "sram", "method": m, "seed": seed, "train_severity": 0.1,
                             "test_severity": 0.1, "level": 0, "chip": chip, "accuracy": acc,
                             "clean": 90.0, "epoch_time_s": 1.0 if m == "standard" else 1.5})
    heat = A.heat_table(pd.DataFrame(rows), {"sram": [0.1]})
    s = heat[heat.method == "sampling"].iloc[0]
    assert s.share == pytest.approx((75.5 - 60.0) / 30.0)
    assert s.cost == pytest.approx(1.5) and s.n == 2


def test_search_levels_brackets_bisects_and_ends_at_the_range_for_a_saturating_device():
    """Reached targets are bisected onto; the first target a device never reaches takes the
    searched range's end (its measured loss stays below the target), a second one is NaN."""
    import math

    def saturating(top):
        return lambda s: top * s / (1.0 + s)

    sev, got, grid, drops = A.search_levels(saturating(40.0), 0.01, 100.0, 13, (2, 10, 30), 12)
    assert all(abs(g - t) < 0.05 for g, t in zip(got, (2, 10, 30)))
    assert sev[0] < sev[1] < sev[2] < 100.0 and len(grid) == len(drops) == 13
    sev, got, _, _ = A.search_levels(saturating(18.0), 0.01, 100.0, 13, (2, 10, 30), 12)
    assert sev[2] == 100.0 and got[2] == pytest.approx(18.0 * 100 / 101)
    assert abs(got[1] - 10) < 0.05
    sev, got, _, _ = A.search_levels(saturating(8.0), 0.01, 100.0, 13, (2, 10, 30), 12)
    assert sev[1] == 100.0 and got[1] < 10 and math.isnan(sev[2]) and math.isnan(got[2])
    sev, got, _, _ = A.search_levels(lambda s: 12.0 + s, 0.01, 1.0, 5, (2, 10), 4,
                                     from_zero=True)
    assert sev == [0.0, 0.0] and got == [12.0, 12.0]  # lost at no noise already


def test_bad_grid_one_line():
    with pytest.raises(ParameterError, match="device 'tpu': must be one of"):
        A.check_grid(["tpu"], ["standard"])
    with pytest.raises(ParameterError, match="method 'dropout': must be one of"):
        A.check_grid(["sram"], ["dropout"])
    with pytest.raises(ParameterError, match="test_chips=0"):
        A.grid_configs({}, ["sram"], ["standard"], {"sram": [0.1]}, [0], 0)


def test_findings_over_devices_are_not_measured_when_a_device_lacks_a_cell_they_read():
    import math

    rows = [{"device": d, "level": lv, "method": m, "accuracy": acc, "se": 0.1, "share": 0.6,
             "share_se": 0.01, "n": 3}
            for d in ("a", "b") for lv in (1, 2)
            for m, acc in (("sampling", 80.0), ("hasgd4", 81.0), ("fixed", 70.0),
                           ("ddhr", 85.0))
            if not (d == "b" and lv == 2)]  # device b never reached its highest severity
    heat = pd.DataFrame(rows)
    out = A.readings_findings(heat, pd.DataFrame(), ["a", "b"])
    for key in ("fixed_below_sampling", "ddhr_on_top"):  # they read the highest severity
        values, detail = out[f"arena.findings.{key}"]
        assert math.isnan(values["value"]) and "no cell for b" in detail
    # the middle-severity count has every device's cells: both are counted, none is missing
    values, detail = out["arena.findings.hasgd4_rarely_better"]
    assert values["value"] == 2 and "no cell" not in detail and "a, b" in detail
    full = A.readings_findings(heat[heat.device == "a"], pd.DataFrame(), ["a"])
    assert full["arena.findings.hasgd4_rarely_better"][0]["value"] == 1  # 81 - 80 > 2 SE
    assert full["arena.findings.fixed_below_sampling"][0]["value"] == 0
