"""The scorecard: the papers' quantitative claims, our measurements and the verdicts.

The claims live in ``hwlib/scorecard.yml`` (paper, figure or table, value, tolerance, the
notebook that measures it). A notebook records a measurement with :func:`record`; it is
stored in the results store of the notebook's profile with the provenance of the entries it
was computed from, and is shown stale when any of them is.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from .errors import ParameterError
from .provenance import code_fingerprint, utc_now
from .store import Entry, ResultStore, atomic_write

CLAIMS_FILE = Path(__file__).with_name("scorecard.yml")
CHAPTERS = ("sddhr", "memory_faults", "hasgd", "memristive")
CHECK_KINDS = ("abs", "rel", "max", "min", "true")


@functools.lru_cache(maxsize=1)
def claims() -> tuple[dict[str, Any], ...]:
    """Every claim, in chapter order, as loaded from ``scorecard.yml``."""
    rows = yaml.safe_load(CLAIMS_FILE.read_text())
    return tuple(rows)


def claim(claim_id: str) -> dict[str, Any]:
    """One claim by id."""
    for row in claims():
        if row["id"] == claim_id:
            return row
    raise ParameterError(f"unknown scorecard claim {claim_id!r}")


def verdict(row: dict[str, Any], measured: Any) -> str:
    """``reproduced``, ``not reproduced`` or ``pending`` for a measured value."""
    if measured is None:
        return "pending"
    check = row["check"]
    kind = check["kind"]
    if kind == "true":
        ok = bool(measured)
    else:
        value = float(measured)
        if math.isnan(value):
            return "not reproduced"
        if kind == "abs":
            ok = abs(value - float(row["paper_value"])) <= float(check["tol"])
        elif kind == "rel":
            ok = abs(value - float(row["paper_value"])) <= float(check["tol"]) * abs(
                float(row["paper_value"]))
        elif kind == "max":
            ok = value <= float(check["bound"])
        elif kind == "min":
            ok = value >= float(check["bound"])
        else:
            raise ParameterError(f"claim {row['id']}: check kind {kind!r} not in {CHECK_KINDS}")
    return "reproduced" if ok else "not reproduced"


def _path(store: ResultStore, claim_id: str) -> Path:
    return store.root / store.profile / "scorecard" / f"{claim_id}.json"


def record(store: ResultStore, claim_id: str, measured: Any, sources: Iterable[Entry] = (),
           detail: str = "") -> str:
    """Store a measurement of a claim and return its verdict.

    Args:
        store: the results store of the notebook's profile.
        claim_id: the claim's id in ``scorecard.yml``.
        measured: the measured value (a number, or a bool for ``check: {kind: true}``).
        sources: the stored entries the measurement was computed from.
        detail: a short text shown beside the value (e.g. the numbers behind a bool).
    """
    row = claim(claim_id)
    if isinstance(measured, bool) or measured is None:
        value: Any = measured
    else:
        value = float(measured)
    srcs = [{"experiment": e.provenance["experiment"], "key": e.provenance["key"],
             "module": e.provenance.get("module"),
             "module_fingerprint": e.provenance["code_fingerprint"]} for e in sources]
    body = {"id": claim_id, "measured": value, "detail": detail, "profile": store.profile,
            "date": utc_now(), "sources": srcs, "verdict": verdict(row, value)}
    atomic_write(_path(store, claim_id), json.dumps(body, indent=1).encode())
    return body["verdict"]


def is_stale(body: dict[str, Any]) -> bool:
    """True when the code behind any source of a stored measurement has changed."""
    for src in body.get("sources", []):
        module = src.get("module")
        if module and code_fingerprint(module) != src["module_fingerprint"]:
            return True
    return False


def measurement(store: ResultStore, claim_id: str) -> dict[str, Any] | None:
    """The stored measurement of a claim, or None."""
    path = _path(store, claim_id)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit and unit not in ("", "bool") else text


def table(chapter: str | None = None, root: Path | None = None,
          profiles: tuple[str, ...] = ("paper", "book")) -> pd.DataFrame:
    """The scorecard as a table: one row per claim, with the best available measurement.

    A claim is judged against a measurement at its own profile; a measurement at another
    profile is shown but judged ``pending`` (its conditions differ from the paper's).

    Args:
        chapter: keep one chapter's claims (``None``: all).
        root: the results store's top folder (default: the project's ``results/``).
        profiles: the profiles whose measurements are looked up, in order of preference.
    """
    if chapter is not None and chapter not in CHAPTERS:
        raise ParameterError(f"chapter={chapter!r}: must be one of {', '.join(CHAPTERS)}")
    stores = {p: ResultStore(p, root) for p in profiles}
    out = []
    for row in claims():
        if chapter is not None and row["chapter"] != chapter:
            continue
        found, at = None, ""
        for p in (row["profile"], *[q for q in profiles if q != row["profile"]]):
            if p in stores:
                found = measurement(stores[p], row["id"])
                if found is not None:
                    at = p
                    break
        measured = found["measured"] if found else None
        if found is None:
            v = "pending"
        elif at != row["profile"]:
            v = f"pending ({row['profile']} profile)"
        else:
            v = verdict(row, measured)
        if found is not None and is_stale(found):
            v = f"stale ({v})"
        out.append({
            "claim": row["id"],
            "where": f"{row['paper']}, {row['where']}",
            "statement": row["claim"],
            "paper": _fmt(row["paper_value"], row.get("unit", "")),
            "measured": (_fmt(measured, row.get("unit", "")) + (
                f" ({found['detail']})" if found and found.get("detail") else "")),
            "profile": at,
            "verdict": v,
        })
    return pd.DataFrame(out, columns=["claim", "where", "statement", "paper", "measured",
                                      "profile", "verdict"])


def markdown(chapter: str | None = None, root: Path | None = None) -> str:
    """The scorecard table as Markdown (for the book's generated pages)."""
    df = table(chapter, root)
    if df.empty:
        return "*No claims registered for this chapter yet.*\n"
    cols = ["claim", "where", "paper", "measured", "profile", "verdict"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [str(r[c]).replace("|", "\\|") for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    counts = df["verdict"].str.split(" ").str[0].value_counts()
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    return f"{len(df)} claims: {summary}.\n\n" + "\n".join(lines) + "\n"
