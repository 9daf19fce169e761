"""Run every chapter's benchmark and print one table of ratios (``make bench``).

Each ratio is measured in one run against its baseline (interleaved, best of several), with
one torch thread, so that machine noise affects both sides alike.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pkgutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # one table, no progress bars (read at tqdm import)

import bench  # noqa: E402


def modules() -> list[str]:
    """The benchmark modules, ``bench.bench_<chapter>``."""
    return sorted(f"bench.{m.name}" for m in pkgutil.iter_modules(bench.__path__)
                  if m.name.startswith("bench_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--store", action="store_true",
                        help="store the table in the results store (the book's pages show it)")
    args = parser.parse_args(argv)
    rows = []
    for name in modules():
        rows += importlib.import_module(name).run(quick=args.quick)
    wn = max([len("benchmark")] + [len(r.name) for r in rows]) + 2
    wb = max([len("baseline")] + [len(r.baseline) for r in rows]) + 2
    head = f"{'chapter':<14}{'benchmark':<{wn}}{'baseline':<{wb}}{'ratio':>8}{'target':>9}  ok"
    print(head)
    print("-" * len(head))
    for r in rows:
        target = f"{r.target:>8.2f}x" if math.isfinite(r.target) else f"{'none':>9}"
        print(f"{r.chapter:<14}{r.name:<{wn}}{r.baseline:<{wb}}{r.ratio:>7.2f}x"
              f"{target}  {'yes' if r.ok else 'NO'}")
    if args.store:
        from hwlib.study.records import save_bench

        print(f"stored: {save_bench(rows)}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
