"""The notebook pipeline: execute notebooks with papermill, stage and build the book.

Executed copies land in ``_build/jb/notebooks/...``, the folder the book is built from.
``make book`` executes a notebook only when its executed copy is missing, was run at another
profile, or is older than the notebook's source or the hwlib code; a copy made by
``make notebook`` (or ``python -m hwlib run``) with custom parameters is therefore kept and
shown by the next ``make book``, under a banner that names its overrides (its results live in
their own namespace of the store, never replacing the book's). Long computations inside a
notebook go through the results store, so re-executing a notebook whose results are stored and
fresh takes seconds.

Before the kernel starts, :func:`validate` checks everything that can be checked without
computing: the profile, every parameter and the relations between them, ``HWLIB_WORKERS``,
and that the datasets the notebook reads are on disk (or can be downloaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import HwlibError, ParameterError
from .params import check_param, check_profile, resolve
from .provenance import PACKAGE_DIR, PROJECT_ROOT, utc_now

#: The folder holding ``_build``: ``$HWLIB_BUILD_ROOT``, default the project root. Tests
#: build elsewhere so as not to replace a developer's executed notebooks.
BUILD_ROOT = Path(os.environ.get("HWLIB_BUILD_ROOT", PROJECT_ROOT))
BUILD = BUILD_ROOT / "_build"
STAGE = BUILD / "jb"
SCORECARD_MARK = "<!-- hwlib:scorecard"
STATUS_MARK = "<!-- hwlib:status -->"
TIMING_MARK = "<!-- hwlib:timing"
BENCH_MARK = "<!-- hwlib:bench"
GPU_MARK = "<!-- hwlib:gpu"
GPU_SUMMARY_MARK = "<!-- hwlib:gpu-summary -->"


def toc_files(root: Path = PROJECT_ROOT) -> list[str]:
    """Every file named in ``_toc.yml`` (without suffix), in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    out: list[str] = [toc["root"]]

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            if "file" in item:
                out.append(item["file"])
            for key in ("chapters", "sections"):
                walk(item.get(key, []))

    walk(toc.get("parts", []) + toc.get("chapters", []))
    return out


def toc_notebooks(root: Path = PROJECT_ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, as paths relative to the project root."""
    return [Path(f + ".ipynb") for f in toc_files(root)
            if (root / (f + ".ipynb")).exists()]


def validate(nb: Path, profile: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Fail before any compute on an unknown profile, parameter name or bad value, a bad
    relation between parameters, a bad ``HWLIB_WORKERS`` or a dataset that cannot be had.

    Returns:
        The notebook's parameters as they will resolve (profile defaults filled in).
    """
    from ..data import ensure_available
    from .session import chapter_of, notebook_defaults
    from .sweep import default_backend, default_workers

    check_profile(profile)
    if not (PROJECT_ROOT / nb).exists():
        raise ParameterError(f"notebook {str(nb)!r} not found; allowed: "
                             + ", ".join(str(n) for n in toc_notebooks()))
    defaults = notebook_defaults(nb)
    if "PROFILE" not in defaults:
        raise HwlibError(f"{nb}: its parameters cell has no PROFILE")
    names = set(defaults)
    for name, value in overrides.items():
        check_param(name, value, names, chapter_of(nb))
    knobs = {k: v for k, v in {**defaults, **overrides}.items() if k != "PROFILE"}
    params = resolve(profile, chapter_of(nb), **knobs)
    default_workers()
    default_backend()
    for ds in [*(params.get("datasets") or []), *([params["dataset"]] if params.get("dataset")
                                                  else [])]:
        ensure_available(ds)
    return params


def notebook_parameters(nb: Path) -> dict[str, Any]:
    """The names and default values of the notebook's ``parameters`` cell."""
    from .session import notebook_defaults

    info = notebook_defaults(nb)
    if "PROFILE" not in info:
        raise HwlibError(f"{nb}: its parameters cell has no PROFILE")
    return info


def package_fingerprint() -> str:
    """Hash of all hwlib sources and data files: a notebook's output depends on any of them."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.suffix in (".py", ".yml") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def executed_path(nb: Path) -> Path:
    """Where the executed copy of a notebook lands (the book is built from there)."""
    return STAGE / nb


def executed_meta(nb: Path) -> dict[str, Any] | None:
    """The hwlib metadata of a notebook's executed copy, or None."""
    path = executed_path(nb)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["metadata"].get("hwlib")
    except (OSError, ValueError, KeyError):
        return None


def needs_run(nb: Path, profile: str) -> str | None:
    """Why the notebook must be (re-)executed for ``profile``, or None when it is current."""
    meta = executed_meta(nb)
    if meta is None:
        return "not executed yet"
    if meta.get("profile") != profile:
        return f"executed at profile {meta.get('profile')!r}"
    if meta.get("source_sha") != _sha(PROJECT_ROOT / nb):
        return "notebook changed"
    if meta.get("hwlib_fingerprint") != package_fingerprint():
        return "hwlib changed"
    if meta.get("stale") and os.environ.get("HWLIB_ALLOW_STALE", "") in ("", "0"):
        return "it shows stale results"
    return None


RUN_DIR = BUILD / ".run"
"""Where a running notebook's manifest of store reads and writes is kept."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_manifests() -> None:
    """Remove the manifests of runs whose process is gone (killed before cleaning up)."""
    for path in RUN_DIR.glob("manifest-*.jsonl") if RUN_DIR.exists() else []:
        try:
            pid = int(path.stem.split("-")[1])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            path.unlink(missing_ok=True)


#: A glued value in a page's text: ``{glue:text}`name:fmt``` and the like.
GLUE_ROLE = re.compile(r"(\{glue(?::[a-z]+)?\}`[^`]+`)")
STALE_MARK = " *(stale)*"


def _banner(meta: Mapping[str, Any]) -> str | None:
    """The admonition shown at the top of a page from a custom run or with stale results."""
    parts = []
    if meta.get("overrides"):
        params = ", ".join(f"`{k}={v!r}`" for k, v in meta["overrides"].items())
        parts.append(f"This page shows a **custom run** at the `{meta['profile']}` profile, "
                     f"with {params}, not the book's defaults. Its results and verdicts are "
                     f"kept apart (`results/{meta['profile']}/{meta['namespace']}/`) and do not "
                     "change the book's scorecard.")
    if meta.get("stale"):
        parts.append(f"**Stale results**: {meta['stale']} of the stored results on this page "
                     "were computed by code that has since changed, or from entries that have "
                     "(`HWLIB_ALLOW_STALE=1`). Every table, figure and number below may be "
                     "out of date; glued numbers are marked *(stale)*.")
    if not parts:
        return None
    kind = "warning" if meta.get("stale") else "note"
    return f":::{{{kind}}}\n" + "\n\n".join(parts) + "\n:::"


def annotate(doc: dict[str, Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Make an executed notebook's page say how it was run.

    * papermill's injected-parameters cell is removed from the page (``remove-cell``);
    * a custom run or stale results get a banner under the title;
    * with stale results, every glued value in the text is marked *(stale)*.
    """
    for cell in doc["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if meta.get("stale") and cell["cell_type"] == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell[
                "source"]
            cell["source"] = GLUE_ROLE.sub(lambda m: m.group(1) + STALE_MARK, text)
    banner = _banner(meta)
    if banner:
        cell = {"cell_type": "markdown", "id": "hwlib-run-banner",
                "metadata": {"tags": ["hwlib-banner"]}, "source": banner}
        doc["cells"].insert(1, cell)
    return doc


def _profile_and_overrides(profile: str, overrides: Mapping[str, Any]
                           ) -> tuple[str, dict[str, Any]]:
    """The profile a run uses: ``PROFILE`` among the overrides wins over ``profile`` (so
    ``make notebook P="PROFILE=smoke"`` runs, and is labelled, at smoke)."""
    overrides = dict(overrides)
    return overrides.pop("PROFILE", profile), overrides


def run_notebook(nb: Path, profile: str = "book", overrides: Mapping[str, Any] | None = None,
                 quiet: bool = False) -> Path:
    """Execute one notebook with papermill and store the executed copy for the book.

    Args:
        nb: the notebook, relative to the project root.
        profile: ``smoke``, ``book`` or ``paper`` (a ``PROFILE`` among ``overrides`` wins).
        overrides: parameter values injected by papermill.
        quiet: print nothing.

    Returns:
        The executed copy's path.
    """
    import papermill

    from .session import overrides_of

    profile, overrides = _profile_and_overrides(profile, overrides or {})
    validate(nb, profile, overrides)
    effective = overrides_of(nb, overrides)
    out = executed_path(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    _clean_manifests()
    manifest = RUN_DIR / f"manifest-{os.getpid()}-{time.time_ns()}.jsonl"
    tmp = out.with_name(f".tmp-{out.name}")
    env_before = os.environ.get("HWLIB_MANIFEST")
    os.environ["HWLIB_MANIFEST"] = str(manifest)
    start = time.perf_counter()
    if not quiet:
        print(f"executing {nb} (profile {profile}"
              + "".join(f", {k}={v!r}" for k, v in overrides.items()) + ")", flush=True)
    try:
        papermill.execute_notebook(
            str(PROJECT_ROOT / nb), str(tmp), parameters={"PROFILE": profile, **overrides},
            cwd=str(PROJECT_ROOT), progress_bar=False, kernel_name="python3")
        records = [json.loads(line) for line in manifest.read_text().splitlines() if line] \
            if manifest.exists() else []
    except papermill.PapermillExecutionError as err:
        raise HwlibError(f"{nb} failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
                         f"(executed copy: {tmp})") from None
    finally:
        manifest.unlink(missing_ok=True)
        if env_before is None:
            os.environ.pop("HWLIB_MANIFEST", None)
        else:
            os.environ["HWLIB_MANIFEST"] = env_before
    wall = time.perf_counter() - start
    sessions = [r for r in records if r.get("action") == "session"]
    entries = [r for r in records if r.get("action") != "session"]
    ran = sessions[-1] if sessions else {"profile": profile, "namespace": "",
                                         "overrides": effective}
    if ran["profile"] != profile:
        raise HwlibError(f"{nb} ran at profile {ran['profile']!r}, asked for {profile!r}")
    latest = {str(e.get("path")): e for e in entries}
    doc = json.loads(tmp.read_text())
    meta = {
        "profile": ran["profile"],
        "namespace": ran.get("namespace", ""),
        "overrides": ran.get("overrides", effective),
        "source_sha": _sha(PROJECT_ROOT / nb),
        "hwlib_fingerprint": package_fingerprint(),
        "executed": utc_now(),
        "wall_time_s": round(wall, 2),
        "stale": sum(bool(e.get("stale")) for e in latest.values()),
        "entries": entries,
    }
    doc["metadata"]["hwlib"] = meta
    annotate(doc, meta)
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out)
    if not quiet:
        print(f"  done in {wall:.1f} s -> {out}", flush=True)
    return out


def _mathjax_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise HwlibError("MathJax not found: pip install django-static-mathjax")
    base = Path(list(spec.submodule_search_locations)[0])
    return base / "static" / "mathjax" / "es5" / "tex-svg-full.js"


def _marker_chapter(stripped: str) -> str | None:
    words = stripped.removeprefix("<!--").removesuffix("-->").split()
    return next((w.split("=", 1)[1] for w in words if w.startswith("chapter=")), None)


def _fill_markers(page: Path, root: Path | None) -> None:
    """Replace the markers of a book page by what the store holds: the scorecard, the status
    page, a chapter's measured cold time (:func:`cold_run`) and its benchmark table
    (``make bench``)."""
    from . import records, scorecard, status

    lines = []
    for line in page.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith(SCORECARD_MARK):
            lines.append(scorecard.markdown(_marker_chapter(stripped), root))
        elif stripped == STATUS_MARK:
            lines.append(status.markdown([(nb, executed_meta(nb)) for nb in toc_notebooks()]))
        elif stripped.startswith(TIMING_MARK):
            lines.append(records.timing_markdown(_marker_chapter(stripped), root))
        elif stripped.startswith(BENCH_MARK):
            lines.append(records.bench_markdown(_marker_chapter(stripped), root))
        elif stripped == GPU_SUMMARY_MARK:
            lines.append(records.gpu_summary(root))
        elif stripped.startswith(GPU_MARK):
            lines.append(records.gpu_markdown(_marker_chapter(stripped), root))
        else:
            lines.append(line)
    page.write_text("\n".join(lines) + "\n")


def chapter_notebooks(chapter: str) -> list[Path]:
    """A chapter's notebooks in reading order (``_toc.yml``)."""
    return [nb for nb in toc_notebooks() if nb.parts[:2] == ("notebooks", chapter)]


def cold_run(chapter: str, profile: str = "book", quiet: bool = False) -> dict[str, Any]:
    """Execute a chapter's notebooks in order with none of its results stored, and record the
    wall times (``results/<profile>/timings/<chapter>.json``, shown on the chapter's page).

    The chapter's stored results are moved aside first and put back if the run fails, so that
    nothing is lost; on success the new results replace them.
    """
    from . import records
    from .store import default_root

    check_profile(profile)
    notebooks = chapter_notebooks(chapter)
    if not notebooks:
        raise ParameterError(f"chapter={chapter!r}: no notebooks in _toc.yml")
    base = default_root() / profile
    aside = base / f".cold-{chapter}-{time.time_ns()}"
    moved = records.move_chapter_results(base, chapter, aside)
    walls: dict[str, float] = {}
    try:
        start = time.perf_counter()
        for nb in notebooks:
            t0 = time.perf_counter()
            run_notebook(nb, profile, {}, quiet=quiet)
            walls[str(nb)] = round(time.perf_counter() - t0, 1)
        total = time.perf_counter() - start
    except BaseException:
        records.move_chapter_results(aside, chapter, base, replace=True)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    body = records.save_timing(base, chapter, walls, total, moved)
    if profile == "book" and not os.environ.get("HWLIB_RESULTS"):
        records.refresh_readme(PROJECT_ROOT / "README.md")
    return body


def stage(results_root: Path | None = None) -> Path:
    """Assemble the book's sources in ``_build/jb``: pages, config, MathJax, executed notebooks."""
    STAGE.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(PROJECT_ROOT / name, STAGE / name)
    shutil.rmtree(STAGE / "book", ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "book", STAGE / "book")
    static = STAGE / "_mathjax" / "mathjax"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_mathjax_file(), static / "tex-svg-full.js")
    listed = {STAGE / nb for nb in toc_notebooks()}
    for path in (STAGE / "notebooks").rglob("*.ipynb") if (STAGE / "notebooks").exists() else []:
        if path not in listed:
            path.unlink()  # no longer in the table of contents
    for page in (STAGE / "book").rglob("*.md"):
        _fill_markers(page, results_root)
    return STAGE


def build_book(profile: str = "book", strict: bool = False, force: bool = False,
               started: float | None = None) -> Path:
    """Execute what is not current, then build the HTML book into ``_build/html``.

    Args:
        profile: the profile the notebooks run at.
        strict: treat Sphinx warnings as errors (``-W``).
        force: re-execute every notebook.
        started: a Unix time to count the wall time from (default: now).

    Returns:
        The path of ``index.html``.
    """
    check_profile(profile)
    t0 = started if started is not None else time.time()
    for nb in toc_notebooks():
        reason = "forced" if force else needs_run(nb, profile)
        if reason is None:
            print(f"current: {nb} (profile {profile})", flush=True)
            continue
        print(f"{reason}: {nb}", flush=True)
        run_notebook(nb, profile)
    stage()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(STAGE), "--path-output",
           str(BUILD_ROOT), "--keep-going"]
    if strict:
        cmd.append("-W")
    if subprocess.run(cmd, cwd=PROJECT_ROOT).returncode != 0:
        raise HwlibError("jupyter-book build failed (see the messages above)")
    index = BUILD / "html" / "index.html"
    print(f"book: {index}")
    print(f"wall time: {time.time() - t0:.1f} s")
    return index


def nbval_copies(outdir: Path, profile: str = "smoke") -> list[Path]:
    """Copies of every notebook with ``PROFILE`` injected after its parameters cell.

    nbval runs these; the stored outputs of ``# NBVAL_CHECK_OUTPUT`` cells are kept.
    """
    import nbformat

    check_profile(profile)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for nb in toc_notebooks():
        doc = nbformat.read(PROJECT_ROOT / nb, as_version=4)
        at = next(i for i, c in enumerate(doc.cells)
                  if "parameters" in c.get("metadata", {}).get("tags", []))
        cell = nbformat.v4.new_code_cell(f"# Parameters injected for nbval\nPROFILE = {profile!r}")
        cell.metadata["tags"] = ["injected-parameters"]
        doc.cells.insert(at + 1, cell)
        target = outdir / nb.relative_to("notebooks")
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(doc, target)
        written.append(target)
    return written


def refresh_check_outputs(nb: Path, profile: str = "smoke") -> int:
    """Execute a notebook and store the outputs of its ``# NBVAL_CHECK_OUTPUT`` cells in it.

    All other outputs are cleared, so the source notebook keeps only what nbval compares.
    For chapter authors, after changing what a check cell prints.

    Returns:
        The number of check cells refreshed.
    """
    import nbformat
    import papermill

    check_profile(profile)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / nb.name
        papermill.execute_notebook(str(PROJECT_ROOT / nb), str(out),
                                   parameters={"PROFILE": profile}, cwd=str(PROJECT_ROOT),
                                   progress_bar=False, kernel_name="python3")
        done = nbformat.read(out, as_version=4)
    ran = [c for c in done.cells
           if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    doc = nbformat.read(PROJECT_ROOT / nb, as_version=4)
    n = 0
    for src, res in zip(doc.cells, ran):
        if src.cell_type != "code":
            continue
        if src.source.startswith("# NBVAL_CHECK_OUTPUT"):
            src.outputs = res.outputs
            src.execution_count = res.execution_count  # nbval ignores unrun cells' outputs
            n += 1
        else:
            src.outputs = []
            src.execution_count = None
    nbformat.write(doc, PROJECT_ROOT / nb)
    return n
