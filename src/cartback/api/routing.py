"""A router that answers "not mine" for a path outside its prefix without trying its routes.

FastAPI tries the app's included routers in order, and an included router tries each of its routes in
turn, a few microseconds each, before saying it has none for the path: a Klaviyo event (`/api/events`)
paid about 180 µs per request for the 67 Sequenzy routes under `/api/v1` that come first. Every route of
a router lies under its prefix, so a path outside it cannot match one of them (fully, or partially for
another method) and the answer is the same."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope


class PrefixRouter(APIRouter):
    """An APIRouter with a prefix, to include in the app at its root (`app.include_router(r)` with no
    prefix of its own: the check compares the path with this router's prefix alone)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not _route_path(scope).startswith(self.prefix):
            return Match.NONE, {}
        return super().matches(scope)


def _route_path(scope: Scope) -> str:
    """The path routes are matched against: without the root path it starts with (Starlette's rule)."""
    path: str = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        return path[len(root_path) :]
    return path
