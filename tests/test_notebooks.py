"""Every notebook in the book follows the conventions the pipeline and nbval rely on."""

from pathlib import Path

import nbformat
import pytest

from hwlib.study.pipeline import toc_files, toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = toc_notebooks()


def test_every_toc_entry_exists():
    for f in toc_files():
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f
    assert NOTEBOOKS, "no notebook in _toc.yml"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=str)
def test_notebook_conventions(nb):
    doc = nbformat.read(ROOT / nb, as_version=4)
    code = [c for c in doc.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert "PROFILE = " in params[0].source
    assert code[0] is params[0], "the parameters cell is the first code cell"
    assert "import hwlib" in code[1].source and "hwlib.setup(" in code[1].source
    checks = [c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checks and all(c.outputs for c in checks), "a check cell with stored output"
    for c in code:
        if c not in checks:
            assert not c.outputs, "only check cells keep outputs in the source notebook"
    assert doc.cells[0].cell_type == "markdown" and doc.cells[0].source.startswith("# ")
