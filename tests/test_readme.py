"""The README's library example runs as written."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for code in blocks:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["acc"].shape == (32,)


def test_readme_tables_match_the_store(tmp_path):
    """The README's generated blocks (chapter cold times, the GPU summary) are what the
    stored timings and benchmark give: `python -m hwlib readme` rewrites them."""
    from hwlib.study import records

    copy = tmp_path / "README.md"
    copy.write_text((ROOT / "README.md").read_text())
    for name in records.README_BLOCKS:
        assert f"<!-- hwlib:{name} -->" in copy.read_text()
    assert not records.refresh_readme(copy), "README.md is stale: run python -m hwlib readme"
