"""Klaviyo's filter expressions (`?filter=` and metric-aggregates' `filter: [...]`), parsed into plain
conditions. Pure: no FastAPI, no store; callers decide which fields and operators each resource allows.

    equals(email,"jane@example.com")
    any(email,["a@x.com","b@x.com"])
    greater-or-equal(datetime,2024-01-01T00:00:00Z)
    and(equals(metric_id,"M1"),less-than(datetime,2024-02-01))
    equals(metric_id,"M1"),greater-than(timestamp,1700000000)     (a top-level comma is an `and`)

Values are double- or single-quoted strings (backslash escapes), numbers, `true`/`false`/`null`,
lists in brackets, and unquoted dates or datetimes (a date, or a datetime without an offset, is UTC).
`and`, `or` and `not` combine expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cartback import values


class FilterError(ValueError):
    """The expression cannot be parsed; the message says where."""


@dataclass(frozen=True)
class Condition:
    op: str
    field: str
    value: Any = None


@dataclass(frozen=True)
class Combined:
    op: str  # and | or | not
    items: tuple[Node, ...]


Node = Condition | Combined

COMBINATORS = ("and", "or", "not")
# Operators that take only a field (`has(profile)`).
UNARY = ("has",)

_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.\-]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_BARE = re.compile(r"[0-9][0-9:.+\-TZtz]*")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse(text: str) -> list[Node]:
    """The expressions of a filter string, all of which must hold."""
    parser = _Parser(text)
    nodes = [parser.expression()]
    while parser.take(","):
        nodes.append(parser.expression())
    parser.end()
    return nodes


def conditions(text: str) -> list[Condition]:
    """The conditions of a filter that only ANDs them (what most resources accept), `and(...)` flattened.
    `or` and `not` are refused here."""
    out: list[Condition] = []

    def walk(node: Node) -> None:
        if isinstance(node, Condition):
            out.append(node)
        elif node.op == "and":
            for item in node.items:
                walk(item)
        else:
            raise FilterError(f"'{node.op}' is not supported in this filter")

    for node in parse(text):
        walk(node)
    return out


def as_datetime(value: Any) -> datetime:
    """A condition's value as an aware datetime (ISO strings, dates, unix seconds)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        parsed = _datetime(value)
        if parsed is not None:
            return parsed
    raise FilterError(f"{value!r} is not a date-time")


def _datetime(text: str) -> datetime | None:
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        return values.to_utc(datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00")))
    except ValueError:
        return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> FilterError:
        return FilterError(f"{what} at position {self.pos} of the filter")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def take(self, token: str) -> bool:
        self.skip()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def need(self, token: str) -> None:
        if not self.take(token):
            raise self.fail(f"expected '{token}'")

    def end(self) -> None:
        self.skip()
        if self.pos != len(self.text):
            raise self.fail("unexpected text")

    def name(self) -> str:
        self.skip()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a name")
        self.pos = match.end()
        return match.group()

    def expression(self) -> Node:
        op = self.name()
        self.need("(")
        if op in COMBINATORS:
            items = [self.expression()]
            while self.take(","):
                items.append(self.expression())
            self.need(")")
            if op == "not" and len(items) != 1:
                raise self.fail("'not' takes one expression")
            return Combined(op, tuple(items))
        field = self.name()
        if op in UNARY:
            self.need(")")
            return Condition(op, field)
        self.need(",")
        value = self.value()
        self.need(")")
        return Condition(op, field, value)

    def value(self) -> Any:
        self.skip()
        if self.pos >= len(self.text):
            raise self.fail("expected a value")
        char = self.text[self.pos]
        if char in "\"'":
            return self.string(char)
        if char == "[":
            self.pos += 1
            items: list[Any] = []
            if not self.take("]"):
                items.append(self.value())
                while self.take(","):
                    items.append(self.value())
                self.need("]")
            return items
        for word, meaning in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return meaning
        if char == "-":
            negative = _NUMBER.match(self.text, self.pos)
            if negative is not None:
                self.pos = negative.end()
                token = negative.group()
                return float(token) if negative.group(1) or negative.group(2) else int(token)
        bare = _BARE.match(self.text, self.pos)
        if bare is not None:
            token = bare.group()
            number = _NUMBER.fullmatch(token)
            if number is not None:
                self.pos = bare.end()
                return float(token) if number.group(1) or number.group(2) else int(token)
            moment = _datetime(token)
            if moment is not None:
                self.pos = bare.end()
                return moment
        raise self.fail("expected a value")

    def string(self, quote: str) -> str:
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == quote:
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.fail("unterminated string")
