"""Command line: ``python -m hwlib run NOTEBOOK -p NAME VALUE``, ``book``, ``scorecard``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .errors import HwlibError, ParameterError
from .study.params import parse_value

#: Where a ``NAME=`` starts a new item of ``--set`` (a value may hold spaces: ``[1, 2]``).
_ITEM = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=")


def split_items(text: str) -> list[tuple[str, str]]:
    """``"a=1 b=[1, 2] c='x y'"`` as ``[("a", "1"), ("b", "[1, 2]"), ("c", "'x y'")]``.

    Items are ``NAME=VALUE`` separated by spaces; a value runs until the next `` NAME=``, so
    lists may be written with spaces."""
    text = text.strip()
    if not text:
        return []
    starts = list(_ITEM.finditer(text))
    if not starts or starts[0].start(1) != len(text) - len(text.lstrip()):
        first = text.split()[0]
        raise ParameterError(f"P item {first!r}: must be NAME=VALUE (e.g. "
                             "P=\"sigma_scales=[1, 2] seed=3\")")
    out = []
    for m, nxt in zip(starts, starts[1:] + [None]):
        end = nxt.start() if nxt is not None else len(text)
        out.append((m.group(1), text[m.end():end].strip()))
    return out


def _overrides(pairs: list[list[str]], sets: list[str]) -> dict:
    out = {name: parse_value(value) for name, value in pairs}
    for text in sets:
        for name, value in split_items(text):
            out[name] = parse_value(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwlib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one notebook; the book shows the executed copy")
    run.add_argument("notebook", type=Path)
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"), help="a parameter (Python literal value)")
    run.add_argument("--set", action="append", default=[], metavar='"A=1 B=[1,2]"',
                     help="parameters as NAME=VALUE words (what `make notebook P=...` passes)")
    run.add_argument("--profile", default=None, help="smoke, book (default) or paper")
    book = sub.add_parser("book", help="execute what is not current and build the HTML book")
    book.add_argument("--profile", default="book")
    book.add_argument("--strict", action="store_true", help="Sphinx warnings are errors")
    book.add_argument("--force", action="store_true", help="re-execute every notebook")
    book.add_argument("--started", type=float, default=None, help=argparse.SUPPRESS)
    prep = sub.add_parser("nbval-prepare", help="notebook copies at a profile, for nbval")
    prep.add_argument("outdir", type=Path)
    prep.add_argument("--profile", default="smoke")
    chk = sub.add_parser("refresh-checks",
                         help="store the outputs of a notebook's NBVAL_CHECK_OUTPUT cells")
    chk.add_argument("notebook", type=Path, nargs="+")
    cold = sub.add_parser("cold", help="execute a chapter cold and record its wall time")
    cold.add_argument("chapter")
    cold.add_argument("--profile", default="book")
    sub.add_parser("readme", help="rewrite the README's generated blocks from the store")
    card = sub.add_parser("scorecard", help="print the scorecard")
    card.add_argument("--chapter", default=None)
    args = parser.parse_args(argv)
    try:
        from .study import pipeline

        if args.command == "run":
            overrides = _overrides(args.parameter, args.set)
            profile = args.profile or "book"  # a PROFILE among the overrides wins
            nb = args.notebook
            if nb.is_absolute():
                nb = nb.resolve().relative_to(pipeline.PROJECT_ROOT)
            pipeline.run_notebook(nb, profile, overrides)
        elif args.command == "book":
            pipeline.build_book(args.profile, args.strict, args.force, args.started)
        elif args.command == "nbval-prepare":
            for path in pipeline.nbval_copies(args.outdir, args.profile):
                print(path)
        elif args.command == "refresh-checks":
            for nb in args.notebook:
                n = pipeline.refresh_check_outputs(nb)
                print(f"{nb}: {n} check cell(s) refreshed")
        elif args.command == "cold":
            t = pipeline.cold_run(args.chapter, args.profile)
            print(f"{args.chapter}: {t['total_s']:.1f} s cold ({t['notebooks']})")
        elif args.command == "readme":
            from .study import records

            changed = records.refresh_readme(pipeline.PROJECT_ROOT / "README.md")
            print("README.md " + ("updated" if changed else "already current"))
        elif args.command == "scorecard":
            from .study import scorecard

            print(scorecard.markdown(args.chapter))
    except HwlibError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
