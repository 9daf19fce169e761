"""The book's status page: how and when each notebook was executed, and what it shows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .provenance import utc_now


def notebook_status(nb: Path, meta: dict[str, Any] | None) -> dict[str, Any]:
    """The execution record of one notebook, from its executed copy's metadata (None: not
    executed)."""
    meta = meta or {}
    entries = meta.get("entries", [])
    latest: dict[str, dict[str, Any]] = {}
    for e in entries:  # the last record of each entry (a read may follow a compute)
        latest[str(e.get("path"))] = e
    actions = Counter(e["action"] for e in entries)
    uniq = list(latest.values())
    return {
        "notebook": str(nb),
        "profile": meta.get("profile", "not executed"),
        "overrides": meta.get("overrides", {}),
        "namespace": meta.get("namespace", ""),
        "executed": meta.get("executed", ""),
        "wall_time_s": meta.get("wall_time_s"),
        "n_entries": len(uniq),
        "computed": actions.get("computed", 0),
        "read": actions.get("read", 0),
        "stale": sum(bool(e.get("stale")) for e in uniq),
        "compute_s": sum(float(e.get("wall_time_s") or 0) for e in uniq),
        "fingerprints": sorted({f"{e.get('experiment')}@{e.get('code_fingerprint')}"
                                for e in uniq}),
        "dates": sorted({str(e.get("date", ""))[:10] for e in uniq}),
        "versions": sorted({f"hwlib {e.get('hwlib')}, torch {e.get('torch')}, "
                            f"commit {e.get('git_commit')}" for e in uniq}),
        "devices": sorted({str(e.get("device")) for e in uniq}),
        "threads": sorted({str(e.get("threads")) for e in uniq if e.get("threads")}),
    }


def _run(r: dict[str, Any]) -> str:
    if not r["overrides"]:
        return "defaults"
    params = ", ".join(f"`{k}={v!r}`" for k, v in r["overrides"].items())
    return f"**custom run**: {params}"


def markdown(executed: list[tuple[Path, dict[str, Any] | None]]) -> str:
    """The status page from each notebook and its executed copy's metadata: a compact table
    (one short row per notebook) and, per notebook, the provenance of its results in a
    collapsed block."""
    rows = [notebook_status(nb, meta) for nb, meta in executed]
    out = [f"Page generated {utc_now()}.", "",
           "| notebook | profile | run | wall time | results: computed / read / stale |",
           "|---|---|---|---|---|"]
    for r in rows:
        wall = f"{r['wall_time_s']:.0f} s" if r["wall_time_s"] is not None else ""
        name = Path(r["notebook"]).with_suffix("").as_posix().removeprefix("notebooks/")
        stale = f"**{r['stale']}**" if r["stale"] else "0"
        out.append(f"| `{name}` | {r['profile']} | {_run(r)} | {wall} | "
                   f"{r['computed']} / {r['read']} / {stale} |")
    out += ["", "## Provenance of the stored results", ""]
    for r in rows:
        fps = "\n".join(f"- `{f}`" for f in r["fingerprints"]) or "- none"
        out += [f":::{{dropdown}} `{r['notebook']}`",
                f"- executed: {r['executed'] or '—'} at the `{r['profile']}` profile "
                f"({_run(r)}"
                + (f", store namespace `{r['namespace']}`" if r["namespace"] else "") + ")",
                f"- results shown: {r['n_entries']} stored entries ({r['computed']} computed "
                f"in this run, {r['read']} read back; {r['stale']} stale); their compute "
                f"time {r['compute_s']:.1f} s",
                f"- computed on: {', '.join(r['dates']) or '—'}; torch device "
                f"{', '.join(r['devices']) or '—'}; torch threads "
                f"{', '.join(r['threads']) or '—'}",
                f"- software: {'; '.join(r['versions']) or '—'}",
                "- experiments and code fingerprints:", fps, ":::", ""]
    return "\n".join(out) + "\n"
