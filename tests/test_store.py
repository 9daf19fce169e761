"""The results store: round trips, provenance, atomic writes, corruption, staleness."""

import json
import multiprocessing as mp
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from hwlib.models import checkpoint
from hwlib.errors import ParameterError, StoreError
from hwlib.study import store as store_mod
from hwlib.study.store import ResultStore, config_key

from experiments import counted, declared, derived, noise

PROVENANCE_FIELDS = {"experiment", "key", "config", "seed", "code_fingerprint", "module",
                     "device", "wall_time_s", "date", "hwlib", "torch", "numpy", "python",
                     "threads", "inputs", "checksum", "namespace"}


def rewrite(path, mutate):
    """Re-encode an entry after ``mutate(result, provenance)``, with a valid checksum (as an
    older hwlib, or a store of other code, would have written it)."""
    result, prov = store_mod._decode(path)
    mutate(result, prov)
    suffix, data = store_mod._encode(result, prov)
    path.write_bytes(data)


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
    e = store.save(noise, {"seed": 5}, checkpoint.state_arrays(model), 0.1)
    assert e.path.suffix == ".npz"
    back = store.load(noise, {"seed": 5})
    assert set(back.result) == {"state." + k for k in model.state_dict()}
    other = checkpoint.load_state_arrays(torch.nn.Sequential(torch.nn.Linear(3, 4),
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
    # Pretend the entry was computed by older code: rewrite its fingerprint.
    rewrite(e.path, lambda r, p: p.update(code_fingerprint="0" * 16))
    assert store.load(noise, {"seed": 6}) is None  # stale: recomputed, not presented
    shown = ResultStore("smoke", root=store.root, allow_stale=True).load(noise, {"seed": 6})
    assert shown is not None and shown.stale and "code changed" in shown.stale_reason
    fresh = store.get_or_compute(noise, {"seed": 6})
    assert not fresh.stale and fresh.provenance["code_fingerprint"] == noise.fingerprint


# --- the store verifies what it serves (issue: wrong data served as current) ------------------


def test_tampered_content_is_detected_and_recomputed(store):
    plain = store.save(declared, {"seed": 3}, {"mean": 0.44785}, 0.1)
    text = plain.path.read_text().replace("0.44785", "0.77")
    plain.path.write_text(text)  # one number changed in a valid JSON entry
    with pytest.warns(UserWarning, match="checksum mismatch"):
        assert store.load(declared, {"seed": 3}) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.get_or_compute(declared, {"seed": 3})["mean"] == 1.5  # recomputed
    e = store.get_or_compute(noise, {"seed": 2})
    with np.load(e.path) as z:  # an array changed in an npz entry
        members = {k: z[k] for k in z.files}
    members["sample"] = members["sample"] + 1
    np.savez(e.path.with_suffix(""), **members)
    with pytest.warns(UserWarning, match="checksum mismatch"):
        assert store.load(noise, {"seed": 2}) is None


@pytest.mark.parametrize("seeds", [(1, 2), (11, 12)])
def test_swapped_files_are_detected(store, seeds):
    a = store.get_or_compute(noise, {"seed": seeds[0]})           # npz
    b = store.get_or_compute(noise, {"seed": seeds[1]})
    b.path.write_bytes(a.path.read_bytes())  # one entry's file copied over another's
    with pytest.warns(UserWarning, match="holds test.noise/"):
        assert store.load(noise, {"seed": seeds[1]}) is None
    c = store.save(declared, {"seed": seeds[0]}, {"mean": 1.0}, 0.0)  # json
    d = store.save(declared, {"seed": seeds[1]}, {"mean": 2.0}, 0.0)
    d.path.write_bytes(c.path.read_bytes())
    with pytest.warns(UserWarning, match="holds test.declared/"):
        assert store.load(declared, {"seed": seeds[1]}) is None


def test_another_config_under_the_right_key_is_detected(store):
    e = store.get_or_compute(noise, {"seed": 4})
    rewrite(e.path, lambda r, p: p.update(config={"seed": 5}))
    with pytest.warns(UserWarning, match="another config"):
        assert store.load(noise, {"seed": 4}) is None


def test_entry_without_its_outputs_is_recomputed(store):
    e = store.save(declared, {"seed": 8}, {"mean": 4.0}, 0.0)
    rewrite(e.path, lambda r, p: r.clear())  # a valid entry with "result": {}
    with pytest.warns(UserWarning, match="lacks the outputs mean"):
        assert store.load(declared, {"seed": 8}) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.get_or_compute(declared, {"seed": 8})["mean"] == 4.0
    with pytest.raises(StoreError, match="declared outputs"):
        store.save(declared, {"seed": 9}, {}, 0.0)


def test_a_changed_helper_module_makes_its_dependents_stale(monkeypatch):
    from hwlib.study import provenance

    before = provenance.code_fingerprint("hwlib.chapters.hasgd")
    assert "hwlib.models.checkpoint" in provenance.fingerprint_closure("hwlib.chapters.hasgd")
    assert "hwlib.models.checkpoint" in provenance.fingerprint_closure("hwlib.chapters.memory_faults")
    real = provenance.module_source

    def edited(name):  # load_state_arrays now halves every weight
        text = real(name)
        return text.replace("torch.as_tensor(np.asarray(v))", "torch.as_tensor(np.asarray(v)) / 2"
                            ) if name == "hwlib.models.checkpoint" else text

    monkeypatch.setattr(provenance, "module_source", edited)
    assert provenance.code_fingerprint("hwlib.chapters.hasgd") != before


def test_experiment_code_takes_only_number_neutral_names_from_plumbing():
    """Plumbing is left out of fingerprints: experiment code may import from it only names
    that move, store, check or show numbers, never ones that compute them."""
    import ast

    from hwlib.study.provenance import PACKAGE_DIR, is_plumbing

    neutral = {"experiment", "ResultStore", "Entry", "config_key", "current_store", "canonical",
               "note_input", "run_sweep", "default_workers", "worker_init", "one_thread",
               "ParameterError", "HwlibError", "DatasetMissingError", "StoreError", "check_int",
               "check_probability", "PROJECT_ROOT", "Stat",
               "settings"}  # profile settings reach results only through their configs (keys)
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = "hwlib." + ".".join(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        if is_plumbing(module):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module and (
                    "study" in node.module.split(".") or node.module == "errors"):
                names = {a.name for a in node.names} - neutral
                assert not names, f"{module} imports {names} from plumbing {node.module}"


def test_stale_input_never_yields_a_fresh_output(tmp_path):
    store = ResultStore("smoke", root=tmp_path)
    first = store.get_or_compute(derived, {"profile": "smoke", "seed": 1})
    assert [s["experiment"] for s in first.provenance["inputs"]] == ["test.noise"]
    base = store.load(noise, {"seed": 1})
    rewrite(base.path, lambda r, p: p.update(code_fingerprint="0" * 16))  # the code changed
    lenient = ResultStore("smoke", root=tmp_path, allow_stale=True)
    made = lenient.get_or_compute(derived, {"profile": "smoke", "seed": 1, "shift": 1.0})
    assert made.stale and made.provenance["stale_inputs"] == [f"test.noise/{base.provenance['key']}"]
    # without HWLIB_ALLOW_STALE: the new evaluation is not fresh, the network is recomputed,
    # and the evaluation made from the old network is stale too (its input changed)
    assert store.load(derived, {"profile": "smoke", "seed": 1, "shift": 1.0}) is None
    assert store.load(noise, {"seed": 1}) is None  # stale: recomputed, by changed code
    store.save(noise, {"seed": 1}, {"mean": 0.5, "sample": base["sample"], "threads": 1}, 0.0)
    assert store.load(derived, {"profile": "smoke", "seed": 1}) is None
    again = store.get_or_compute(derived, {"profile": "smoke", "seed": 1})
    assert not again.stale


def test_custom_namespace_reads_defaults_and_writes_apart(tmp_path):
    book = ResultStore("book", root=tmp_path)
    shared = book.get_or_compute(noise, {"seed": 1})
    custom = ResultStore("book", root=tmp_path, namespace="custom/abc")
    assert custom.load(noise, {"seed": 1}).path == shared.path  # read from the defaults
    new = custom.get_or_compute(noise, {"seed": 2})
    assert new.path.parent == tmp_path / "book" / "custom" / "abc" / "test.noise"
    assert book.load(noise, {"seed": 2}) is None
    with pytest.raises(ParameterError, match="namespace"):
        ResultStore("book", root=tmp_path, namespace="../x")


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="unknown profile 'fast'"):
        ResultStore("fast", root=tmp_path)


def test_entries_follow_the_umask_and_record_the_thread_count(store):
    import torch

    torch.set_num_threads(2)
    try:
        e = store.get_or_compute(noise, {"seed": 21})
    finally:
        torch.set_num_threads(1)
    assert e.provenance["threads"] == 1 and e["threads"] == 1
    mode = e.path.stat().st_mode & 0o777
    assert mode == 0o666 & ~store_mod._UMASK


def test_temporary_files_of_a_killed_writer_are_swept(tmp_path):
    folder = tmp_path / "smoke" / "test.noise"
    folder.mkdir(parents=True)
    old = folder / ".tmp-abc.npz"
    old.write_bytes(b"half")
    young = folder / ".tmp-def.npz"
    young.write_bytes(b"being written")
    past = store_mod.PROCESS_START - 3600
    os.utime(old, (past, past))
    store_mod._SWEPT.discard(str(tmp_path / "smoke"))
    ResultStore("smoke", root=tmp_path)
    assert not old.exists() and young.exists()


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
    from hwlib.study.provenance import _closure

    mods = _closure("hwlib.mram")
    assert "hwlib.mram" in mods and "hwlib.errors" not in mods and "hwlib.store" not in mods


def test_fingerprint_ignores_docstrings_and_comments():
    from hwlib.study.provenance import _code_only

    a = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    b = 'def f(x):\n    """Other doc, |a| and p_1n."""\n\n    return x + 1\n'
    c = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert _code_only(a) == _code_only(b) != _code_only(c)
