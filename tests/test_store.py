"""The results store: round trips, provenance, atomic writes, corruption, staleness."""

import json
import multiprocessing as mp
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from hwlib import store as store_mod
from hwlib.errors import StoreError
from hwlib.store import ResultStore, config_key

from experiments import counted, noise

PROVENANCE_FIELDS = {"experiment", "key", "config", "seed", "code_fingerprint", "module",
                     "device", "wall_time_s", "date", "hwlib", "torch", "numpy", "python"}


def test_round_trip_json_and_npz(store):
    e = store.get_or_compute(noise, {"seed": 3})
    assert e.path.suffix == ".npz"
    assert PROVENANCE_FIELDS <= set(e.provenance)
    again = store.load(noise, {"seed": 3})
    assert again is not None and not again.stale
    np.testing.assert_array_equal(again["sample"], e["sample"])
    assert again["mean"] == e["mean"]
    plain = store.save(noise, {"seed": 4}, {"a": 1, "b": [1.5, 2]}, 0.1)
    assert plain.path.suffix == ".json"
    assert json.loads(plain.path.read_text())["result"] == {"a": 1, "b": [1.5, 2]}


def test_model_weights_round_trip_through_an_entry(store):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model[1].running_mean.fill_(0.5)
    e = store.save(noise, {"seed": 5}, store_mod.state_arrays(model), 0.1)
    assert e.path.suffix == ".npz"
    back = store.load(noise, {"seed": 5})
    assert set(back.result) == {"state." + k for k in model.state_dict()}
    other = store_mod.load_state_arrays(torch.nn.Sequential(torch.nn.Linear(3, 4),
                                                            torch.nn.BatchNorm1d(4)), back.result)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(other.state_dict()[k], v, rtol=0, atol=0)


def test_key_is_the_resolved_config():
    assert config_key("x", {"a": 1, "b": 2}) == config_key("x", {"b": 2, "a": 1})
    assert config_key("x", {"a": 1}) != config_key("x", {"a": 2})
    assert config_key("x", {"a": 1}) != config_key("y", {"a": 1})


def test_no_pickle(store):
    with pytest.raises(StoreError, match="without pickle"):
        store.save(noise, {"seed": 0}, {"bad": np.array([object()], dtype=object)}, 0.0)
    e = store.get_or_compute(noise, {"seed": 1})
    with np.load(e.path, allow_pickle=False) as z:  # loads without pickle
        assert "__meta__" in z.files


def test_killed_write_leaves_nothing(store, monkeypatch):
    def boom(src, dst):
        raise KeyboardInterrupt  # the process is killed between write and rename

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        store.save(noise, {"seed": 0}, {"a": 1}, 0.0)
    monkeypatch.undo()
    folder = store.folder(noise.name)
    assert list(folder.iterdir()) == []  # no entry, no temporary file
    assert store.load(noise, {"seed": 0}) is None


def test_corrupt_entry_is_reported_and_recomputed(store):
    e = store.get_or_compute(noise, {"seed": 5})
    e.path.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="corrupt result entry"):
        assert store.load(noise, {"seed": 5}) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = store.get_or_compute(noise, {"seed": 5})
    assert fresh["mean"] == e["mean"]
    assert store.load(noise, {"seed": 5}) is not None


def test_stale_entry_recomputed_or_shown_marked(store, tmp_path):
    e = store.get_or_compute(noise, {"seed": 6})
    meta_path = e.path
    # Pretend the entry was computed by older code: rewrite its fingerprint.
    with np.load(meta_path, allow_pickle=False) as z:
        meta = json.loads(z["__meta__"].tobytes())
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    meta["provenance"]["code_fingerprint"] = "0" * 16
    np.savez(meta_path, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    assert store.load(noise, {"seed": 6}) is None  # stale: recomputed, not presented
    shown = ResultStore("smoke", root=store.root, allow_stale=True).load(noise, {"seed": 6})
    assert shown is not None and shown.stale
    fresh = store.get_or_compute(noise, {"seed": 6})
    assert not fresh.stale and fresh.provenance["code_fingerprint"] == noise.fingerprint


def _writer(root, seed, n):
    s = ResultStore("smoke", root=root)
    for i in range(n):
        s.save(noise, {"seed": seed % 3}, {"writer": seed, "i": i, "x": np.arange(1000) * seed},
               0.0)


def test_parallel_writers_corrupt_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    s = ResultStore("smoke", root=tmp_path)
    for seed in range(3):
        e = s.load(noise, {"seed": seed})
        assert e is not None
        np.testing.assert_array_equal(e["x"], np.arange(1000) * e["writer"])
    leftovers = [p for p in s.folder(noise.name).iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_manifest_records_reads_and_writes(store, tmp_path, monkeypatch):
    manifest = tmp_path / "manifest.jsonl"
    monkeypatch.setenv("HWLIB_MANIFEST", str(manifest))
    store.get_or_compute(noise, {"seed": 7})
    store.get_or_compute(noise, {"seed": 7})
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert [x["action"] for x in lines] == ["computed", "read"]
    assert lines[0]["code_fingerprint"] == noise.fingerprint


def test_fingerprint_follows_imports_not_plumbing():
    from hwlib.provenance import _closure

    mods = _closure("hwlib.mram")
    assert "hwlib.mram" in mods and "hwlib.errors" not in mods and "hwlib.store" not in mods


def test_fingerprint_ignores_docstrings_and_comments():
    from hwlib.provenance import _code_only

    a = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    b = 'def f(x):\n    """Other doc, |a| and p_1n."""\n\n    return x + 1\n'
    c = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert _code_only(a) == _code_only(b) != _code_only(c)
