"""Provenance: a fingerprint of the code an experiment runs, versions, device, date."""

from __future__ import annotations

import ast
import datetime as _dt
import functools
import hashlib
import importlib.util
import platform
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a name inside a module, not a submodule
        return False


@functools.lru_cache(maxsize=None)
def _hwlib_imports(module: str) -> tuple[str, ...]:
    """The hwlib modules that ``module`` imports directly."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ()
    tree = ast.parse(Path(spec.origin).read_text())
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "hwlib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "hwlib":
                continue
            for alias in node.names:  # `from . import mram` names a module
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
    return tuple(sorted(found))


#: Plumbing that moves, stores or shows results but never changes a number: left out of the
#: fingerprints, so that editing it does not invalidate hours of stored training runs.
PLUMBING = frozenset({
    "hwlib", "hwlib.__main__", "hwlib.store", "hwlib.sweep", "hwlib.provenance",
    "hwlib.errors", "hwlib.params", "hwlib.profiles", "hwlib.plotting", "hwlib.notebook",
    "hwlib.pipeline", "hwlib.status", "hwlib.scorecard", "hwlib.sphinxext",
})


def _closure(module: str) -> list[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen or (m in PLUMBING and m != module):
            continue
        seen.add(m)
        todo.extend(_hwlib_imports(m))
    return sorted(seen)


def code_fingerprint(module: str) -> str:
    """Hash of the source of ``module`` and every hwlib module it imports, transitively.

    Modules in :data:`PLUMBING` are left out (unless ``module`` is one of them), and so are
    docstrings, comments and formatting: only the code itself counts.

    An entry computed by older code (a different fingerprint) is stale and is recomputed.

    Args:
        module: a dotted module name, e.g. ``"hwlib.mram"``.

    Returns:
        16 hex digits.
    """
    digest = hashlib.sha256()
    for name in _closure(module):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            digest.update(name.encode())
            digest.update(_code_only(Path(spec.origin).read_text()).encode())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _code_only(source: str) -> str:
    """The module's syntax tree without docstrings, comments or layout.

    Editing documentation then leaves fingerprints, and the stored results, untouched. Cached
    on the source text itself, so an edited module is parsed again.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(
                    body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` for uncommitted changes), or None outside git."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, str | None]:
    """Versions of the software that produced a result."""
    import numpy
    import torch

    from . import __version__

    return {
        "hwlib": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def utc_now() -> str:
    """The current time, ISO 8601, UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
