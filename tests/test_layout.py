"""The package's layout: imports run one way (plumbing, hardware, models, methods, chapters),
no import cycles, one module per device family."""

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hwlib"
#: The layers, bottom up: a module may import from its own layer and the ones below.
LAYERS = {"study": 0, "errors": 0, "data": 0, "hardware": 1, "presets": 1, "models": 2,
          "methods": 3, "chapters": 4}
#: Aggregators on top: the public API and the command line.
TOP = {"hwlib", "hwlib.__main__"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        out[name] = path
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Every hwlib module ``name`` imports, at any depth of its code (the parser the code
    fingerprints use)."""
    from hwlib.study.provenance import _hwlib_imports

    return {m for m in _hwlib_imports(name) if m in MODULES and m != name}


MODULES = _modules()


def _layer(name: str) -> int | None:
    if name in TOP:
        return None
    parts = name.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


@pytest.mark.parametrize("name", [m for m in MODULES if _layer(m) is not None])
def test_imports_run_one_way(name):
    mine = _layer(name)
    for other in _imports(name, MODULES[name]):
        theirs = _layer(other)
        assert theirs is not None and theirs <= mine, f"{name} imports {other}"


def test_no_import_cycles():
    graph = {m: _imports(m, p) for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 2:
            return
        assert state.get(m) != 1, "import cycle: " + " -> ".join(trail + [m])
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, trail + [m])
        state[m] = 2

    for m in graph:
        visit(m, [])


def test_one_module_per_device_family():
    families = {p.stem for p in (PACKAGE / "hardware").glob("*.py")} - {"__init__", "base"}
    assert {"mram", "sram", "crossbar", "memristor", "bitstream"} <= families
    for m in ("mram", "sram", "crossbar", "memristor"):
        assert "Hardware" in (PACKAGE / "hardware" / f"{m}.py").read_text()


def test_every_module_sits_in_a_layer():
    """No module of the library floats outside the layers (the memristive chapter's simulator
    used to sit at the top level)."""
    assert [m for m in MODULES if _layer(m) is None and m not in TOP] == []
