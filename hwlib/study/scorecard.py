"""The scorecard: the papers' quantitative claims, our measurements and the verdicts.

The claims live in ``hwlib/study/scorecard.yml``: paper, figure or table, the paper's value,
the notebook that measures it, and the ``check``: a rule of :mod:`hwlib.study.rules` with its
thresholds. A notebook records *measurements* with :func:`record` (numbers, or
:class:`~hwlib.study.rules.Stat` summaries over instances and seeds), tied to their run: the
profile, the resolved parameters, the namespace (a custom run's own), and the sources, the
stored entries (by checksum) or the code (by fingerprint) the numbers came from. The verdict
is computed from the stored measurement and the yml's rule whenever the scorecard is shown.

A measurement is *stale* when a source entry has changed or is gone, or when the code behind a
source has changed; it is then shown as ``stale (...)``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd
import yaml

from ..errors import ParameterError
from . import rules
from .provenance import code_fingerprint, function_fingerprint, utc_now
from .rules import PENDING, Stat
from .store import Entry, ResultStore, atomic_write, canonical

CLAIMS_FILE = Path(__file__).with_name("scorecard.yml")
CHAPTERS = ("sddhr", "memory_faults", "hasgd", "memristive", "arena", "peers")


@functools.lru_cache(maxsize=1)
def claims() -> tuple[dict[str, Any], ...]:
    """Every claim, in chapter order, as loaded from ``scorecard.yml``."""
    return tuple(yaml.safe_load(CLAIMS_FILE.read_text()))


def claim(claim_id: str) -> dict[str, Any]:
    """One claim by id."""
    for row in claims():
        if row["id"] == claim_id:
            return row
    raise ParameterError(f"unknown scorecard claim {claim_id!r}")


#: The short dataset names in the ids of book-profile claims (``sddhr.table1.fmnist...``).
CLAIM_DATASET = {"mnist": "mnist", "fashion_mnist": "fmnist", "cifar10": "cifar10",
                 "cifar100": "cifar100", "svhn": "svhn"}


def base_id(row: Mapping[str, Any]) -> str:
    """A claim's id without its dataset segment: the name a notebook records it under."""
    tag = CLAIM_DATASET.get(row.get("dataset") or "")
    parts = row["id"].split(".")
    if tag and tag in parts[2:-1]:
        parts.remove(tag)
    return ".".join(parts)


def ids_for(base: str, dataset: str | None) -> list[str]:
    """The claims a reading measures on ``dataset``: every claim whose :func:`base_id` is
    ``base`` and whose dataset is ``dataset`` or none."""
    found = [r for r in claims() if base_id(r) == base]
    if not found:
        raise ParameterError(f"unknown scorecard claim {base!r}")
    return [r["id"] for r in found if r.get("dataset") in (None, dataset)]


def expected(notebook: str, profile: str, datasets: Iterable[str]) -> list[str]:
    """The claims a run of ``notebook`` must record: those it measures whose dataset it runs
    on (or that have none), at their own profile (``smoke`` stands in for ``book``)."""
    at = "book" if profile == "smoke" else profile
    sets = set(datasets)
    return [r["id"] for r in claims() if r["experiment"] == notebook and (
        r.get("dataset") is None or (r["dataset"] in sets and r["profile"] == at))]


def _code_fingerprint(module: str, functions: Iterable[str]) -> str:
    functions = list(functions)
    if not functions:
        return code_fingerprint(module)
    return "+".join(function_fingerprint(module, f) for f in functions)


def rule_argument(claim_id: str, name: str) -> Any:
    """An argument of a claim's rule (the first one found), e.g. a threshold a page quotes."""
    def find(check: Mapping[str, Any]) -> Any:
        if "all" in check:
            for sub in check["all"]:
                found = find(sub)
                if found is not None:
                    return found
            return None
        return check.get(name)

    value = find(claim(claim_id)["check"])
    if value is None:
        raise ParameterError(f"claim {claim_id}: its rule has no argument {name!r}")
    return value


def code(module: str, *functions: str) -> dict[str, Any]:
    """A source for a measurement computed by code alone (a count, an enumeration, a Monte
    Carlo not kept in the store): the module, optionally the functions that computed it, and
    their current code fingerprint."""
    return {"code": module, "functions": list(functions),
            "code_fingerprint": _code_fingerprint(module, functions)}


def _values(measured: Any) -> dict[str, Any]:
    if isinstance(measured, Mapping):
        items = measured.items()
    else:
        items = [("value", measured)]
    out = {}
    for name, v in items:
        if isinstance(v, Stat):
            out[name] = v.as_dict()
        elif isinstance(v, (list, tuple)):
            out[name] = [x.as_dict() if isinstance(x, Stat) else float(x) for x in v]
        else:
            rules.as_value(v)  # refuses bools and non-numbers with one line
            out[name] = None if v is None else float(v)
    return out


def _sources(sources: Iterable[Any], claim_id: str) -> list[dict[str, Any]]:
    out = []
    for s in sources:
        if isinstance(s, Entry):
            out.append(s.source())
        elif isinstance(s, Mapping) and "code" in s:
            out.append(dict(s))
        else:
            raise ParameterError(f"claim {claim_id}: source {s!r} must be a stored Entry or "
                                 "scorecard.code(module)")
    if not out:
        raise ParameterError(f"claim {claim_id}: a measurement needs its sources (the stored "
                             "entries it came from, or scorecard.code(module) for a number "
                             "computed by code)")
    return out


def _path(store: ResultStore, claim_id: str) -> Path:
    return store.base / "scorecard" / f"{claim_id}.json"


def record(store: ResultStore, claim_id: str, measured: Any, sources: Iterable[Any],
           detail: str = "", params: Mapping[str, Any] | None = None,
           notebook: str | None = None) -> str:
    """Store a measurement of a claim and return its verdict under the current rules.

    Args:
        store: the results store of the run (its profile and namespace).
        claim_id: the claim's id in ``scorecard.yml``.
        measured: a number (the claim's ``value``), or the named values its rule reads:
            numbers, :class:`~hwlib.study.rules.Stat` or lists of them. Never a bool: the
            rule in the yml decides.
        sources: the stored entries the measurement was computed from, and/or
            :func:`code` sources; at least one.
        detail: a short text shown beside the value.
        params: the run's resolved parameters.
        notebook: the notebook that measured it.
    """
    row = claim(claim_id)
    values = _values(measured)
    body = {"id": claim_id, "values": values, "detail": detail, "profile": store.profile,
            "namespace": store.namespace, "notebook": notebook,
            "params": canonical(dict(params or {})), "date": utc_now(),
            "sources": _sources(sources, claim_id)}
    body["verdict_when_recorded"] = rules.judge(row["check"], values, row["paper_value"]).verdict
    path = _path(store, claim_id)
    if not _same_but_date(path, body):  # a warm render re-records nothing: no churn in git
        atomic_write(path, json.dumps(body, indent=1, allow_nan=True).encode())
    return body["verdict_when_recorded"]


def _same_but_date(path: Path, body: Mapping[str, Any]) -> bool:
    """Whether ``path`` holds ``body`` already, up to the date it was recorded."""
    try:
        old = path.read_bytes()
        date = json.loads(old).get("date")
    except (OSError, ValueError, AttributeError):
        return False
    return json.dumps({**body, "date": date}, indent=1, allow_nan=True).encode() == old


def _fingerprint(module: str, function: str) -> str | None:
    try:
        return function_fingerprint(module, function)
    except (KeyError, ImportError, ValueError):  # the function or its module is gone
        return None


def stale_reason(store: ResultStore, body: Mapping[str, Any]) -> str:
    """Why a stored measurement no longer matches its sources ("" when it does)."""
    for src in body.get("sources", []):
        if "code" in src:
            try:
                now = _code_fingerprint(src["code"], src.get("functions", []))
            except (KeyError, ImportError, ValueError):
                now = None
            if now != src["code_fingerprint"]:
                return f"the code of {src['code']} changed"
            continue
        if src.get("stale"):
            return f"{src['experiment']}/{src['key']} was stale when measured"
        module, function = src.get("module"), src.get("function")
        if module and function and _fingerprint(module, function) != src.get(
                "code_fingerprint"):
            return f"the code behind {src['experiment']} changed"
        if store.current_checksum(src["experiment"], src["key"]) != src.get("checksum"):
            return f"{src['experiment']}/{src['key']} changed or is gone"
    return ""


def measurement(store: ResultStore, claim_id: str) -> dict[str, Any] | None:
    """The stored measurement of a claim in the store's namespace (then the default one), or
    None."""
    paths = [_path(store, claim_id)]
    if store.namespace:
        paths.append(store.root / store.profile / "scorecard" / f"{claim_id}.json")
    for path in paths:
        if path.exists():
            try:
                body = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            # a measurement of an older hwlib (a bool or number without sources' checksums)
            # is not shown: it must be measured again
            return body if "values" in body and "params" in body else None
    return None


def verdict(row: Mapping[str, Any], body: Mapping[str, Any] | None) -> rules.Outcome:
    """The verdict of a claim on a stored measurement (``pending`` without one)."""
    if body is None:
        return rules.Outcome(PENDING, "")
    return rules.judge(row["check"], body["values"], row["paper_value"])


def table(chapter: str | None = None, root: Path | None = None,
          profiles: tuple[str, ...] = ("paper", "book"),
          store: ResultStore | None = None) -> pd.DataFrame:
    """The scorecard as a table: one row per claim, with the best available measurement.

    A claim is judged against a measurement at its own profile; a measurement at another
    profile is shown but judged ``pending`` (its conditions differ from the paper's). A claim
    at the ``book`` profile with no measurement is ``not measured``.

    Args:
        chapter: keep one chapter's claims (``None``: all).
        root: the results store's top folder (default: the project's ``results/``).
        profiles: the profiles whose measurements are looked up, in order of preference.
        store: a run's own store (a notebook's): its namespace's measurements come first, and
            its profile is looked up too. Default: the default runs of ``profiles``.
    """
    if chapter is not None and chapter not in CHAPTERS:
        raise ParameterError(f"chapter={chapter!r}: must be one of {', '.join(CHAPTERS)}")
    stores = {p: ResultStore(p, root) for p in profiles}
    if store is not None:
        stores[store.profile] = store
    out = []
    for row in claims():
        if chapter is not None and row["chapter"] != chapter:
            continue
        found, at = None, ""
        order = [row["profile"]] + [p for p in stores if p != row["profile"]]
        for p in order:
            if p in stores:
                found = measurement(stores[p], row["id"])
                if found is not None:
                    at = p
                    break
        outcome = verdict(row, found)
        if found is None:
            v = rules.NOT_MEASURED if row["profile"] == "book" else PENDING
            text = ""
        elif at != row["profile"]:
            v, text = f"{PENDING} ({row['profile']} profile)", outcome.text
        else:
            v, text = outcome.verdict, outcome.text
        if found is not None:
            reason = stale_reason(stores[at], found)
            if reason:
                v = f"stale ({v})"
            if found.get("namespace"):
                text = f"[custom run {found['namespace']}] {text}"
        finding = row["paper"] == BOOK
        if finding:  # this book's own statements hold or do not; they reproduce nothing
            v = v.replace(rules.NOT_REPRODUCED, DOES_NOT_HOLD).replace(rules.REPRODUCED, HOLDS)
        out.append({
            "claim": row["id"],
            "kind": "finding" if finding else "paper",
            "where": "this book, finding" if finding else f"{row['paper']}, {row['where']}",
            "statement": row["claim"],
            "paper": _fmt_paper(row),
            "measured": text + (f" ({found['detail']})" if found and found.get("detail")
                                else ""),
            "profile": at,
            "verdict": v,
        })
    return pd.DataFrame(out, columns=["claim", "kind", "where", "statement", "paper",
                                      "measured", "profile", "verdict"])


#: The ``paper`` of this book's own findings (claims about its added methods and comparisons).
BOOK = "book"
#: A finding's verdicts (a paper claim is reproduced or not; a finding holds or not).
HOLDS, DOES_NOT_HOLD = "holds", "does not hold"


def _fmt_paper(row: Mapping[str, Any]) -> str:
    value, unit = row["paper_value"], row.get("unit", "")
    text = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
    return f"{text} {unit}".strip() if unit else text


def counts(df: pd.DataFrame) -> dict[str, int]:
    """Verdict counts of a scorecard table (``stale (x)`` counted as stale)."""
    keys = df["verdict"].map(lambda v: "stale" if v.startswith("stale") else
                             ("pending" if v.startswith("pending") else v))
    return {k: int(n) for k, n in keys.value_counts().items()}


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
    papers, findings = df[df.kind == "paper"], df[df.kind == "finding"]
    parts = []
    if len(papers) or not len(findings):
        parts.append(f"{len(papers)} claims of the papers: " + ", ".join(
            f"{n} {k}" for k, n in counts(papers).items()))
    if len(findings):  # a chapter without a paper (peers) has findings only
        parts.append(f"{len(findings)} findings of this book: " + ", ".join(
            f"{n} {k}" for k, n in counts(findings).items()))
    head = "; ".join(parts)
    return head + ".\n\n" + "\n".join(lines) + "\n"


def check_claims() -> None:
    """Raise one line for the first malformed claim (a bad rule, or a missing field)."""
    for row in claims():
        rules.check_spec(row["check"], f"claim {row['id']}")
