"""Errors become the envelope of the API they came through. Each surface registers a renderer for its
path prefix; the exception handlers and the body-limit middleware both ask `render` for a response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import compile_path

from cartback import errors
from cartback.api import refusals, scopes

Renderer = Callable[[errors.CartbackError], Response]


class ValidationFailed(errors.InvalidInput):
    """A request FastAPI could not validate. Carries pydantic's error list, so an envelope that points at
    each bad member (Klaviyo's `source.pointer`) can; others use the one-line message."""

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems


# The pydantic-style error type of a value refused by the storable-values rule (api/bodies.py); its `loc`
# is the value's path in the body as sent, not a pydantic path with union branch names.
UNSTORABLE = "unstorable_value"

_renderers: list[tuple[str, Renderer]] = []


def register(prefix: str, renderer: Renderer) -> None:
    """Route errors under `prefix` to `renderer`; the longest matching prefix wins. Registering a prefix
    again (every create_app does) replaces its renderer rather than growing the list."""
    _renderers[:] = [item for item in _renderers if item[0] != prefix]
    _renderers.append((prefix, renderer))
    _renderers.sort(key=lambda item: len(item[0]), reverse=True)


def _default(exc: errors.CartbackError) -> Response:
    return JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status_code)


def render(path: str, exc: errors.CartbackError) -> Response:
    for prefix, renderer in _renderers:
        if path == prefix or path.startswith(prefix + "/"):
            return renderer(exc)
    return _default(exc)


async def answer(path: str, exc: errors.CartbackError, refusal_delay: float) -> Response:
    """What a request to `path` that raised `exc` is answered: its envelope, with Retry-After when the
    error names one; a budget's refusal (the render budget's, say) is sent `refusal_delay` late."""
    response = render(path, exc)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, errors.RateLimited):
        await refusals.wait(refusal_delay, exc.retry_after)
    return response


def describe_validation(exc_errors: Any) -> str:
    """'customer.email: Field required; items.0.quantity: ...' from pydantic's error list."""
    parts = []
    for err in exc_errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        if err.get("type") == "json_invalid":
            parts.append(f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg'))}")
            continue
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts) or "invalid request"


def _with_position(problem: dict[str, Any], document: object) -> dict[str, Any]:
    """A malformed-JSON problem with the line and column of its character offset (FastAPI gives only
    the offset, as the last part of `loc`), counted as an editor would: from 1. `document` is the text
    the JSON parser read (RequestValidationError.body), whose characters the offset counts."""
    loc = problem.get("loc") or ()
    offset = loc[-1] if loc else None
    if problem.get("type") != "json_invalid" or not isinstance(offset, int) or not isinstance(document, str):
        return problem
    text = document[:offset]
    line, column = text.count("\n") + 1, offset - (text.rfind("\n") + 1) + 1
    ctx = dict(problem.get("ctx") or {})
    ctx["error"] = f"{ctx.get('error', problem.get('msg'))} at line {line}, column {column}"
    return {**problem, "ctx": ctx}


def _body_error(cause: BaseException) -> str | None:
    """Name what was wrong with a body FastAPI could not parse (it says only 'error parsing the body')."""
    if isinstance(cause, UnicodeDecodeError):
        return "malformed JSON body: not valid UTF-8"
    if isinstance(cause, RecursionError):
        return "malformed JSON body: nested too deeply"
    return None


_STATUS_ERRORS: dict[int, type[errors.CartbackError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    429: errors.RateLimited,
}

# The order an Allow header lists methods in.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of `app` answers at `path`, for a 405's Allow header (RFC 9110 15.5.6).
    Starlette's names only the first route whose path matches, and several routes share a path here:
    GET, PATCH and DELETE of /api/v1/subscribers/{email} are three. The table is built at the first 405."""
    table: list[tuple[Any, frozenset[str]]] | None = getattr(app.state, "route_methods", None)
    if table is None:
        table = [
            (compile_path(route.path)[0], frozenset(route.methods))
            for route in routing.iter_route_contexts(app.routes)
            if route.methods and route.path
        ]
        app.state.route_methods = table
    found: set[str] = set()
    for pattern, methods in table:
        if pattern.match(path):
            found |= methods
    return sorted(found, key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else 99, m))


# What the handlers below and the body-limit middleware can answer on any API operation, documented in
# /openapi.json in place of FastAPI's 422, which this module turns into a 400 and so is never sent.
_DOCUMENTED: dict[str, str] = {
    "400": "Malformed JSON, a wrong shape or an invalid value",
    "401": "Missing, unknown, revoked or expired API key",
    "403": "The key's scopes do not allow this",
    "404": "No such object in this workspace",
    "409": "The request conflicts with stored state",
    "429": "The key's rate limit is spent; retry after Retry-After seconds (docs/ratelimits.md)",
    "503": "The store could not commit; retry",
}
_DOCUMENTED_WITH_BODY = {
    "413": "Request body over CARTBACK_MAX_BODY_BYTES",
    "415": "Request body is not JSON",
}


def _document_errors(app: FastAPI) -> None:
    """Make the generated OpenAPI document list the error statuses the API really answers."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        for path, item in schema.get("paths", {}).items():
            if not any(path == prefix or path.startswith(prefix + "/") for prefix, _ in _renderers):
                continue
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                responses.pop("422", None)
                operation.setdefault(scopes.OPENAPI_KEY, scopes.default_for(method))
                documented = dict(_DOCUMENTED)
                if method in ("post", "put", "patch", "delete"):
                    documented.update(_DOCUMENTED_WITH_BODY)
                for status, description in documented.items():
                    responses.setdefault(
                        status,
                        {
                            "description": description,
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_errors(app)

    @app.exception_handler(errors.CartbackError)
    async def _cartback_error(request: Request, exc: errors.CartbackError) -> Response:
        return await answer(request.url.path, exc, refusals.delay_of(request))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = list(exc.errors())
        # Not request.body(): a route may have read the body through a request of its own (Segment's
        # decoding one), and reading it again here would wait for a body that never comes.
        problems = [_with_position(p, exc.body) for p in problems]
        return render(request.url.path, ValidationFailed(describe_validation(problems), problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        cls = _STATUS_ERRORS.get(exc.status_code)
        allow = None
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(request.app, request.url.path))
            message = f"Method not allowed: {request.method} {request.url.path} accepts {allow}"
            err: errors.CartbackError = errors.MethodNotAllowed(message)
        elif cls is None:
            err = errors.CartbackError(str(exc.detail))
            err.status_code = exc.status_code
            err.code = "http_error"
        else:
            detail = exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else None
            if exc.status_code == 400 and exc.__cause__ is not None:
                detail = _body_error(exc.__cause__) or detail
            err = cls(detail)
            if exc.status_code == 404 and detail is None:
                err = errors.NotFound(f"no route for {request.method} {request.url.path}")
        response = render(request.url.path, err)
        if exc.headers:
            response.headers.update(exc.headers)
        if allow is not None:
            response.headers["Allow"] = allow
        return response
