"""The scorecard: every claim well formed and recorded by some notebook at its profile;
measurements tied to their run and stale when their sources change; custom runs apart."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from hwlib.errors import ParameterError
from hwlib.study import rules, scorecard
from hwlib.study.profiles import settings
from hwlib.study.store import ResultStore

from experiments import noise

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"id", "chapter", "dataset", "paper", "where", "claim", "paper_value", "unit", "check",
        "profile", "experiment", "note"}


def test_claims_are_well_formed():
    rows = scorecard.claims()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    papers = {p.stem for p in (ROOT.parent / "shared" / "papers").glob("*.md")} - {"README"}
    for r in rows:
        assert set(r) == KEYS, r["id"]
        assert r["chapter"] in scorecard.CHAPTERS and r["id"].startswith(r["chapter"] + ".")
        rules.check_spec(r["check"], r["id"])
        assert r["profile"] in ("book", "paper")
        assert (ROOT / r["experiment"]).exists() and r["experiment"].startswith(
            f"notebooks/{r['chapter']}/")
        if r["paper"] == "book":  # this book's own findings
            assert r["where"] == "Finding" and r["profile"] == "book", r["id"]
        elif papers:
            assert r["paper"] in papers, r["paper"]
    assert {r["chapter"] for r in rows} == set(scorecard.CHAPTERS)
    assert "kind" not in scorecard.CLAIMS_FILE.read_text()  # no boolean checks left


def test_every_claim_is_recorded_by_a_notebook_at_its_profile():
    """Each claim's reading exists in code (its base id as a literal in the chapter's readings
    or its notebook), and the claim's dataset is one its notebook runs on at its profile. At
    run time each notebook then checks that it recorded every claim expected of it
    (``S.check_recorded()``, run under nbval at the smoke profile)."""
    code = {ch: (ROOT / "hwlib" / "chapters" / f"{ch}.py").read_text()
            for ch in scorecard.CHAPTERS}
    for r in scorecard.claims():
        base = scorecard.base_id(r)
        source = code[r["chapter"]] + (ROOT / r["experiment"]).read_text()
        # a literal, or an f-string whose fixed parts match (e.g. memory_faults.table1.{a}.params)
        pattern = re.sub(r"\\{[^}]*\\}", ".+", re.escape(base))
        literal = f'"{base}"' in source or any(
            re.fullmatch(re.sub(r"\{[^}]+\}", "[^.]+", m), base)
            for m in re.findall(r'f"([a-z_]+\.[^"]*\{[^"]*)"', source))
        assert literal, f"{r['id']}: no reading records {base}"
        if r["dataset"] is not None:
            s = settings(r["profile"], r["chapter"])
            sets = list(s.get("datasets") or []) + ([s["dataset"]] if s.get("dataset") else [])
            assert r["dataset"] in sets, f"{r['id']}: {r['dataset']} not run at {r['profile']}"
    assert scorecard.expected("notebooks/sddhr/04_accuracy_vs_variation.ipynb", "paper",
                              ["cifar10", "svhn"]).count("sddhr.tcas.svhn.drop") == 1


def test_record_table_and_staleness(tmp_path):
    store = ResultStore("book", root=tmp_path)
    entry = store.get_or_compute(noise, {"seed": 0})
    cid = "sddhr.eq.gp_first_order_mean"
    params = {"PROFILE": "book", "sigma_rel_nominal": 0.03}
    assert scorecard.record(store, cid, 0.0009, [entry], "0.09 % off", params) == "reproduced"
    t = scorecard.table("sddhr", root=tmp_path)
    row = t[t.claim == cid].iloc[0]
    assert row.verdict == "reproduced" and "0.09 % off" in row.measured
    body = json.loads((tmp_path / "book" / "scorecard" / f"{cid}.json").read_text())
    assert body["params"] == params and body["profile"] == "book"
    assert body["sources"][0]["checksum"] == entry.checksum
    # the source entry recomputed (another checksum): the measurement is stale
    store.save(noise, {"seed": 0}, {"mean": 0.0, "sample": entry["sample"], "threads": 1}, 0)
    t = scorecard.table("sddhr", root=tmp_path)
    assert t[t.claim == cid].iloc[0].verdict == "stale (reproduced)"
    # a book claim without a measurement is 'not measured'; a paper claim 'pending'
    assert t[t.claim == "sddhr.eq.gp_first_order_var"].iloc[0].verdict == "not measured"
    assert t[t.claim == "sddhr.table1.ddhr"].iloc[0].verdict == "pending"
    md = scorecard.markdown("sddhr", root=tmp_path)
    assert md.count("\n|") >= len(t) + 1 and "claims of the papers:" in md
    assert "findings of this book:" in md


def test_recording_the_same_measurement_again_leaves_the_file_alone(tmp_path):
    store = ResultStore("book", root=tmp_path)
    entry = store.get_or_compute(noise, {"seed": 0})
    cid = "sddhr.eq.gp_first_order_mean"
    path = tmp_path / "book" / "scorecard" / f"{cid}.json"
    nan = {"value": float("nan")}  # NaN compares unequal to itself: the bytes decide
    for measured in (0.0009, nan):
        scorecard.record(store, cid, measured, [entry], "detail", {"PROFILE": "book"})
        first = path.read_bytes()
        body = json.loads(first)
        body["date"] = "2000-01-01T00:00:00+00:00"  # an old record of the same measurement
        path.write_text(json.dumps(body, indent=1, allow_nan=True))
        before = path.read_bytes()
        scorecard.record(store, cid, measured, [entry], "detail", {"PROFILE": "book"})
        assert path.read_bytes() == before  # a warm render: no rewrite, the first date kept
    scorecard.record(store, cid, 0.0010, [entry], "detail", {"PROFILE": "book"})
    body = json.loads(path.read_text())
    assert body["values"]["value"] == 0.0010 and body["date"] != "2000-01-01T00:00:00+00:00"


def test_editing_a_tolerance_changes_the_verdict_without_recomputing(tmp_path, monkeypatch):
    store = ResultStore("book", root=tmp_path)
    entry = store.get_or_compute(noise, {"seed": 1})
    cid = "sddhr.eq.gp_first_order_var"
    scorecard.record(store, cid, 0.007, [entry], "", {"PROFILE": "book"})
    assert scorecard.table("sddhr", root=tmp_path).set_index("claim").verdict[cid] == \
        "reproduced"
    rows = [dict(r) for r in scorecard.claims()]
    for r in rows:
        if r["id"] == cid:
            r["check"] = {"rule": "at_most", "bound": 0.005}
    monkeypatch.setattr(scorecard, "claims", lambda: tuple(rows))
    assert scorecard.table("sddhr", root=tmp_path).set_index("claim").verdict[cid] == \
        "not reproduced"


def test_measurements_need_sources_and_numbers(tmp_path):
    store = ResultStore("book", root=tmp_path)
    with pytest.raises(ParameterError, match="needs its sources"):
        scorecard.record(store, "sddhr.eq.gp_first_order_mean", 0.001, [])
    with pytest.raises(ParameterError, match="not a bool"):
        scorecard.record(store, "sddhr.eq.gp_first_order_mean", True,
                         [scorecard.code("hwlib.hardware.mram")])


def test_code_sources_go_stale_with_their_code(tmp_path, monkeypatch):
    from hwlib.study import provenance

    store = ResultStore("book", root=tmp_path)
    src = scorecard.code("hwlib.chapters.sddhr", "enumerate_levels")
    scorecard.record(store, "sddhr.fig3.m4_levels", {"value": 5, "mismatches": 0}, [src])
    body = scorecard.measurement(store, "sddhr.fig3.m4_levels")
    assert scorecard.stale_reason(store, body) == ""
    real = provenance.module_source
    monkeypatch.setattr(provenance, "module_source", lambda name: real(name).replace(
        "rtol=1e-12", "rtol=1e-11") if name == "hwlib.chapters.sddhr" else real(name))
    assert "code of hwlib.chapters.sddhr changed" in scorecard.stale_reason(store, body)


def test_unknown_claim_and_chapter():
    with pytest.raises(ParameterError, match="unknown scorecard claim"):
        scorecard.claim("nope")
    with pytest.raises(ParameterError, match="chapter='x'"):
        scorecard.table("x")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "custom" not in p.parts}


def test_custom_rerun_leaves_the_book_namespace_byte_identical(tmp_path, monkeypatch):
    """The README's rerun example, with overrides, into a copy of the store."""
    from hwlib.study import pipeline

    results = tmp_path / "results"
    for part in ("scorecard", "sddhr.conductance_mc"):
        if (ROOT / "results" / "book" / part).exists():
            shutil.copytree(ROOT / "results" / "book" / part, results / "book" / part)
    (results / "book").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HWLIB_RESULTS", str(results))
    monkeypatch.setattr(pipeline, "STAGE", tmp_path / "build" / "jb")
    monkeypatch.setattr(pipeline, "RUN_DIR", tmp_path / "build" / ".run")
    before = _digest(results / "book")
    out = pipeline.run_notebook(Path("notebooks/sddhr/01_conductance_moments.ipynb"), "book",
                                {"sigma_rel_nominal": 0.05, "sigma_scales": [1, 2],
                                 "mc_samples": 20_000}, quiet=True)
    assert _digest(results / "book") == before
    custom = list((results / "book" / "custom").iterdir())
    assert len(custom) == 1 and (custom[0] / "scorecard").exists()
    doc = json.loads(out.read_text())
    assert doc["metadata"]["hwlib"]["namespace"].startswith("custom/")
    assert "custom run" in "".join(doc["cells"][1]["source"])
