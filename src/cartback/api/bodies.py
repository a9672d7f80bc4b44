"""The storable-values rule (`cartback.values`) applied to every API request body, once, as a dependency
of each surface's router: after the key is checked and before any route reads the body.

A value the rule refuses is a `ValidationFailed` naming its place in the body, so each surface writes it
in its own envelope: Sequenzy's and Segment's message say `customAttributes.n: ...`, Klaviyo's error
object points at `/data/attributes/properties/n`.
"""

from __future__ import annotations

from fastapi import Request

from cartback import values
from cartback.api import errors as api_errors


async def storable(request: Request) -> None:
    """Refuse a JSON body holding a value cartback cannot store exactly. Reads the body FastAPI already
    parsed for the route (Starlette keeps it), so it costs one walk, not a second parse."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return  # the route reads no body
    try:
        payload = await request.json()
    except Exception:  # not JSON: the route itself refuses it with its own message
        return
    found = values.find_unstorable(payload)
    if found is None:
        return
    # The path may itself hold the lone surrogate refused (a key); the answer must still be UTF-8.
    path = tuple(_printable(part) for part in found.path)
    problem = {"loc": ("body", *path), "msg": found.reason, "type": api_errors.UNSTORABLE}
    raise api_errors.ValidationFailed(api_errors.describe_validation([problem]), [problem])


def _printable(part: str | int) -> str | int:
    if isinstance(part, int) or part.isascii():
        return part
    return part.encode("utf-8", "backslashreplace").decode("utf-8")
