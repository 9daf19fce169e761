"""The notebook pipeline: papermill execution, provenance in the executed copy, reruns."""

import json
from pathlib import Path

import pytest

from hwlib.study import pipeline, status

NB = Path("notebooks/sddhr/01_conductance_moments.ipynb")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    stage = tmp_path_factory.mktemp("build") / "jb"
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "STAGE", stage)
    mp.setenv("HWLIB_RESULTS", str(stage.parent / "results"))
    out = pipeline.run_notebook(NB, "smoke", {"sigma_scales": [1, 2]}, quiet=True)
    yield out
    mp.undo()


def test_executed_copy_records_provenance(executed, monkeypatch):
    meta = json.loads(executed.read_text())["metadata"]
    hw = meta["hwlib"]
    assert hw["profile"] == "smoke" and hw["overrides"] == {"sigma_scales": [1, 2]}
    assert meta["papermill"]["parameters"]["PROFILE"] == "smoke"
    computed = [e for e in hw["entries"] if e["action"] == "computed"]
    assert len(computed) == 4  # 2 variation levels x 2 states, through the store
    assert all(e["code_fingerprint"] and e["seed"] is not None for e in computed)


def test_rerun_rules(executed, monkeypatch):
    monkeypatch.setattr(pipeline, "STAGE", executed.parents[2])
    assert pipeline.needs_run(NB, "smoke") is None  # a custom run is kept by `make book`
    assert "executed at profile 'smoke'" in pipeline.needs_run(NB, "book")
    monkeypatch.setattr(pipeline, "package_fingerprint", lambda: "changed")
    assert pipeline.needs_run(NB, "smoke") == "hwlib changed"


def test_status_page_lists_the_run(executed, monkeypatch):
    monkeypatch.setattr(pipeline, "STAGE", executed.parents[2])
    md = status.markdown([NB])
    assert str(NB) in md and "smoke" in md and "`sigma_scales=[1, 2]`" in md
    assert "4 stored (4 computed in this run, 0 read; 0 stale)" in md
    assert "sddhr.conductance_mc@" in md
