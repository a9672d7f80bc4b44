"""JSON:API as the Klaviyo SDK reads it: resource objects, collection documents with absolute links,
page cursors, and the `{"errors": [...]}` envelope.

The SDK validates responses strictly (reference notes, "Surprises" 8): every resource needs `type`, `id`,
`attributes` and `links.self`; `links`, when present, needs `self`. The helpers here are the one place
those shapes are written, so resource modules cannot forget a key.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
from fastapi import Request
from starlette.responses import JSONResponse, Response

from cartback import errors

MEDIA_TYPE = "application/vnd.api+json"
T = TypeVar("T")


class JsonApiResponse(JSONResponse):
    """Klaviyo answers with the JSON:API media type; the SDK accepts any `+json` type."""

    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# -- errors ----------------------------------------------------------------------------------------

# Klaviyo's `code` and `title` for each status, as its API writes them.
CODES: dict[int, tuple[str, str]] = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    409: ("conflict", "Conflict."),
    413: ("request_too_large", "Request entity too large."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Request was throttled."),
    503: ("service_unavailable", "Service unavailable."),
}
# Where a body error points when nothing more precise is known, as Klaviyo does.
DEFAULT_POINTER = "/data/"


class Problem(errors.CartbackError):
    """One Klaviyo error object, raised by the Klaviyo routes when they need more than a status and a
    message: a specific `code`, a `source` pointer or parameter, or `meta` (duplicate_profile_id)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        pointer: str | None = None,
        parameter: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status
        default_code, default_title = CODES.get(status, ("error", "An error occurred."))
        self.code = code or default_code
        self.title = title or default_title
        self.pointer = pointer
        self.parameter = parameter
        self.meta = meta


class Problems(errors.CartbackError):
    """Several error objects in one answer (a body with several invalid fields)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)
        self.status_code = self.problems[0].status_code
        self.code = self.problems[0].code


def error_object(exc: errors.CartbackError) -> dict[str, Any]:
    """The Klaviyo error object for any cartback error."""
    if isinstance(exc, Problem):
        code, title = exc.code, exc.title
        pointer, parameter, meta = exc.pointer, exc.parameter, exc.meta
    else:
        code, title = CODES.get(exc.status_code, (exc.code, "An error occurred."))
        pointer, parameter, meta = None, None, None
    source: dict[str, str] = {}
    if parameter is not None:
        source["parameter"] = parameter
    else:
        source["pointer"] = pointer or DEFAULT_POINTER
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status": exc.status_code,
        "code": code,
        "title": title,
        "detail": exc.message,
        "source": source,
    }
    if meta:
        body["meta"] = meta
    return body


def render_error(exc: errors.CartbackError) -> Response:
    from cartback.api import errors as api_errors

    if isinstance(exc, Problems):
        objects = [error_object(p) for p in exc.problems]
    elif isinstance(exc, api_errors.ValidationFailed):
        objects = [error_object(p) for p in validation_problems(exc.problems)]
    else:
        objects = [error_object(exc)]
    return JsonApiResponse({"errors": objects}, status_code=exc.status_code)


def escape(key: str) -> str:
    """One JSON Pointer (RFC 6901) segment, so a key with a slash still points at the right member."""
    return key.replace("~", "~0").replace("/", "~1")


def validation_problems(items: Sequence[dict[str, Any]]) -> list[Problem]:
    """pydantic's error list as Klaviyo error objects: body errors point at the member
    (`/data/attributes/metric/data/attributes/name`), query and header errors name the parameter."""
    from cartback.api import errors as api_errors

    out = []
    for item in items:
        loc = [str(p) for p in item.get("loc", ())]
        where, path = (loc[0], loc[1:]) if loc else ("body", [])
        if item.get("type") == "json_invalid":
            detail = f"Malformed JSON: {item.get('ctx', {}).get('error', item.get('msg'))}"
            out.append(Problem(400, detail, code="parse_error", title="Malformed request."))
            continue
        # pydantic names the branch of a union it tried ("function-after[...]", "str"); not the member.
        if item.get("type") != api_errors.UNSTORABLE:
            path = [p for p in path if not p.startswith(("function-", "json-or-python")) and p != "str"]
        if where in ("query", "header", "path", "cookie"):
            name = path[0] if path else where
            out.append(Problem(400, f"{name}: {item.get('msg')}", parameter=name))
            continue
        pointer = "/" + "/".join(escape(p) for p in path) if path else DEFAULT_POINTER
        if item.get("type") == "missing":
            detail = f"'{path[-1]}' is a required field." if path else "A request body is required."
        else:
            detail = f"{'.'.join(path) or 'body'}: {item.get('msg')}"
        out.append(Problem(400, detail, pointer=pointer))
    return out or [Problem(400, "Invalid input.")]


# -- resources -------------------------------------------------------------------------------------


def base_url(request: Request) -> str:
    """The scheme, host and any mount prefix the client used: links must be absolute (the SDK's cursor
    extraction only works on full URLs)."""
    return str(request.base_url).rstrip("/")


def iso(value: datetime | None) -> str | None:
    """Klaviyo's datetime form: `2026-11-23T18:01:12+00:00`, microseconds kept when present."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat()


def resource(
    kind: str,
    ident: str,
    attributes: dict[str, Any],
    self_url: str,
    relationships: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "id": ident, "attributes": attributes}
    if relationships:
        body["relationships"] = relationships
    body["links"] = {"self": self_url}
    return body


def relationship(kind: str, ident: str) -> dict[str, Any]:
    """A to-one relationship without links (links, if present, need both `self` and `related`)."""
    return {"data": {"type": kind, "id": ident}}


def document(data: Any, request: Request, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data, "links": {"self": str(request.url)}}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def collection(
    data: list[dict[str, Any]],
    request: Request,
    next_cursor: str | None,
    included: list[dict[str, Any]] | None = None,
    prev_cursor: str | None = None,
) -> dict[str, Any]:
    """A collection document. `links.next` and `links.prev` repeat the request's query with their
    `page[cursor]`, and are left out, not null, where there is no such page: Klaviyo's spec types them as
    strings (CollectionLinks), and the SDK takes either."""
    links: dict[str, Any] = {"self": str(request.url)}
    for name, cursor in (("next", next_cursor), ("prev", prev_cursor)):
        if cursor is not None:
            query = [
                (k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "page[cursor]"
            ]
            query.append(("page[cursor]", cursor))
            links[name] = f"{base_url(request)}{request.url.path}?{urlencode(query)}"
    body: dict[str, Any] = {"data": data, "links": links}
    if included is not None:
        body["included"] = included
    return body


def includes(raw: str | None, allowed: Sequence[str]) -> list[str]:
    """The `include` list of a request. Every relationship Klaviyo lists for the endpoint is accepted (the
    resources cartback has are included, the others are empty); anything else is Klaviyo's 400."""
    wanted = list(dict.fromkeys(part.strip() for part in (raw or "").split(",") if part.strip()))
    unknown = [w for w in wanted if w not in allowed]
    if unknown:
        raise Problem(
            400, f"Invalid include {', '.join(unknown)}: use {', '.join(allowed)}", parameter="include"
        )
    return wanted


def to_many(kind: str, idents: Sequence[str]) -> dict[str, Any]:
    """A to-many relationship without links; empty where cartback has none of that kind."""
    return {"data": [{"type": kind, "id": ident} for ident in idents]}


# -- cursors ---------------------------------------------------------------------------------------


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def page_cursor(raw: str | None) -> str | None:
    """The cursor token in whichever form the SDK sends it (reference notes, "Surprises" 11): the bare
    token, `=token` (its https link extraction keeps the `=`), or the whole `links.next` URL (it leaves
    http links untouched)."""
    if raw is None:
        return None
    raw = raw.strip()
    if "://" in raw or "?" in raw:
        try:
            query = urlsplit(raw).query if "://" in raw else raw.split("?", 1)[1]
        except ValueError:  # a link it cannot read, as one with an IPv6 bracket left open
            query = ""
        found = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "page[cursor]"]
        if not found:
            raise Problem(400, "page[cursor] is not a valid cursor", parameter="page[cursor]")
        raw = found[-1]
    return raw.lstrip("=") or None


@dataclass(frozen=True)
class Cursor:
    """A page's position: the sort key of the row it starts after (a `links.next` cursor), or of the row
    it ends before (`links.prev`: the rows are read in reverse order, then turned back)."""

    key: list[Any]
    backward: bool = False


_DIRECTIONS = {"next": False, "prev": True}


def read_cursor(raw: str | None, length: int) -> Cursor | None:
    """`page[cursor]` in any of the SDK's forms, for a sort key of `length` values. A cursor of the key
    alone (as cartback wrote them before it had `links.prev`) reads forward."""
    token = page_cursor(raw)
    if token is None:
        return None
    values = decode_cursor(token, None)
    if len(values) == length + 1 and values[0] in _DIRECTIONS:
        return Cursor(values[1:], _DIRECTIONS[values[0]])
    if len(values) == length:
        return Cursor(values)
    raise Problem(400, "page[cursor] is not a valid cursor", parameter="page[cursor]")


def paginate(
    rows: list[T], more: bool, cursor: Cursor | None, key: Callable[[T], list[Any]]
) -> tuple[list[T], str | None, str | None]:
    """A page of `rows` (read from the cursor in its direction; `more`: whether the page has a
    successor there) with its next and prev cursors."""
    rows = list(rows)
    if cursor is not None and cursor.backward:
        rows.reverse()
        prev = encode_cursor(["prev", *key(rows[0])]) if more and rows else None
        following = encode_cursor(["next", *key(rows[-1])]) if rows else None
    else:
        following = encode_cursor(["next", *key(rows[-1])]) if more and rows else None
        # A page reached by a cursor has rows before it: at least the one the cursor names.
        prev = encode_cursor(["prev", *key(rows[0])]) if cursor is not None and rows else None
    return rows, following, prev


def decode_cursor(token: str, length: int | None) -> list[Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        values = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list) or (length is not None and len(values) != length):
        raise Problem(400, "page[cursor] is not a valid cursor", parameter="page[cursor]")
    return values
