"""The Klaviyo-compatible API under /api: the official `klaviyo-api` SDK works against it by changing its
host (`KlaviyoAPI(api_key=K, test_host=URL)`).

Every request needs `Authorization: Klaviyo-API-Key <key>` (a cartback API key; `Bearer <key>`, the
SDK's OAuth form, is accepted too) and a `revision` header, as Klaviyo requires. Errors are JSON:API
`{"errors": [{id, status, code, title, detail, source}]}` (see `jsonapi.render_error`). The error
renderer is registered for `/api`; Sequenzy's, registered for `/api/v1`, is longer and keeps its tree.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request

from cartback import errors
from cartback.api import bodies, deps, lean, routing, scopes
from cartback.api import errors as api_errors
from cartback.api.klaviyo import jsonapi

PREFIX = "/api"
REVISION_PATTERN = r"^\d{4}-\d{2}-\d{2}(\.pre)?$"
# What the official SDK pins; tests and examples send it.
SDK_REVISION = "2026-10-15"
# The Authorization schemes a key may come in (lower case).
AUTH_SCHEMES = ("klaviyo-api-key", "bearer")


async def principal(request: Request) -> deps.Principal:
    """`Klaviyo-API-Key <key>` (or `Bearer <key>`); the key's workspace scopes every query."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() not in AUTH_SCHEMES or not token.strip():
        raise jsonapi.Problem(
            401, "Missing or invalid private key: send 'Authorization: Klaviyo-API-Key <key>'."
        )
    try:
        who = await deps.services_of(request).keys.authenticate(token.strip())
    except errors.Unauthorized as exc:
        raise jsonapi.Problem(
            401,
            f"Incorrect authentication credentials: {exc.message}.",
            code="authentication_failed",
            title="Incorrect authentication credentials.",
        ) from exc
    return scopes.check(request, who)


async def revision(
    value: str = Header(
        alias="revision",
        pattern=REVISION_PATTERN,
        description="API revision, a date such as 2026-10-15 (Klaviyo requires it on every request)",
    ),
) -> str:
    return value


def _error_responses() -> dict[int | str, dict[str, Any]]:
    """Document every error status in Klaviyo's media type, so generated clients and schema checks
    expect what is really sent."""
    schema = {"type": "object", "required": ["errors"], "properties": {"errors": {"type": "array"}}}
    described = {
        400: "Invalid input: a wrong shape (source.pointer), a bad parameter or header (source.parameter)",
        401: "Missing or unknown API key",
        403: "The key's scopes do not allow this",
        404: "No such object in this workspace",
        409: "Conflicts with stored state (duplicate_profile)",
        413: "Request body too large",
        415: "Request body is not JSON",
        429: "The key's rate limit is spent; retry after Retry-After seconds (docs/ratelimits.md)",
        503: "The store could not commit; retry",
    }
    return {
        status: {"description": text, "content": {jsonapi.MEDIA_TYPE: {"schema": schema}}}
        for status, text in described.items()
    }


def router() -> APIRouter:
    from cartback.api.klaviyo import aggregates, events, metrics, profiles

    api = routing.PrefixRouter(
        prefix=PREFIX,
        dependencies=[Depends(principal), Depends(revision), Depends(bodies.storable)],
        default_response_class=jsonapi.JsonApiResponse,
        responses=_error_responses(),
    )
    for module in (aggregates, events, metrics, profiles):
        api.include_router(module.router)
    return api


def install(app: FastAPI) -> None:
    from cartback.api.klaviyo import events

    api_errors.register(PREFIX, jsonapi.render_error)
    # The event ingest's cheaper way in (api/lean.py).
    lean.install(app, events.lean_routes(PREFIX))
    app.include_router(router())
