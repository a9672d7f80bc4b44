"""Sending the fuzzers' requests to an in-process app without letting one that never answers stall the run.

Hypothesis retries a failing example to shrink it, so a request that waits forever would be sent again and
again after pytest-timeout's one alarm; the suite would then run until CI's own limit. Here a request gets
`ANSWER_WITHIN` seconds, and once one has hung every later request fails at once, naming it."""

from __future__ import annotations

import base64
import concurrent.futures
import secrets
from collections.abc import Iterator
from typing import Any

ANSWER_WITHIN = 60.0

_pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="fuzz-request")
_hung: list[str] = []


def request(client: Any, **kwargs: Any) -> Any:
    """`client.request(**kwargs)`, or an AssertionError when it (or an earlier request) did not answer."""
    assert not _hung, f"an earlier request never got an answer: {_hung[0]}"
    future = _pool.submit(client.request, **kwargs)
    try:
        return future.result(timeout=ANSWER_WITHIN)
    except concurrent.futures.TimeoutError:
        _hung.append(f"{kwargs.get('method')} {kwargs.get('url')}: {str(kwargs)[:500]}")
        raise AssertionError(f"no answer within {ANSWER_WITHIN:.0f} s: {_hung[0]}") from None


def _new_workspace_key(tx: Any) -> str:
    from cartback.core.clock import system_clock
    from cartback.store import workspaces

    ws = workspaces.create_workspace(tx, f"fuzz-{secrets.token_hex(4)}", system_clock.now())
    return workspaces.create_api_key(tx, ws.id, system_clock.now())[1]


def new_key(api: Any) -> str:
    """The API key of a new, empty workspace in the app `api` serves."""
    return str(api.app.state.services.db.write_sync(_new_workspace_key))


def serve(url: str) -> Iterator[Any]:
    """The app on a real database, rate limits off, a fresh workspace's key as Bearer on every request."""
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings
    from cartback.store.db import Database

    db = Database(url)
    db.migrate()

    key = db.write_sync(_new_workspace_key)
    db.close()
    # Durability is not under test here; NORMAL spares SQLite an fsync per request. Thousands of requests
    # with one key would run into the default rate limits, which tests/integration/test_ratelimits.py checks.
    settings_ = Settings(
        database_url=url, sqlite_synchronous="NORMAL", rate_limit_burst=0, rate_limit_steady=0
    )
    with TestClient(create_app(settings_, run_worker=False), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def send(case: Any, api: Any, surface: str, *, key: str | None = None, sdk_revision: bool = False) -> Any:
    """The case sent to `api` with `key` (the fixture's by default) as the surface's SDKs send it
    ("sequenzy": Bearer, "klaviyo": Klaviyo-API-Key, "segment": the Basic user name). `sdk_revision`
    replaces the generated Klaviyo `revision` header with the SDK's, so that a chain gets past it."""
    from cartback.api.klaviyo import SDK_REVISION

    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    key = key or api.headers["Authorization"].removeprefix("Bearer ")
    headers = dict(kwargs.get("headers") or {})
    if surface == "sequenzy":
        headers["Authorization"] = f"Bearer {key}"
    elif surface == "klaviyo":
        headers["Authorization"] = f"Klaviyo-API-Key {key}"
        if sdk_revision:
            headers["revision"] = SDK_REVISION
    elif surface == "segment":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    kwargs["headers"] = headers
    # Schemathesis speaks `requests`; the TestClient is httpx, which wants raw bodies as `content`.
    kwargs.pop("cookies", None)  # the API reads none; per-request cookies are deprecated in httpx
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    return request(api, **kwargs)


def assert_envelope(response: Any, surface: str) -> None:
    """An error answer is the error envelope of the surface it came through."""
    if response.status_code < 400:
        return
    if surface == "klaviyo":
        errors = response.json()["errors"]
        assert errors, response.text
        for error in errors:
            assert all(isinstance(error[k], str) and error[k] for k in ("id", "code", "title", "detail"))
            assert error["status"] == response.status_code and isinstance(error["source"], dict)
    else:
        body = response.json()
        assert body["success"] is False, body
        message = body["message"] if surface == "segment" else body["error"]
        assert isinstance(message, str) and message.strip(), body
