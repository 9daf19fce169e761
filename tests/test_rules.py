"""The verdict rules: each with a case that passes and one that fails; NaN and missing values
are never 'reproduced'."""

import math

import pytest

from hwlib.errors import ParameterError
from hwlib.study import rules
from hwlib.study.rules import NOT_MEASURED, NOT_REPRODUCED, REPRODUCED, Stat, judge

S = Stat


# (check, values, paper value, verdict): one passing and one failing case per rule
CASES = [
    ({"rule": "abs", "tol": 1.0}, {"value": 89.5}, 90.4, REPRODUCED),
    ({"rule": "abs", "tol": 1.0}, {"value": 89.3}, 90.4, NOT_REPRODUCED),
    ({"rule": "rel", "tol": 0.1}, {"value": 2.19}, 2.0, REPRODUCED),
    ({"rule": "rel", "tol": 0.1}, {"value": 2.21}, 2.0, NOT_REPRODUCED),
    ({"rule": "at_most", "bound": 3.0}, {"value": 3.0}, None, REPRODUCED),
    ({"rule": "at_most", "bound": 3.0}, {"value": 3.5}, None, NOT_REPRODUCED),
    ({"rule": "at_least", "bound": 90.0}, {"value": 90.0}, None, REPRODUCED),
    ({"rule": "at_least", "bound": 90.0}, {"value": 89.9}, None, NOT_REPRODUCED),
    ({"rule": "at_least", "value": "x", "bound": "y"}, {"x": 2, "y": 1}, None, REPRODUCED),
    ({"rule": "between", "lo": 1.5, "hi": 2.5}, {"value": 1.87}, None, REPRODUCED),
    ({"rule": "between", "lo": 1.5, "hi": 2.5}, {"value": 2.6}, None, NOT_REPRODUCED),
    ({"rule": "equals"}, {"value": 5}, 5, REPRODUCED),
    ({"rule": "equals"}, {"value": 4}, 5, NOT_REPRODUCED),
    ({"rule": "equals", "value": "a", "target": "b"}, {"a": 3, "b": 3}, None, REPRODUCED),
    # within: |a - b| + z SE <= points
    ({"rule": "within", "a": "a", "b": "b", "points": 3, "z": 2},
     {"a": S(94.0, 0.2, 5), "b": S(95.0, 0.2, 5)}, None, REPRODUCED),
    ({"rule": "within", "a": "a", "b": "b", "points": 3, "z": 2},
     {"a": S(93.0, 0.5, 5), "b": S(95.0, 0.5, 5)}, None, NOT_REPRODUCED),  # 2 + 1.41 > 3
    # below_by: (b - a) - z SE >= points
    ({"rule": "below_by", "a": "a", "b": "b", "points": 20, "z": 2},
     {"a": S(70.0, 1.0, 5), "b": S(95.0, 0.1, 5)}, None, REPRODUCED),
    ({"rule": "below_by", "a": "a", "b": "b", "points": 20, "z": 2},
     {"a": S(88.0, 1.0, 5), "b": S(95.0, 0.1, 5)}, None, NOT_REPRODUCED),
    # greater: a - b - margin > z SE
    ({"rule": "greater", "a": "a", "b": "b", "z": 2},
     {"a": S(82.2, 0.3, 10), "b": S(81.0, 0.3, 10)}, None, REPRODUCED),
    ({"rule": "greater", "a": "a", "b": "b", "z": 2},
     {"a": S(82.2, 1.0, 10), "b": S(81.0, 1.0, 10)}, None, NOT_REPRODUCED),
    ({"rule": "greater", "a": "a", "b": "b", "z": 0, "margin": 20},
     {"a": 60.0, "b": 35.0}, None, REPRODUCED),
    # not_greater: a - b <= z SE
    ({"rule": "not_greater", "a": "a", "b": "b", "z": 2},
     {"a": S(1.63, 0.05, 5), "b": S(1.60, 0.05, 5)}, None, REPRODUCED),
    ({"rule": "not_greater", "a": "a", "b": "b", "z": 2},
     {"a": S(1.9, 0.05, 5), "b": S(1.6, 0.05, 5)}, None, NOT_REPRODUCED),
    # elementwise over lists
    ({"rule": "greater", "a": "a", "b": "b", "z": 1},
     {"a": [S(3, .1, 4), S(5, .1, 4)], "b": [S(1, .1, 4), S(2, .1, 4)]}, None, REPRODUCED),
    ({"rule": "greater", "a": "a", "b": "b", "z": 1},
     {"a": [S(3, .1, 4), S(1, .1, 4)], "b": [S(1, .1, 4), S(2, .1, 4)]}, None,
     NOT_REPRODUCED),
    # ordered, over named values and over one recorded list
    ({"rule": "ordered", "names": ["x", "y", "z"], "z": 2},
     {"x": S(1, .1, 5), "y": S(2, .1, 5), "z": S(3, .1, 5)}, None, REPRODUCED),
    ({"rule": "ordered", "names": ["x", "y", "z"], "z": 2},
     {"x": S(1, .1, 5), "y": S(2, .1, 5), "z": S(2.1, .1, 5)}, None, NOT_REPRODUCED),
    ({"rule": "ordered", "names": "t", "z": 2, "direction": "decreasing", "strict": False},
     {"t": [S(140, 5, 64), S(78, 2, 64), S(79, 2, 64), S(27, 1, 64)]}, None, REPRODUCED),
    ({"rule": "ordered", "names": "t", "z": 2, "direction": "decreasing", "strict": False},
     {"t": [S(140, 5, 64), S(78, 2, 64), S(95, 2, 64), S(27, 1, 64)]}, None,
     NOT_REPRODUCED),
    ({"rule": "each_at_least", "value": "d", "bound": 0, "z": 2},
     {"d": [S(0.1, .2, 10), S(-0.3, .2, 10)]}, None, REPRODUCED),
    ({"rule": "each_at_least", "value": "d", "bound": 0, "z": 2},
     {"d": [S(0.1, .2, 10), S(-0.5, .2, 10)]}, None, NOT_REPRODUCED),
    ({"rule": "reduced_where_hurt", "base_drop": "bd", "base_accuracy": "ba", "drops": "od",
      "hurt": 5, "above": 30},
     {"bd": [40.0, 5.1, 1.0], "ba": [50.0, 85.0, 88.0], "od": [30.0, 4.8, 2.0]}, None,
     REPRODUCED),
    ({"rule": "reduced_where_hurt", "base_drop": "bd", "base_accuracy": "ba", "drops": "od",
      "hurt": 5, "above": 30},
     {"bd": [40.0, 5.1], "ba": [50.0, 85.0], "od": [30.0, 6.0]}, None, NOT_REPRODUCED),
    ({"rule": "reduced_where_hurt", "base_drop": "bd", "base_accuracy": "ba", "drops": "od",
      "hurt": 5, "above": 30},
     {"bd": [1.0], "ba": [88.0], "od": [0.5]}, None, NOT_REPRODUCED),  # none qualifies
    # all
    ({"all": [{"rule": "at_least", "bound": 1}, {"rule": "at_most", "bound": 2}]},
     {"value": 1.5}, None, REPRODUCED),
    ({"all": [{"rule": "at_least", "bound": 1}, {"rule": "at_most", "bound": 2}]},
     {"value": 2.5}, None, NOT_REPRODUCED),
]


@pytest.mark.parametrize("check,values,paper,expected", CASES)
def test_rule(check, values, paper, expected):
    rules.check_spec(check)
    assert judge(check, values, paper).verdict == expected


def test_every_rule_has_a_passing_and_a_failing_case():
    seen = {}
    for check, values, paper, expected in CASES:
        for c in check.get("all", [check]):
            seen.setdefault(c["rule"], set()).add(expected)
    for name in rules.RULES:
        assert seen.get(name) == {REPRODUCED, NOT_REPRODUCED}, name


@pytest.mark.parametrize("check,values", [
    ({"rule": "abs", "tol": 1.0}, {"value": math.nan}),
    ({"rule": "at_least", "bound": 0.0}, {"value": math.nan}),
    ({"rule": "at_least", "bound": 0.0}, {}),                         # missing
    ({"rule": "within", "a": "a", "b": "b", "points": 3, "z": 2},
     {"a": S(math.nan, 0.1, 5), "b": S(1, 0.1, 5)}),
    ({"rule": "greater", "a": "a", "b": "b", "z": 2},
     {"a": S(3, math.nan, 1), "b": S(1, 0.1, 5)}),                  # one sample: no SE
    ({"rule": "ordered", "names": ["x", "y"], "z": 1}, {"x": S(1, .1, 3)}),
    ({"all": [{"rule": "at_least", "bound": 0}, {"rule": "at_most", "bound": 1}]},
     {"value": math.nan}),
])
def test_nan_and_missing_are_never_reproduced(check, values):
    assert judge(check, values, 1.0).verdict == NOT_MEASURED


def test_bools_are_refused_and_specs_checked():
    with pytest.raises(ParameterError, match="not a bool"):
        judge({"rule": "at_least", "bound": 1}, {"value": True})
    with pytest.raises(ParameterError, match="must be one of"):
        rules.check_spec({"rule": "roughly"})
    with pytest.raises(ParameterError, match="needs points"):
        rules.check_spec({"rule": "within", "a": "a", "b": "b", "z": 2})
    with pytest.raises(ParameterError, match="has no argument"):
        rules.check_spec({"rule": "at_most", "bound": 1, "tolerance": 2})


def test_stat_of_samples():
    s = Stat.of([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.n == 3 and abs(s.se - 1 / math.sqrt(3)) < 1e-12
    assert math.isnan(Stat.of([4.0]).se)
