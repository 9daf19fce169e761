"""The book's status page: how and when each notebook was executed, and what it shows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .provenance import utc_now


def notebook_status(nb: Path) -> dict[str, Any]:
    """The execution record of one notebook (from its executed copy's metadata)."""
    from .pipeline import executed_meta

    meta = executed_meta(nb) or {}
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
    }


def markdown(notebooks: list[Path]) -> str:
    """The status page's tables, as Markdown."""
    rows = [notebook_status(nb) for nb in notebooks]
    out = [f"Page generated {utc_now()}.", "",
           "| notebook | profile | parameters | executed (UTC) | wall time | results shown |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        params = ", ".join(f"`{k}={v!r}`" for k, v in r["overrides"].items()) or "defaults"
        wall = f"{r['wall_time_s']:.1f} s" if r["wall_time_s"] is not None else ""
        res = (f"{r['n_entries']} stored ({r['computed']} computed in this run, "
               f"{r['read']} read; {r['stale']} stale)")
        out.append(f"| `{r['notebook']}` | {r['profile']} | {params} | {r['executed']} | "
                   f"{wall} | {res} |")
    out += ["", "## Provenance of the stored results", ""]
    for r in rows:
        out.append(f"**`{r['notebook']}`**: compute time of its results "
                   f"{r['compute_s']:.1f} s; computed on {', '.join(r['dates']) or '—'}; "
                   f"device {', '.join(r['devices']) or '—'}; "
                   f"{'; '.join(r['versions']) or '—'}; "
                   f"experiments and code fingerprints: "
                   f"{', '.join(f'`{f}`' for f in r['fingerprints']) or '—'}.")
        out.append("")
    return "\n".join(out) + "\n"
