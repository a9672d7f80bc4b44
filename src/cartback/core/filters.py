"""Property filters over event and subscriber data, with Sequenzy's semantics (`propertyFilters` on an
`event_received` trigger, `stopCondition.matchConfig` in `event_property_filter` mode).

A filter is `{path, operator, value}`. Paths are dot paths into nested JSON: `customer.email`, `items.0.title`
(a numeric segment indexes a list), `items[].title` (`[]` fans out over every item, and can nest:
`a.b[].c[].d`). A path can resolve to several values; every operator except the negative ones matches when
ANY value does, and the negative ones (`not_exists`, `not_equals`, `not_contains`) match when NO value does.

Operators are Sequenzy's eight (`exists`, `not_exists`, `equals`, `not_equals`, `one_of`, `contains`,
`greater_than`, `less_than`) plus our extensions: `greater_than_or_equal` / `less_than_or_equal` (aliases
`gte` / `lte`) and `not_contains` (Sequenzy's `field_value` stop condition has it). Sequenzy has no `>=`;
the nearest it can say for "total >= 50" is `greater_than 49.99`, which is right only for amounts in whole
cents, so definitions should use `greater_than_or_equal 50` instead.

Comparison rules:

* numbers compare numerically, and a string that spells a number counts as one when the other side is a
  number or the operator is an ordering one: `"50" == 50`, `50.0 == 50`, `"75" greater_than 50`;
* strings otherwise compare exactly (case-sensitive), except `contains`, which is case-insensitive both as a
  substring test on strings and as a membership test on lists;
* booleans match only booleans, or the strings "true" / "false" (any case) when the other side is a bool;
  `1` does not equal `true`;
* JSON null is "no value": `exists` ignores it, and no other operator matches it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EXISTS = "exists"
NOT_EXISTS = "not_exists"
EQUALS = "equals"
NOT_EQUALS = "not_equals"
ONE_OF = "one_of"
CONTAINS = "contains"
NOT_CONTAINS = "not_contains"
GREATER_THAN = "greater_than"
LESS_THAN = "less_than"
GREATER_THAN_OR_EQUAL = "greater_than_or_equal"
LESS_THAN_OR_EQUAL = "less_than_or_equal"

SEQUENZY_OPERATORS = frozenset(
    {EXISTS, NOT_EXISTS, EQUALS, NOT_EQUALS, ONE_OF, CONTAINS, GREATER_THAN, LESS_THAN}
)
OPERATORS = SEQUENZY_OPERATORS | {NOT_CONTAINS, GREATER_THAN_OR_EQUAL, LESS_THAN_OR_EQUAL}
# Spellings accepted on the wire and stored under the canonical name.
ALIASES = {"gte": GREATER_THAN_OR_EQUAL, "lte": LESS_THAN_OR_EQUAL}

_VALUELESS = frozenset({EXISTS, NOT_EXISTS})
_ORDERING = frozenset({GREATER_THAN, LESS_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN_OR_EQUAL})
_NEGATIVE = frozenset({NOT_EXISTS, NOT_EQUALS, NOT_CONTAINS})

# One path segment: a key or list index, then any number of `[]` (fan out) or `[N]` (index) suffixes.
_SEGMENT = re.compile(r"^(?P<key>[^\[\]]*)(?P<suffixes>(?:\[\d*\])*)$")
_SUFFIX = re.compile(r"\[(\d*)\]")
_EACH = object()  # step marker for `[]`


@dataclass(frozen=True)
class PropertyFilter:
    path: str
    operator: str
    value: Any = None

    def __post_init__(self) -> None:
        _check_filter(self.path, self.operator, self.value, value_given=True)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> PropertyFilter:
        """Build a filter from a Sequenzy `{path, operator, value}` object. Mistakes raise ValueError naming
        the path and operator, so the API can answer 400 with a message the author can act on."""
        if not isinstance(wire, Mapping):
            raise ValueError(f"property filter must be an object, got {type(wire).__name__}")
        path = wire.get("path")
        operator = wire.get("operator")
        if not isinstance(path, str) or not path:
            raise ValueError(f"property filter needs a non-empty string path, got {path!r}")
        if not isinstance(operator, str):
            raise ValueError(f"property filter on {path!r} needs an operator, got {operator!r}")
        operator = ALIASES.get(operator, operator)
        _check_filter(path, operator, wire.get("value"), value_given="value" in wire)
        return cls(path, operator, None if operator in _VALUELESS else wire["value"])

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"path": self.path, "operator": self.operator}
        if self.operator not in _VALUELESS:
            wire["value"] = list(self.value) if isinstance(self.value, list) else self.value
        return wire

    def describe(self) -> str:
        """The filter as a user reads it: `items[].title contains 'Jeans'`."""
        if self.operator in _VALUELESS:
            return f"{self.path} {self.operator}"
        return f"{self.path} {self.operator} {self.value!r}"


@dataclass(frozen=True)
class Match:
    """The outcome of `match`: on failure, which filter failed and what the data held at its path, so that
    "why did this checkout not enter the flow?" has an answer."""

    ok: bool
    failed: PropertyFilter | None = None
    actual: list[Any] = field(default_factory=list)
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def resolve(data: Mapping[str, Any] | list[Any], path: str) -> list[Any]:
    """Every value `path` reaches in `data`; a missing key, a bad index or a non-container on the way
    yields nothing rather than an error, because event payloads are whatever the shop sent."""
    nodes: list[Any] = [data]
    for step in _parse_path(path):
        found: list[Any] = []
        for node in nodes:
            if step is _EACH:
                if isinstance(node, list):
                    found.extend(node)
            elif isinstance(node, Mapping):
                if step in node:
                    found.append(node[step])
            elif isinstance(node, list) and isinstance(step, str) and step.isdecimal():
                index = int(step)
                if index < len(node):
                    found.append(node[index])
        nodes = found
    return nodes


def match(data: Mapping[str, Any], filters: Iterable[PropertyFilter]) -> Match:
    """Whether `data` passes all `filters` (an empty list passes), reporting the first that fails."""
    for item in filters:
        actual = resolve(data, item.path)
        if not evaluate(item, actual):
            reason = f"{item.describe()} failed: found {actual!r}"
            return Match(ok=False, failed=item, actual=actual, reason=reason)
    return Match(ok=True)


def evaluate(item: PropertyFilter, actual: list[Any]) -> bool:
    """Whether one filter holds for the values already resolved at its path."""
    present = [value for value in actual if value is not None]
    operator = item.operator
    if operator == EXISTS:
        return bool(present)
    if operator == NOT_EXISTS:
        return not present
    if operator in _NEGATIVE:
        positive = EQUALS if operator == NOT_EQUALS else CONTAINS
        return not any(_test(positive, value, item.value) for value in present)
    return any(_test(operator, value, item.value) for value in present)


def _test(operator: str, actual: Any, expected: Any) -> bool:
    if operator == EQUALS:
        return _equal(actual, expected)
    if operator == ONE_OF:
        return any(_equal(actual, option) for option in expected)
    if operator == CONTAINS:
        return _contains(actual, expected)
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    if operator == GREATER_THAN:
        return left > right
    if operator == LESS_THAN:
        return left < right
    if operator == GREATER_THAN_OR_EQUAL:
        return left >= right
    return left <= right


def _equal(actual: Any, expected: Any, *, fold_case: bool = False) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return _boolean(actual) is not None and _boolean(actual) == _boolean(expected)
    if _is_number(actual) or _is_number(expected):
        left, right = _number(actual), _number(expected)
        return left is not None and left == right
    if isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold() if fold_case else actual == expected
    return bool(actual == expected)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return _text(expected).casefold() in actual.casefold()
    if isinstance(actual, list):
        return any(_equal(item, expected, fold_case=True) for item in actual)
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> int | float | None:
    """`value` as a number if it is one or spells one ("50", " 49.99 "); Python compares int and float
    exactly, so large integers keep their precision."""
    if _is_number(value):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_path(path: str) -> list[Any]:
    """`items[].sku` -> ["items", EACH, "sku"]; `items[0]` and `items.0` both index."""
    steps: list[Any] = []
    for segment in path.split("."):
        parsed = _SEGMENT.match(segment)
        if parsed is None or (not parsed["key"] and not parsed["suffixes"]):
            raise ValueError(f"bad path {path!r}: segment {segment!r} is empty or has unbalanced brackets")
        if parsed["key"]:
            steps.append(parsed["key"])
        for index in _SUFFIX.findall(parsed["suffixes"]):
            steps.append(index if index else _EACH)
    return steps


def _check_filter(path: str, operator: str, value: Any, *, value_given: bool) -> None:
    where = f"property filter {path!r} {operator!r}"
    if operator not in OPERATORS:
        known = ", ".join(sorted(OPERATORS | ALIASES.keys()))
        raise ValueError(f"{where}: unknown operator {operator!r} (known: {known})")
    _parse_path(path)
    if operator in _VALUELESS:
        return
    if not value_given or value is None:
        raise ValueError(f"{where}: needs a value")
    if operator == ONE_OF:
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: value must be a non-empty list, got {value!r}")
        if any(isinstance(option, dict | list) or option is None for option in value):
            raise ValueError(f"{where}: list items must be strings, numbers or booleans, got {value!r}")
    elif isinstance(value, dict | list):
        raise ValueError(f"{where}: value must be a string, number or boolean, got {value!r}")
    elif operator in _ORDERING and _number(value) is None:
        raise ValueError(f"{where}: value must be a number or a numeric string, got {value!r}")
