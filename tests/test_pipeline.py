"""The notebook pipeline: papermill execution, provenance in the executed copy, reruns,
custom runs and the profile that ran, the page's banner, manifests cleaned up."""

import json
import os
from pathlib import Path

import pytest

from hwlib.errors import HwlibError
from hwlib.study import pipeline, status

NB = Path("notebooks/sddhr/01_conductance_moments.ipynb")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    stage = tmp_path_factory.mktemp("build") / "jb"
    mp = pytest.MonkeyPatch()
    mp.setattr(pipeline, "STAGE", stage)
    mp.setattr(pipeline, "RUN_DIR", stage.parent / ".run")
    mp.setenv("HWLIB_RESULTS", str(stage.parent / "results"))
    # PROFILE among the overrides wins over the profile argument (make notebook P="PROFILE=...")
    out = pipeline.run_notebook(NB, "book", {"PROFILE": "smoke", "sigma_scales": [1, 2]},
                                quiet=True)
    yield out
    mp.undo()


def test_executed_copy_records_provenance(executed):
    meta = json.loads(executed.read_text())["metadata"]
    hw = meta["hwlib"]
    assert hw["profile"] == "smoke" and hw["overrides"] == {"sigma_scales": [1, 2]}
    assert hw["namespace"].startswith("custom/")
    assert meta["papermill"]["parameters"]["PROFILE"] == "smoke"
    computed = [e for e in hw["entries"] if e["action"] == "computed"]
    assert len(computed) == 4  # 2 variation levels x 2 states, through the store
    assert all(e["code_fingerprint"] and e["seed"] is not None and e["threads"] == 1
               and e["checksum"] for e in computed)
    assert not list((executed.parents[3] / ".run").glob("manifest-*"))  # cleaned up


def test_page_shows_how_it_ran(executed):
    cells = json.loads(executed.read_text())["cells"]
    banner = "".join(cells[1]["source"])
    assert "custom run" in banner and "`sigma_scales=[1, 2]`" in banner
    injected = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and all("remove-cell" in c["metadata"]["tags"] for c in injected)


def test_stale_results_are_marked_on_the_page():
    doc = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Title"},
                     {"cell_type": "markdown", "metadata": {},
                      "source": "value {glue:text}`x:.2f` and {glue}`y`"}]}
    pipeline.annotate(doc, {"profile": "book", "stale": 3, "overrides": {}})
    assert "Stale results" in doc["cells"][1]["source"]
    assert doc["cells"][2]["source"].count(pipeline.STALE_MARK) == 2


def test_rerun_rules(executed, monkeypatch):
    monkeypatch.setattr(pipeline, "STAGE", executed.parents[2])
    assert pipeline.needs_run(NB, "smoke") is None  # a custom run is kept by `make book`
    assert "executed at profile 'smoke'" in pipeline.needs_run(NB, "book")
    monkeypatch.setattr(pipeline, "package_fingerprint", lambda: "changed")
    assert pipeline.needs_run(NB, "smoke") == "hwlib changed"


def test_status_page_lists_the_run(executed, monkeypatch):
    monkeypatch.setattr(pipeline, "STAGE", executed.parents[2])
    md = status.markdown([(NB, pipeline.executed_meta(NB))])
    assert "sddhr/01_conductance_moments" in md and "smoke" in md
    assert "**custom run**: `sigma_scales=[1, 2]`" in md
    assert "| 4 / 0 / 0 |" in md  # computed / read / stale
    assert "sddhr.conductance_mc@" in md and ":::{dropdown}" in md
    assert max(len(line) for line in md.splitlines() if line.startswith("|")) < 160


def test_a_failed_run_leaves_no_manifest(tmp_path, monkeypatch):
    import papermill

    monkeypatch.setattr(pipeline, "STAGE", tmp_path / "jb")
    monkeypatch.setattr(pipeline, "RUN_DIR", tmp_path / ".run")

    def boom(*args, **kwargs):
        raise papermill.PapermillExecutionError(0, 3, "x = 1", "ValueError", "x", [])

    monkeypatch.setattr(papermill, "execute_notebook", boom)
    with pytest.raises(HwlibError, match="failed in cell 3"):
        pipeline.run_notebook(NB, "smoke", {}, quiet=True)
    assert not list((tmp_path / ".run").glob("manifest-*"))
    dead = tmp_path / ".run" / "manifest-999999999-1.jsonl"  # a killed run's leftover
    dead.write_text("")
    pipeline._clean_manifests()
    assert not dead.exists()
