"""Klaviyo's documented ingestion limits ("Rate limits, status codes, and errors"), checked before anything
is stored and answered as Klaviyo does: a 400 error object whose `source.pointer` names the member.

| limit                                   | Klaviyo |
|-----------------------------------------|---------|
| payload size (decompressed)             | 5 MB    |
| event properties per event              | 300     |
| size of any field                       | 100 kB  |
| items in an array                       | 4000    |
| levels of nested objects                | 10      |
| event timestamp                         | between 2000 and now + 1 year (`cartback.values`) |
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cartback import values
from cartback.api.klaviyo import jsonapi

MAX_PAYLOAD_BYTES = 5 * 1024 * 1024
MAX_PROPERTIES = 300
MAX_FIELD_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_DEPTH = 10


def check_properties(properties: dict[str, Any], pointer: str, *, max_count: int = MAX_PROPERTIES) -> None:
    """Property count, field size, array length and nesting depth of one properties object."""
    if len(properties) > max_count:
        raise jsonapi.Problem(
            400, f"At most {max_count} properties are allowed; got {len(properties)}.", pointer=pointer
        )
    _walk(properties, [pointer], 1)


def _walk(value: Any, path: list[str], depth: int) -> None:
    """Check `value` at `path`: the properties' pointer, then the keys and indices down to `value`, made
    a pointer only for an error (most bodies have none)."""
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            raise jsonapi.Problem(
                400, f"Objects may be nested at most {MAX_DEPTH} levels deep.", pointer=_pointer(path)
            )
        for key, item in value.items():  # JSON object keys: strings
            path.append(key)
            _check_size(key, path)
            _walk(item, path, depth + 1)
            path.pop()
    elif isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            raise jsonapi.Problem(
                400,
                f"Arrays may hold at most {MAX_ARRAY_ITEMS} items; got {len(value)}.",
                pointer=_pointer(path),
            )
        for index, item in enumerate(value):
            path.append(str(index))
            _walk(item, path, depth)
            path.pop()
    elif isinstance(value, str):
        _check_size(value, path)


def _pointer(path: list[str]) -> str:
    return path[0] + "".join("/" + jsonapi.escape(part) for part in path[1:])


def _check_size(text: str, path: list[str]) -> None:
    # Cheap first: a string this short cannot reach the limit even at four bytes per character.
    if len(text) * 4 > MAX_FIELD_BYTES and len(text.encode("utf-8")) > MAX_FIELD_BYTES:
        raise jsonapi.Problem(
            400, f"A field may be at most {MAX_FIELD_BYTES // 1024} kB.", pointer=_pointer(path)
        )


def check_time(value: datetime, now: datetime, pointer: str) -> None:
    try:
        values.check_time(value, now)
    except ValueError as exc:
        raise jsonapi.Problem(400, f"The event time {exc}.", pointer=pointer) from exc


def check_payload_size(content_length: str | None) -> None:
    """The 5 MB ceiling, for servers whose CARTBACK_MAX_BODY_BYTES was raised past it (the default, 1 MiB,
    refuses larger bodies before they reach a route)."""
    try:
        size = int(content_length or 0)
    except ValueError:
        return
    if size > MAX_PAYLOAD_BYTES:
        raise jsonapi.Problem(413, f"The payload may be at most {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB.")
