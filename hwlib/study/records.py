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


def save_gpu(record: Mapping[str, Any], root: Path | None = None) -> Path:
    """Store the GPU benchmark's record (``bench/gpu.py --store``), with the software that ran
    it; the chapter pages and the README show it (:func:`gpu_markdown`, :func:`gpu_summary`)."""
    path = (Path(root) if root else default_root()) / "gpu" / "latest.json"
    body = {"date": utc_now(), **environment(), **record}
    atomic_write(path, json.dumps(body, indent=1).encode())
    return path


def gpu_record(root: Path | None = None) -> dict[str, Any] | None:
    """The stored GPU benchmark, or None."""
    path = (Path(root) if root else default_root()) / "gpu" / "latest.json"
    return json.loads(path.read_text()) if path.exists() else None


def gpu_summary(root: Path | None = None) -> str:
    """One sentence: the paper profile's measured GPU hours (for the README and the intro)."""
    r = gpu_record(root)
    if r is None or r.get("quick"):
        return ("The `paper` profile's GPU time has not been measured yet (`python bench/gpu.py "
                "--store` on a machine with CUDA measures it).")
    parts = ", ".join(f"{c['chapter']} {c['hours']:.1f} h" for c in r["chapters"])
    return (f"On one {r['device']} the whole `paper` profile takes an estimated "
            f"**{r['total_hours']:.1f} hours** ({parts}), measured by `bench/gpu.py` on "
            f"{r['date'][:10]} at commit `{r['git_commit']}`.")


def gpu_markdown(chapter: str | None, root: Path | None = None) -> str:
    """A chapter's rows of the stored GPU benchmark, for its page."""
    r = gpu_record(root)
    if r is None or r.get("quick"):
        return ("*The GPU benchmark has not been run on a GPU yet* (`python bench/gpu.py "
                "--store` on a machine with CUDA).\n")
    rows = [c for c in r["chapters"] if chapter is None or c["chapter"] == chapter]
    if not rows:
        return "*The stored GPU benchmark has no rows for this chapter.*\n"
    out = [f"Measured by `bench/gpu.py` on one {r['device']} (torch {r['torch']}) on "
           f"{r['date'][:10]} at commit `{r['git_commit']}`:", "",
           "| step | float32 (ms) | with the levers (ms) | speed-up |", "|---|---|---|---|"]
    for c in rows:
        for name, t in c.get("steps", {}).items():
            out.append(f"| {c['chapter']}: {name} | {1e3 * t['fp32']:.1f} | "
                       f"{1e3 * t['levers']:.1f} | {t['fp32'] / t['levers']:.2f}x |")
    out.append("")
    for c in rows:
        if "chip_ratio" in c:
            a = c["agreement"]
            out.append(f"- {c['chapter']}: a chip evaluation costs **{c['chip_ratio']:.2f}x** a "
                       f"clean pass; {c['sharing']['workers']} runs sharing the GPU go "
                       f"{c['sharing']['speedup']:.2f}x as fast as one; a short run's accuracy "
                       f"with the levers is {a['mean_gap']:.2f} points from float32 (seed "
                       f"spread {a['seed_spread']:.2f}); the `paper` profile: "
                       f"**{c['hours']:.1f} h**.")
        else:
            out.append(f"- {c['chapter']}: {c.get('note', '')}; the `paper` profile: "
                       f"**{c['hours']:.1f} h**.")
    return "\n".join(out) + "\n"


# --- the README's generated blocks ------------------------------------------------------------

#: Per chapter: title, folder, paper, notebooks, and the `book` budget in minutes (the chapter
#: page states the same budget).
CHAPTER_INFO: dict[str, tuple[str, str, str, int]] = {
    "sddhr": ("S-DDHR", "Zhang, Chen & Verma: training once for the distribution of MRAM "
              "in-memory-computing hardware", "conductance moments; column conductance "
              "(Fig. 3); convergence of the regimes (Fig. 4); accuracy against variation and "
              "Table 1 (Fig. 5)", 15),
    "memory_faults": ("memory faults", "Boukli Hacene et al.: bit masking, erasures, the "
                      "erasure regularizer", "energy-deviation model; architectures (Table I, "
                      "Figs. 1-2); BM against erasures (Fig. 3); depth and the blockwise policy "
                      "(Fig. 4); the erasure regularizer (Fig. 5)", 25),
    "hasgd": ("HA-SGD", "Hessian-aware SGD for analog non-volatile-memory compute-in-memory "
              "(poster)", "intuition: flat minima and Hessian traces; noise level (Figs. 5, 7); "
              "mean shift (Fig. 8); ADC quantization (Fig. 9); the number of samples L", 15),
    "memristive": ("stochastic memristive", "Babu & Rajendran: bit-stream training, memristive "
                   "synapses", "bit-stream arithmetic (eq. 3); training with streams (Fig. 3); "
                   "memristive synapses (Figs. 2, 4); noisy inputs (Fig. 5)", 20),
    "arena": ("the arena", "this book's: every training method on every device family",
              "calibrated severities; the heat map of methods x devices; transfer; findings",
              25),
    "peers": ("hwlib and aihwkit", "this book's: the same experiment in hwlib and IBM's "
              "aihwkit", "the noise definitions side by side; hardware-aware training in both; "
              "aihwkit's PCM model with drift; step and 32-chip timings; the same example in "
              "both", 15),
}
README_BLOCKS = ("chapters", "gpu-summary")


def readme_block(name: str, root: Path | None = None) -> str:
    """The generated text of one README block (``chapters`` or ``gpu-summary``)."""
    if name == "gpu-summary":
        return gpu_summary(root)
    if name != "chapters":
        raise ValueError(f"unknown README block {name!r}")
    lines = ["| chapter | paper | notebooks | `book` profile, cold, 2-core CPU |",
             "| --- | --- | --- | --- |"]
    for chapter, (title, paper, notebooks, budget) in CHAPTER_INFO.items():
        t = timing(chapter, root)
        cold = (f"{t['total_s'] / 60:.1f} min measured (budget {budget})" if t
                else f"not measured yet (budget {budget})")
        lines.append(f"| {title} (`notebooks/{chapter}`) | {paper} | {notebooks} | {cold} |")
    return "\n".join(lines)


def refresh_readme(path: Path, root: Path | None = None) -> bool:
    """Rewrite the generated blocks of a README (between ``<!-- hwlib:NAME -->`` and
    ``<!-- /hwlib:NAME -->``) from the store; returns whether anything changed."""
    text = path.read_text()
    out = text
    for name in README_BLOCKS:
        start, end = f"<!-- hwlib:{name} -->", f"<!-- /hwlib:{name} -->"
        if start in out and end in out:
            head, rest = out.split(start, 1)
            _, tail = rest.split(end, 1)
            out = f"{head}{start}\n{readme_block(name, root)}\n{end}{tail}"
    if out != text:
        path.write_text(out)
    return out != text
