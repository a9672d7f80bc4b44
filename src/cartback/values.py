"""The values cartback can store and compute exactly, as one rule every API applies at its edge.

A request body is checked whole, right after it is parsed and before any route sees it
(`find_unstorable`); amounts and event times are checked where a surface turns them into cents or a
moment (`money.to_minor`, `check_time`). Whatever breaks the rule is refused with a 400 naming the
field, in the envelope of the API it came through; nothing is stored. docs/ingest.md lists the limits.

Why each limit:

* Integers beyond 64 bits: the JSON columns are written with orjson, which holds signed and unsigned
  64-bit integers only, and PostgreSQL `bigint` holds signed ones; a larger integer failed at the store.
* NaN and Infinity are not JSON: stored, they came back as `null`, so the value was silently lost.
* Lone surrogates (`"\\ud800"`) are not Unicode text: they cannot be encoded as UTF-8, stored or sent.
* Nesting: reads render stored documents inside their response envelope, and the JSON encoders stop at
  about 255 levels; a body may nest `MAX_DEPTH` levels, which leaves room for every envelope and for the
  store's read bound (`READ_DEPTH`), beyond which an old record is read clipped rather than failing.
* Times whose offset puts them outside what a datetime holds in UTC (year 1 at +01:00): `to_utc`.
* Event times outside `EARLIEST .. now + LATEST_AHEAD`, as Klaviyo bounds them: a date such as year 1
  leaves no room for the attribution window before it and overflowed there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Levels of objects and arrays a request body may nest, counting the body itself as level 1.
MAX_DEPTH = 32
# Levels a stored JSON document is read with; deeper parts of an old record are read as null.
READ_DEPTH = 2 * MAX_DEPTH
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=365)

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Unstorable:
    """Where a value breaks the rule (the keys and indexes leading to it from the body) and why."""

    path: Path
    reason: str


def _text_problem(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogate (\\ud800-\\udfff) in text, which is not Unicode"
    return None


def find_unstorable(value: Any) -> Unstorable | None:
    """The first value in a parsed JSON document that cartback cannot store exactly, if any."""
    # Nearly every body is fine: a walk that only answers yes or no, building no paths, checks it at a
    # fraction of the cost (it ran on every API request); only a refused body is walked again for where.
    if _storable(value, 1):
        return None
    return _locate(value)


def _storable(node: Any, depth: int) -> bool:
    """Whether `node`, at this depth, holds nothing `_locate` would refuse. Recursive, but never deeper
    than MAX_DEPTH + 1 calls: past that depth any object or array is refused at once."""
    if isinstance(node, dict):
        if depth > MAX_DEPTH:
            return False
        items: Iterable[Any] = node.values()
        for key in node:
            if isinstance(key, str) and not key.isascii() and _text_problem(key):
                return False
    elif isinstance(node, list):
        if depth > MAX_DEPTH:
            return False
        items = node
    else:
        return _storable_leaf(node)
    for item in items:
        if isinstance(item, str):
            if item.isascii() or _text_problem(item) is None:
                continue
            return False
        if not _storable(item, depth + 1):
            return False
    return True


def _storable_leaf(node: Any) -> bool:
    if isinstance(node, str):
        return _text_problem(node) is None
    if isinstance(node, bool):
        return True
    if isinstance(node, int):
        return INT_MIN <= node <= INT_MAX
    if isinstance(node, float):
        return math.isfinite(node)
    return True


def _locate(value: Any) -> Unstorable | None:
    """`find_unstorable`'s answer with the place: iterative, so a body nested thousands of levels deep
    costs no recursion."""
    stack: list[tuple[Any, Path, int]] = [(value, (), 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            return Unstorable(path, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            for key, item in reversed(node.items()):
                here = (*path, key)
                if isinstance(key, str) and (problem := _text_problem(key)):
                    return Unstorable(here, f"key with a {problem}")
                stack.append((item, here, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, (*path, i), depth + 1) for i, item in reversed(list(enumerate(node))))
        elif isinstance(node, str):
            if problem := _text_problem(node):
                return Unstorable(path, problem)
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int):
            if not INT_MIN <= node <= INT_MAX:
                return Unstorable(path, "integer beyond the 64-bit range")
        elif isinstance(node, float) and not math.isfinite(node):
            return Unstorable(path, "not a finite number (NaN and Infinity are not JSON)")
    return None


def to_utc(moment: datetime) -> datetime:
    """`moment` in UTC, a naive one taken as UTC. ValueError (a 400 at the edge) when UTC cannot hold it:
    year 1 at +01:00 is before datetime's first moment, and converting it raised OverflowError, a 500."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must be in the year {EARLIEST.year} or later") from None


def check_time(moment: datetime, now: datetime) -> None:
    """ValueError when an event's time is before `EARLIEST` or more than `LATEST_AHEAD` after now."""
    if moment < EARLIEST:
        raise ValueError(f"must be in the year {EARLIEST.year} or later")
    if moment - now > LATEST_AHEAD:
        raise ValueError(f"must not be more than {LATEST_AHEAD.days} days in the future")


def clip_depth(value: Any, limit: int = READ_DEPTH) -> Any:
    """`value` with every object or array deeper than `limit` levels replaced by None: what a read
    returns of an old record stored before the nesting rule, so that rendering it cannot fail."""
    if not _deeper_than(value, limit):
        return value

    def clip(node: Any, depth: int) -> Any:
        if isinstance(node, dict | list) and depth > limit:
            return None
        if isinstance(node, dict):
            return {k: clip(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [clip(v, depth + 1) for v in node]
        return node

    return clip(value, 1)


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in node)
    return False
