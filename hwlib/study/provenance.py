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

PACKAGE_DIR = Path(__file__).resolve().parents[1]
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
    tree = ast.parse(module_source(module) or "")
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


#: Plumbing that moves, stores or shows results but never changes a number: the package
#: itself, its command line, the error types and every module of :mod:`hwlib.study`. Left out
#: of the fingerprints, so that editing it does not invalidate hours of stored training runs;
#: ``tests/test_store.py`` checks that experiment code takes only number-neutral names from it.
PLUMBING_MODULES = frozenset({"hwlib", "hwlib.__main__", "hwlib.errors"})


def is_plumbing(module: str) -> bool:
    """True for a module left out of code fingerprints (see :data:`PLUMBING_MODULES`)."""
    return module in PLUMBING_MODULES or module == "hwlib.study" or module.startswith(
        "hwlib.study.")


def _closure(module: str) -> list[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen or (is_plumbing(m) and m != module):
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
        source = module_source(name)
        if source is not None:
            digest.update(name.encode())
            digest.update(_code_only(source).encode())
    return digest.hexdigest()[:16]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(
                    body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _import_target(module: str, node: ast.ImportFrom, package: str) -> str:
    if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        return f"{base}.{node.module}" if node.module else base
    return node.module or ""


@functools.lru_cache(maxsize=256)
def _module_parts(module: str, source: str) -> tuple[dict, dict, list]:
    """A module's top level: the statements defining each name, the hwlib module each
    imported name comes from, and the statements that always run (neither a definition nor an
    import)."""
    spec = importlib.util.find_spec(module)
    package = module if spec is not None and spec.submodule_search_locations else \
        module.rpartition(".")[0]
    tree = _strip_docstrings(ast.parse(source))
    defs: dict[str, list[ast.stmt]] = {}
    imported: dict[str, str] = {}
    always: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.setdefault(stmt.name, []).append(stmt)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        defs.setdefault(n.id, []).append(stmt)
        elif isinstance(stmt, ast.Import):
            for a in stmt.names:
                if a.name.split(".")[0] == "hwlib":
                    imported[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(stmt, ast.ImportFrom):
            target = _import_target(module, stmt, package)
            if target.split(".")[0] != "hwlib":
                continue
            for a in stmt.names:
                sub = f"{target}.{a.name}"
                imported[a.asname or a.name] = sub if _is_module(sub) else target
        elif not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            always.append(stmt)
    return defs, imported, always


def reachable(module: str, name: str) -> tuple[list[ast.stmt], list[str]]:
    """What the top-level ``name`` of ``module`` reaches: the module's own statements that
    define it and every top-level name they use (transitively), plus the statements that
    always run at import; and the hwlib modules whose imported names they use."""
    source = module_source(module) or ""
    defs, imported, always = _module_parts(module, source)
    if name not in defs:
        raise KeyError(f"{module} defines no top-level {name!r}")
    seen_names: set[str] = set()
    stmts: dict[int, ast.stmt] = {}
    modules: set[str] = set()
    todo = [name]
    for stmt in always:
        stmts[id(stmt)] = stmt
        todo += [n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)]
    while todo:
        n = todo.pop()
        if n in seen_names:
            continue
        seen_names.add(n)
        if n in imported:
            modules.add(imported[n])
        for stmt in defs.get(n, []):
            if id(stmt) not in stmts:
                stmts[id(stmt)] = stmt
                todo += [x.id for x in ast.walk(stmt) if isinstance(x, ast.Name)]
    ordered = sorted(stmts.values(), key=lambda st: (st.lineno, st.col_offset))
    return ordered, sorted(modules)


def function_fingerprint(module: str, name: str) -> str:
    """Hash of the code that the top-level function (or class) ``name`` of ``module`` reaches:
    the statements of its own module it uses (see :func:`reachable`) and, for every hwlib
    module it takes a name from, that module's :func:`code_fingerprint`. Editing code of the
    same module that it does not reach (a summary, a plot helper) leaves it unchanged.

    Returns:
        16 hex digits.
    """
    stmts, modules = reachable(module, name)
    digest = hashlib.sha256(f"{module}:{name}".encode())
    for stmt in stmts:
        digest.update(ast.dump(stmt).encode())
    for m in modules:
        if not is_plumbing(m):
            digest.update(f"{m}={code_fingerprint(m)}".encode())
    return digest.hexdigest()[:16]


def module_source(name: str) -> str | None:
    """The source text of an importable module (None for a package without code file)."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin).read_text()
    return None


def fingerprint_closure(module: str) -> list[str]:
    """The modules whose code makes up the fingerprint of ``module`` (itself included)."""
    return _closure(module)


@functools.lru_cache(maxsize=256)
def _code_only(source: str) -> str:
    """The module's syntax tree without docstrings, comments or layout.

    Editing documentation then leaves fingerprints, and the stored results, untouched. Cached
    on the source text itself, so an edited module is parsed again.
    """
    return ast.dump(_strip_docstrings(ast.parse(source)))


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


@functools.lru_cache(maxsize=1)
def hwlib_version() -> str:
    """The installed hwlib's version (from its package metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hwlib")
    except PackageNotFoundError:
        return "unknown"


def environment() -> dict[str, str | None]:
    """Versions of the software that produced a result."""
    import numpy
    import torch

    return {
        "hwlib": hwlib_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def utc_now() -> str:
    """The current time, ISO 8601, UTC, to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
