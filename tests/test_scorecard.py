"""The scorecard: every claim well formed, verdicts, measurements with provenance, staleness."""

import json
from pathlib import Path

import pytest

from hwlib.study import scorecard
from hwlib.errors import ParameterError
from hwlib.study.store import ResultStore

from experiments import noise

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"id", "chapter", "paper", "where", "claim", "paper_value", "unit", "check", "profile",
        "experiment", "note"}


def test_claims_are_well_formed():
    rows = scorecard.claims()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    papers = {p.stem for p in (ROOT.parent / "shared" / "papers").glob("*.md")} - {"README"}
    for r in rows:
        assert set(r) == KEYS, r["id"]
        assert r["chapter"] in scorecard.CHAPTERS and r["id"].startswith(r["chapter"] + ".")
        assert r["check"]["kind"] in scorecard.CHECK_KINDS
        assert r["profile"] in ("book", "paper")
        assert r["experiment"].startswith(f"notebooks/{r['chapter']}/")
        if papers:
            assert r["paper"] in papers, r["paper"]
    assert {r["chapter"] for r in rows} == set(scorecard.CHAPTERS)


@pytest.mark.parametrize("check,value,measured,expected", [
    ({"kind": "abs", "tol": 1.0}, 90.4, 89.5, "reproduced"),
    ({"kind": "abs", "tol": 1.0}, 90.4, 89.3, "not reproduced"),
    ({"kind": "rel", "tol": 0.1}, 2.0, 2.19, "reproduced"),
    ({"kind": "max", "bound": 3.0}, "x", 3.5, "not reproduced"),
    ({"kind": "min", "bound": 90.0}, "x", 90.0, "reproduced"),
    ({"kind": "true"}, "x", True, "reproduced"),
    ({"kind": "true"}, "x", False, "not reproduced"),
    ({"kind": "abs", "tol": 1.0}, 1.0, None, "pending"),
])
def test_verdicts(check, value, measured, expected):
    assert scorecard.verdict({"id": "t", "check": check, "paper_value": value},
                             measured) == expected


def test_record_table_and_staleness(tmp_path):
    store = ResultStore("book", root=tmp_path)
    entry = store.get_or_compute(noise, {"seed": 0})
    cid = "sddhr.eq.gp_first_order_mean"
    assert scorecard.record(store, cid, True, [entry], detail="0.09 % off") == "reproduced"
    t = scorecard.table("sddhr", root=tmp_path)
    row = t[t.claim == cid].iloc[0]
    assert row.verdict == "reproduced" and "0.09 % off" in row.measured
    assert (t[t.claim != cid].verdict.str.startswith("pending")).all()
    body = json.loads((tmp_path / "book" / "scorecard" / f"{cid}.json").read_text())
    body["sources"][0]["module_fingerprint"] = "0" * 16  # code changed since
    (tmp_path / "book" / "scorecard" / f"{cid}.json").write_text(json.dumps(body))
    t = scorecard.table("sddhr", root=tmp_path)
    assert t[t.claim == cid].iloc[0].verdict == "stale (reproduced)"
    md = scorecard.markdown("sddhr", root=tmp_path)
    assert md.count("\n|") >= len(t) + 1 and "claims:" in md


def test_unknown_claim_and_chapter():
    with pytest.raises(ParameterError, match="unknown scorecard claim"):
        scorecard.claim("nope")
    with pytest.raises(ParameterError, match="chapter='x'"):
        scorecard.table("x")
