"""Metric names a PromQL expression selects, found without a PromQL parser
(promtool 2.42 cannot print one): strings, label matchers, ranges and
grouping clauses are removed, then every remaining identifier that is not
a function call, keyword or number is a metric name. Grafana's template
variables ($instance, ${datasource}, $__rate_interval) are dropped first.

Good enough for the queries shmhub ships; promql_metric_names_test.py pins
down what it handles."""

import re

_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"((?:[^"\\]|\\.)*)"')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not glued to a preceding number (so 1e3, 0x1f, 5m are not
# names).
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}


def metric_names(expr):
    """The set of metric names `expr` selects."""
    text = _GRAFANA_VARIABLE.sub(" ", expr)
    names = set(_NAME_MATCHER.findall(text))
    text = _STRING.sub('""', text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word.lower() in _KEYWORDS:
            continue
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or aggregation operator
        names.add(word)
    return names
