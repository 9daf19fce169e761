"""The verdict rules: how a measurement is judged against a claim, defined once.

A notebook records *measurements* (numbers, or :class:`Stat` summaries of samples over
hardware instances or training seeds); a claim's ``check`` in ``scorecard.yml`` names a rule
and its thresholds; :func:`judge` applies it. No notebook compares a measurement with a
threshold, so editing a tolerance in the yml changes the verdict at the next render without
recomputing any experiment.

Rules on plain numbers compare one measured value with the paper's value or a bound:

* ``abs``: ``|x - target| <= tol``; ``rel``: ``|x - target| <= tol |target|``;
* ``at_most``: ``x <= bound``; ``at_least``: ``x >= bound``; ``between``: ``lo <= x <= hi``;
* ``equals``: ``x == target`` (an exact count).

Rules on statistics compare means over what was measured, with the standard error of their
difference, ``SE = sqrt(SE_a^2 + SE_b^2)`` (``SE = s / sqrt(n)``, ``s`` the sample standard
deviation over the ``n`` instances or seeds), and a stated number ``z`` of standard errors:

* ``within(a, b, points, z)``: the means agree within ``points``, with margin:
  ``|a - b| + z SE <= points``;
* ``below_by(a, b, points, z)``: ``a`` is at least ``points`` below ``b``:
  ``(b - a) - z SE >= points``;
* ``greater(a, b, z, margin)``: ``a`` exceeds ``b`` by more than ``margin`` and ``z`` standard
  errors: ``a - b - margin > z SE``;
* ``not_greater(a, b, z)``: ``a`` does not exceed ``b`` by more than ``z`` standard errors;
* ``ordered(values, z, direction, strict)``: a chain; each next value is ``greater`` than the
  previous (``strict``), or never significantly smaller (not strict).

``all`` combines checks: every one must hold. A value that is missing or NaN is never
"reproduced": the verdict is ``not measured``, with the name of the value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ParameterError

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURED = "not measured"
PENDING = "pending"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_MEASURED, PENDING)


@dataclass(frozen=True)
class Stat:
    """The mean of ``n`` samples and its standard error.

    Attributes:
        mean: the sample mean.
        se: the standard error of the mean, ``s / sqrt(n)`` (NaN for one sample).
        n: the number of samples (instances, chips, seeds or runs).
    """

    mean: float
    se: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float] | np.ndarray) -> "Stat":
        """Mean and standard error of ``samples`` (NaN standard error for a single one)."""
        x = np.asarray(samples, dtype=float).ravel()
        if x.size == 0:
            return cls(math.nan, math.nan, 0)
        se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
        return cls(float(x.mean()), se, int(x.size))

    def as_dict(self) -> dict[str, float]:
        """A JSON-able dict (what the store keeps)."""
        return {"mean": self.mean, "se": self.se, "n": self.n}

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.se:.2g} (n {self.n})"


def as_value(raw: Any) -> float | Stat | list | None:
    """A stored measurement value back as a number, a :class:`Stat` or a list."""
    if raw is None:
        return None
    if isinstance(raw, Stat):
        return raw
    if isinstance(raw, Mapping) and {"mean", "se", "n"} <= set(raw):
        return Stat(float(raw["mean"]), float(raw["se"]), int(raw["n"]))
    if isinstance(raw, (list, tuple)):
        return [as_value(v) for v in raw]
    if isinstance(raw, (bool, np.bool_)):
        raise ParameterError(f"measured value {raw!r}: record a number or a Stat, not a bool "
                             "(the rule in scorecard.yml decides)")
    return float(raw)


class Missing(Exception):
    """A value the rule needs is missing or NaN (the verdict is 'not measured')."""


@dataclass(frozen=True)
class Outcome:
    """What a rule concluded and why.

    Attributes:
        verdict: ``reproduced``, ``not reproduced`` or ``not measured``.
        text: the numbers and the comparison, for the scorecard's "measured" column.
    """

    verdict: str
    text: str

    @property
    def ok(self) -> bool:
        """True when reproduced."""
        return self.verdict == REPRODUCED


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


_INDEX = re.compile(r"^(.+)\[(-?\d+)\]$")


def _lookup(values: Mapping[str, Any], name: Any) -> Any:
    """A measured value by name; ``name[i]`` is element ``i`` of a recorded list; a number is
    itself (an exact constant)."""
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        return float(name)
    m = _INDEX.match(name)
    key, index = (m.group(1), int(m.group(2))) if m else (name, None)
    if key not in values:
        raise Missing(f"{key} not recorded")
    v = values[key]
    if index is not None:
        if not isinstance(v, list) or not -len(v) <= index < len(v):
            raise Missing(f"{name}: no such element")
        v = v[index]
    return v


def _number(values: Mapping[str, Any], name: Any) -> float:
    """A plain number: a literal, or the mean of the named measured value."""
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        return float(name)
    v = _lookup(values, name)
    x = v.mean if isinstance(v, Stat) else v
    if x is None or not isinstance(x, (int, float)) or math.isnan(float(x)):
        raise Missing(f"{name} is NaN")
    return float(x)


def _as_stat(v: Any, name: str) -> Stat:
    if isinstance(v, Stat):
        if math.isnan(v.mean):
            raise Missing(f"{name} is NaN")
        return v
    if v is None or not isinstance(v, (int, float)) or math.isnan(float(v)):
        raise Missing(f"{name} is NaN")
    return Stat(float(v), 0.0, 1)


def _stat(values: Mapping[str, Any], name: str) -> Stat:
    """A named statistic; a plain number counts as exact (standard error 0, n 1)."""
    v = _lookup(values, name)
    if isinstance(v, list):
        raise Missing(f"{name} is a list where one value is needed")
    return _as_stat(v, name)


def _stats(values: Mapping[str, Any], name: str) -> list[Stat]:
    """A named list of statistics (a single value counts as a list of one)."""
    v = _lookup(values, name)
    items = v if isinstance(v, list) else [v]
    if not items:
        raise Missing(f"{name} is empty")
    return [_as_stat(x, f"{name}[{i}]") for i, x in enumerate(items)]


def _pairs(values: Mapping[str, Any], a: str, b: str) -> list[tuple[Stat, Stat]]:
    """Element by element: ``a`` and ``b`` are both single values, or lists of one length (a
    single value is compared with every element of a list)."""
    sa, sb = _stats(values, a), _stats(values, b)
    if len(sa) == 1 and len(sb) > 1:
        sa = sa * len(sb)
    if len(sb) == 1 and len(sa) > 1:
        sb = sb * len(sa)
    if len(sa) != len(sb):
        raise Missing(f"{a} and {b} have different lengths ({len(sa)}, {len(sb)})")
    return list(zip(sa, sb))


def _show(stats: list[Stat]) -> str:
    return str(stats[0]) if len(stats) == 1 else "[" + ", ".join(map(str, stats)) + "]"


def _se(*stats: Stat) -> float:
    """Standard error of a difference of independent means; NaN if any is unknown."""
    return math.sqrt(sum(s.se ** 2 for s in stats))


def _significance(se: float, z: float, name: str) -> None:
    if z > 0 and math.isnan(se):
        raise Missing(f"{name}: a standard error is unknown (one sample); the rule needs "
                      f"z = {z:g} standard errors")


def _verdict(ok: bool) -> str:
    return REPRODUCED if ok else NOT_REPRODUCED


# --- rules on one number ------------------------------------------------------------------


def rule_abs(values, target, tol, value="value"):
    """``|x - target| <= tol``."""
    x = _number(values, value)
    target = _number(values, target)
    d = abs(x - float(target))
    return Outcome(_verdict(d <= float(tol)),
                   f"{_fmt(x)} (|{_fmt(x)} - {_fmt(float(target))}| = {_fmt(d)}, tol {tol:g})")


def rule_rel(values, target, tol, value="value"):
    """``|x - target| <= tol |target|``."""
    x = _number(values, value)
    target = _number(values, target)
    d = abs(x - float(target))
    bound = float(tol) * abs(float(target))
    return Outcome(_verdict(d <= bound),
                   f"{_fmt(x)} (off by {_fmt(d / abs(float(target)) * 100)} %, "
                   f"tol {100 * float(tol):g} %)")


def rule_at_most(values, bound, value="value"):
    """``x <= bound`` (a number, or the name of a measured value)."""
    x, b = _number(values, value), _number(values, bound)
    return Outcome(_verdict(x <= b), f"{value} {_fmt(x)} (at most {_fmt(b)})")


def rule_at_least(values, bound, value="value"):
    """``x >= bound`` (a number, or the name of a measured value)."""
    x, b = _number(values, value), _number(values, bound)
    return Outcome(_verdict(x >= b), f"{value} {_fmt(x)} (at least {_fmt(b)})")


def rule_between(values, lo, hi, value="value"):
    """``lo <= x <= hi``."""
    x = _number(values, value)
    return Outcome(_verdict(float(lo) <= x <= float(hi)),
                   f"{value} {_fmt(x)} (in [{lo:g}, {hi:g}])")


def rule_equals(values, target, value="value"):
    """``x == target`` (an exact count; a number, or the name of a measured value)."""
    x, t = _number(values, value), _number(values, target)
    return Outcome(_verdict(x == t), f"{value} {_fmt(x)} (exactly {_fmt(t)})")


# --- rules on statistics --------------------------------------------------------------------


def _elementwise(values, a, b, z, test, text):
    """Apply ``test(sa, sb, se) -> (ok, number)`` to every pair of ``a`` and ``b``."""
    parts, ok = [], True
    for sa, sb in _pairs(values, a, b):
        se = _se(sa, sb)
        _significance(se, z, f"{a} - {b}")
        good, number = test(sa, sb, se if z else 0.0)
        ok = ok and good
        parts.append(("" if good else "✗") + _fmt(number))
    return Outcome(_verdict(ok), text.format(a=a, b=b, sa=_show(_stats(values, a)),
                                             sb=_show(_stats(values, b)),
                                             got=", ".join(parts)))


def rule_within(values, a, b, points, z):
    """``|a - b| + z SE <= points``: the means agree within ``points`` with a margin
    (element by element for lists)."""
    return _elementwise(
        values, a, b, z,
        lambda sa, sb, se: ((d := abs(sa.mean - sb.mean) + float(z) * se) <= float(points), d),
        f"{{a}} {{sa}} vs {{b}} {{sb}}: |diff| + {z:g} SE = {{got}} (at most {points:g})")


def rule_below_by(values, a, b, points, z):
    """``(b - a) - z SE >= points``: ``a`` is at least ``points`` below ``b``."""
    return _elementwise(
        values, a, b, z,
        lambda sa, sb, se: ((d := sb.mean - sa.mean - float(z) * se) >= float(points), d),
        f"{{a}} {{sa}} vs {{b}} {{sb}}: gap - {z:g} SE = {{got}} (at least {points:g})")


def rule_greater(values, a, b, z, margin=0.0):
    """``a - b - margin > z SE``."""
    extra = f" + {margin:g}" if margin else ""
    return _elementwise(
        values, a, b, z,
        lambda sa, sb, se: ((d := sa.mean - sb.mean - float(margin)) > float(z) * se,
                            d - float(z) * se),
        f"{{a}} {{sa}} > {{b}} {{sb}}{extra}: excess over {z:g} SE = {{got}} (must be > 0)")


def rule_not_greater(values, a, b, z):
    """``a - b <= z SE``: ``a`` does not significantly exceed ``b``."""
    return _elementwise(
        values, a, b, z,
        lambda sa, sb, se: ((d := sa.mean - sb.mean - float(z) * se) <= 0, d),
        f"{{a}} {{sa}} vs {{b}} {{sb}}: a - b - {z:g} SE = {{got}} (at most 0)")


def rule_each_at_least(values, value, bound, z):
    """Every element ``x`` of ``value``: ``x + z SE >= bound`` (not significantly below)."""
    items = _stats(values, value)
    got = [(x.mean + float(z) * (x.se if z else 0.0)) for x in items]
    if z and any(math.isnan(x.se) for x in items):
        raise Missing(f"{value}: a standard error is unknown")
    ok = all(g >= float(bound) for g in got)
    return Outcome(_verdict(ok), f"{value} {_show(items)}: mean + {z:g} SE, lowest "
                                 f"{_fmt(min(got))} (at least {bound:g})")


def rule_reduced_where_hurt(values, base_drop, base_accuracy, drops, hurt, above):
    """Where a change hurts the baseline (its drop at least ``hurt`` points) without sending
    it below ``above`` (its accuracy after the drop, in points), every other network drops
    less. ``base_drop`` and ``base_accuracy`` are lists over the settings (e.g. bit widths);
    ``drops`` the largest drop of the other networks at each. Not reproduced when no setting
    qualifies."""
    bd, ba, od = (_stats(values, base_drop), _stats(values, base_accuracy),
                  _stats(values, drops))
    if not len(bd) == len(ba) == len(od):
        raise Missing(f"{base_drop}, {base_accuracy} and {drops} have different lengths")
    qual = [i for i in range(len(bd)) if bd[i].mean >= float(hurt) and
            ba[i].mean >= float(above)]
    ok = bool(qual) and all(od[i].mean < bd[i].mean for i in qual)
    shown = "; ".join(f"#{i}: baseline {_fmt(bd[i].mean)}, others at most {_fmt(od[i].mean)}"
                      for i in qual) or "no setting qualifies"
    return Outcome(_verdict(ok), f"where the baseline drops >= {hurt:g} and stays >= "
                                 f"{above:g}: {shown}")


def rule_ordered(values, names, z, direction="increasing", strict=True):
    """A chain of means in ``direction``: each step significant (``strict``) or never
    significantly against the direction (not strict)."""
    if direction not in ("increasing", "decreasing"):
        raise ParameterError(f"direction={direction!r}: must be increasing or decreasing")
    if isinstance(names, str):
        seq: Any = names
    else:
        seq = list(names) if direction == "increasing" else list(names)[::-1]
    ok = True
    if isinstance(seq, str) or len(seq) == 1:  # one recorded list
        items = _stats(values, seq if isinstance(seq, str) else seq[0])
        flat = {f"_{i}": x for i, x in enumerate(items)}
        keys = list(flat) if direction == "increasing" else list(flat)[::-1]
        chain = _show(items)
    else:
        flat = {n: _stat(values, n) for n in seq}
        keys = seq
        chain = ", ".join(f"{n} {flat[n]}" for n in names)
    for lo, hi in zip(keys[:-1], keys[1:]):
        out = (rule_greater(flat, hi, lo, z) if strict else rule_not_greater(flat, lo, hi, z))
        ok = ok and out.ok
    kind = "each step > " if strict else "no step against it by > "
    return Outcome(_verdict(ok), f"{direction} ({kind}{z:g} SE): {chain}")


RULES: dict[str, Callable[..., Outcome]] = {
    "abs": rule_abs, "rel": rule_rel, "at_most": rule_at_most, "at_least": rule_at_least,
    "between": rule_between, "equals": rule_equals, "within": rule_within,
    "below_by": rule_below_by, "greater": rule_greater, "not_greater": rule_not_greater,
    "ordered": rule_ordered, "each_at_least": rule_each_at_least,
    "reduced_where_hurt": rule_reduced_where_hurt,
}
#: Rules whose ``target`` defaults to the claim's paper value.
TARGETED = ("abs", "rel", "equals")


def check_spec(check: Mapping[str, Any], where: str = "check") -> None:
    """Raise one line unless ``check`` is a well-formed rule (or ``all`` of them)."""
    import inspect

    if "all" in check:
        if set(check) != {"all"} or not check["all"]:
            raise ParameterError(f"{where}: 'all' must be the only key, a non-empty list")
        for i, sub in enumerate(check["all"]):
            check_spec(sub, f"{where}.all[{i}]")
        return
    name = check.get("rule")
    if name not in RULES:
        raise ParameterError(f"{where}: rule {name!r} must be one of {', '.join(RULES)}")
    sig = inspect.signature(RULES[name])
    args = {k: v for k, v in check.items() if k != "rule"}
    params = list(sig.parameters)[1:]
    unknown = set(args) - set(params)
    if unknown:
        raise ParameterError(f"{where}: rule {name} has no argument {sorted(unknown)}; "
                             f"allowed: {', '.join(params)}")
    required = [p for p in params if sig.parameters[p].default is inspect.Parameter.empty
                and not (p == "target" and name in TARGETED)]
    missing = [p for p in required if p not in args]
    if missing:
        raise ParameterError(f"{where}: rule {name} needs {', '.join(missing)}")


def judge(check: Mapping[str, Any], values: Mapping[str, Any],
          paper_value: Any = None) -> Outcome:
    """Apply a claim's check to its measured values.

    Args:
        check: the claim's ``check`` from ``scorecard.yml``: ``{rule: NAME, ...arguments}``
            or ``{all: [check, ...]}``.
        values: the measured values by name (numbers, :class:`Stat` or lists); a scalar claim
            records its number as ``value``.
        paper_value: the paper's number, the default ``target`` of ``abs``, ``rel`` and
            ``equals``.

    Returns:
        The outcome; ``not measured`` when a value the rule needs is missing or NaN.
    """
    vals = {k: as_value(v) for k, v in values.items()}
    if "all" in check:
        outs = [judge(c, vals, paper_value) for c in check["all"]]
        if any(o.verdict == NOT_MEASURED for o in outs):
            verdict = NOT_MEASURED
        else:
            verdict = _verdict(all(o.ok for o in outs))
        return Outcome(verdict, "; ".join(
            ("" if o.ok else "✗ ") + o.text for o in outs))
    args = {k: v for k, v in check.items() if k != "rule"}
    if check["rule"] in TARGETED and "target" not in args:
        args["target"] = paper_value
    try:
        return RULES[check["rule"]](vals, **args)
    except Missing as why:
        return Outcome(NOT_MEASURED, f"not measured: {why}")
