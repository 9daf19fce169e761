"""Measurements of the study itself, kept in the store and shown on the book's pages: each
chapter's cold execution time (:func:`save_timing`) and the benchmark table (``make bench``).
No page types these numbers in; the pipeline renders them from here."""

from __future__ import annotations

import json
import math
import platform
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from .provenance import environment, utc_now
from .store import atomic_write, default_root


def _chapter_paths(base: Path, chapter: str) -> list[Path]:
    """A chapter's entry folders and scorecard measurements under a store's profile folder."""
    out = [p for p in base.glob(f"{chapter}.*") if p.is_dir()]
    out += list((base / "scorecard").glob(f"{chapter}.*.json")) if (
        base / "scorecard").exists() else []
    return out


def move_chapter_results(src: Path, chapter: str, dst: Path, replace: bool = False) -> int:
    """Move a chapter's stored results from ``src`` to ``dst`` (same layout); with
    ``replace``, over what ``dst`` holds. Returns how many folders and files moved."""
    moved = 0
    for path in _chapter_paths(src, chapter):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and replace:
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(path), str(target))
        moved += 1
    return moved


def save_timing(base: Path, chapter: str, walls: Mapping[str, float], total: float,
                moved: int) -> dict[str, Any]:
    """Store a chapter's cold run: each notebook's wall time and the total, seconds."""
    import os

    body = {"chapter": chapter, "profile": base.name, "notebooks": dict(walls),
            "total_s": round(total, 1), "date": utc_now(), "results_moved_aside": moved,
            "workers": os.environ.get("HWLIB_WORKERS") or os.cpu_count(),
            "machine": platform.platform(), **environment()}
    atomic_write(base / "timings" / f"{chapter}.json", json.dumps(body, indent=1).encode())
    return body


def timing(chapter: str, root: Path | None = None, profile: str = "book"
           ) -> dict[str, Any] | None:
    """The recorded cold run of a chapter, or None."""
    path = (Path(root) if root else default_root()) / profile / "timings" / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None


def timing_markdown(chapter: str | None, root: Path | None = None) -> str:
    """A chapter's measured cold time, as a sentence for its page."""
    t = timing(chapter or "", root)
    if t is None:
        return ("*No cold run of this chapter is recorded yet* (`python -m hwlib cold "
                f"{chapter}` measures one).\n")
    parts = ", ".join(f"notebook {i + 1}: {w:.0f} s" for i, w in enumerate(t["notebooks"].values()))
    return (f"Measured: **{t['total_s']:.0f} s** ({t['total_s'] / 60:.1f} minutes) for the "
            f"{len(t['notebooks'])} notebooks in order at the `{t['profile']}` profile, cold "
            f"(the chapter's results moved aside first), on {t['date'][:10]} at commit "
            f"`{t['git_commit']}` with {t['workers']} workers ({parts}).\n")


def save_bench(rows: Sequence[Any], root: Path | None = None) -> Path:
    """Store a benchmark table (``make bench``) with the machine and software it ran on."""
    path = (Path(root) if root else default_root()) / "bench" / "latest.json"
    body = {"date": utc_now(), "machine": platform.platform(), **environment(),
            "rows": [{"chapter": r.chapter, "name": r.name, "baseline": r.baseline,
                      "baseline_s": r.baseline_s, "candidate_s": r.candidate_s,
                      "ratio": r.ratio, "target": r.target} for r in rows]}
    atomic_write(path, json.dumps(body, indent=1).encode())
    return path


def bench_markdown(chapter: str | None, root: Path | None = None) -> str:
    """A chapter's rows of the stored benchmark table, for its page."""
    path = (Path(root) if root else default_root()) / "bench" / "latest.json"
    if not path.exists():
        return "*No benchmark run is stored yet* (`make bench` stores one).\n"
    body = json.loads(path.read_text())
    rows = [r for r in body["rows"] if chapter is None or r["chapter"] == chapter]
    if not rows:
        return "*The stored benchmark run has no rows for this chapter.*\n"
    out = [f"Measured by `make bench` on {body['date'][:10]} at commit "
           f"`{body['git_commit']}` (one torch thread, ratios measured in one run):", "",
           "| benchmark | baseline | ratio | target |", "|---|---|---|---|"]
    for r in rows:
        ok = "" if r["ratio"] <= r["target"] else " (over)"
        target = f"{r['target']:.2f}x" if math.isfinite(r["target"]) else "none"
        out.append(f"| {r['name']} | {r['baseline']} | {r['ratio']:.2f}x{ok} | {target} |")
    return "\n".join(out) + "\n"
