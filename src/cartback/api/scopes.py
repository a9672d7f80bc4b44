"""What an API key may do. Every API route needs one scope:

    events:write  ingest only: what a storefront's backend holds (checkouts, orders, events, sign-ups)
    read          every GET
    admin         everything else (sequences, templates, lists, suppressions, webhooks, sends), and it
                  implies the other two: an admin key is a full-access key

A route needs `read` for GET/HEAD and `admin` for any other method unless it says otherwise with
`**scopes.requires(scopes.EVENTS_WRITE)` in its decorator, so the ingest routes are the only ones that name a
scope. The choice is stored in the route's OpenAPI operation (`x-cartback-scope`), where /openapi.json shows
it, and checked by each surface's authentication dependency through `check`. docs/apikeys.md has the table.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from cartback import errors
from cartback.api import deps

EVENTS_WRITE = "events:write"
READ = "read"
ADMIN = "admin"

OPENAPI_KEY = "x-cartback-scope"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def requires(scope: str) -> dict[str, Any]:
    """Keyword arguments for a route decorator that make the route need `scope` instead of the default."""
    if scope not in (EVENTS_WRITE, READ, ADMIN):
        raise ValueError(f"unknown scope {scope!r}")
    return {"openapi_extra": {OPENAPI_KEY: scope}}


def default_for(method: str) -> str:
    return READ if method.upper() in _READ_METHODS else ADMIN


def required(request: Request) -> str:
    """The scope the matched route needs."""
    extra = getattr(request.scope.get("route"), "openapi_extra", None)
    if extra and OPENAPI_KEY in extra:
        return str(extra[OPENAPI_KEY])
    return default_for(request.method)


def allows(granted: tuple[str, ...], needed: str) -> bool:
    return needed in granted or ADMIN in granted


def reads_back(principal: deps.Principal) -> bool:
    """Whether an answer may show this key stored data. An ingest route answers an `events:write`-only key
    with ids and flags alone: a key that may write into a record must not read it back (docs/apikeys.md);
    otherwise a leaked storefront key would read any shopper's profile by submitting their address."""
    return allows(principal.scopes, READ)


def check(request: Request, principal: deps.Principal) -> deps.Principal:
    """Return the principal if its key may call this route, else raise Forbidden naming the scope."""
    needed = required(request)
    if not allows(principal.scopes, needed):
        raise errors.Forbidden(
            f"this API key lacks the '{needed}' scope that {request.method} {request.url.path} needs "
            f"(it has: {', '.join(principal.scopes) or 'none'})"
        )
    return principal
