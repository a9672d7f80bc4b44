"""Schemathesis fuzzes every /api/v1 (Sequenzy) and /v1 (Segment) operation of the in-process app,
authenticated with a valid key, on both databases: valid and invalid inputs alike must never produce a 5xx,
every status and body must be the documented ones, and every error must be the envelope of its API.

Only response checks run. Request-side checks (does the app accept every schema-valid body and refuse every
invalid one) are left out: the OpenAPI document is generated from the pydantic models and cannot express
the validators (email, currency, history window) that the API rightly enforces."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests import fuzzing

from cartback.store.db import Database

PREFIX = "/api/v1"
SEGMENT_PREFIX = "/v1"
# Klaviyo's tree is /api/..., beside (not inside) Sequenzy's /api/v1/...
KLAVIYO_PATHS = "/api/(?!v1/)"


def _document() -> dict[str, Any]:
    from cartback.app import create_app
    from cartback.settings import Settings

    app = create_app(Settings(database_url="sqlite://"), migrate=False)
    try:
        return app.openapi()
    finally:
        app.state.services.db.close()


def _schema(*, coverage: bool, prefix: str = PREFIX, path_regex: str | None = None) -> Any:
    loaded = schemathesis.openapi.from_dict(_document()).include(path_regex=path_regex or f"^{prefix}/")
    # The coverage phase sends each operation its boundary values, every documented enum member and
    # wrong methods, a couple of thousand requests in all: run it on PostgreSQL only, where values that
    # SQLite stores without complaint (NUL, over-long text) fail. Random fuzzing runs on both.
    loaded.config.phases.coverage.enabled = coverage
    loaded.config.phases.coverage.unexpected_methods = {"options", "put", "delete"}
    return loaded


sqlite_schema = _schema(coverage=False)
postgres_schema = _schema(coverage=True)
segment_sqlite_schema = _schema(coverage=False, prefix=SEGMENT_PREFIX)
segment_postgres_schema = _schema(coverage=True, prefix=SEGMENT_PREFIX)
klaviyo_sqlite_schema = _schema(coverage=False, path_regex=f"^{KLAVIYO_PATHS}")
klaviyo_postgres_schema = _schema(coverage=True, path_regex=f"^{KLAVIYO_PATHS}")

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _client(url: str) -> Iterator[Any]:
    """The app on a real database, with a fresh workspace's key on every request."""
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.core.clock import system_clock
    from cartback.settings import Settings
    from cartback.store import workspaces

    db = Database(url)
    db.migrate()

    def create(tx: workspaces.Tx) -> str:
        ws = workspaces.create_workspace(tx, f"fuzz-{secrets.token_hex(4)}", system_clock.now())
        return workspaces.create_api_key(tx, ws.id, system_clock.now())[1]

    key = db.write_sync(create)
    db.close()
    # Durability is not under test here; NORMAL spares SQLite an fsync per request. Thousands of requests
    # with one key would run into the default rate limits, which tests/integration/test_ratelimits.py checks.
    settings_ = Settings(
        database_url=url, sqlite_synchronous="NORMAL", rate_limit_burst=0, rate_limit_steady=0
    )
    with TestClient(create_app(settings_, run_worker=False), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


@pytest.fixture(scope="module")
def sqlite_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from _client(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'cartback.db'}")


@pytest.fixture(scope="module")
def postgres_api(pg_module_database: str) -> Iterator[Any]:
    yield from _client(pg_module_database)


def check(case: Any, api: Any, *, segment: bool = False, klaviyo: bool = False) -> None:
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    if klaviyo:
        # The Klaviyo SDK's form of the same key.
        key = api.headers["Authorization"].removeprefix("Bearer ")
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": f"Klaviyo-API-Key {key}"}
    if segment:
        # Segment's clients send the key as the HTTP Basic user name.
        key = api.headers["Authorization"].removeprefix("Bearer ")
        basic = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "Authorization": basic}
    # Schemathesis speaks `requests`; the TestClient is httpx, which wants raw bodies as `content`.
    kwargs.pop("cookies", None)  # the API reads none; per-request cookies are deprecated in httpx
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    response = fuzzing.request(api, **kwargs)

    case.validate_response(response, checks=CHECKS)

    if response.status_code >= 400 and klaviyo:
        errors = response.json()["errors"]
        assert errors, response.text
        for error in errors:
            assert all(isinstance(error[k], str) and error[k] for k in ("id", "code", "title", "detail"))
            assert error["status"] == response.status_code and isinstance(error["source"], dict)
    elif response.status_code >= 400:
        body = response.json()
        assert body["success"] is False, body
        message = body["message"] if segment else body["error"]
        assert isinstance(message, str) and message.strip(), body


@sqlite_schema.parametrize()
@FUZZ
def test_openapi_fuzz_sqlite_no_server_error_and_documented_responses(case: Any, sqlite_api: Any) -> None:
    check(case, sqlite_api)


@postgres_schema.parametrize()
@FUZZ
def test_openapi_fuzz_postgres_no_server_error_and_documented_responses(case: Any, postgres_api: Any) -> None:
    check(case, postgres_api)


@segment_sqlite_schema.parametrize()
@FUZZ
def test_openapi_fuzz_segment_sqlite_no_server_error_and_documented_responses(
    case: Any, sqlite_api: Any
) -> None:
    check(case, sqlite_api, segment=True)


@segment_postgres_schema.parametrize()
@FUZZ
def test_openapi_fuzz_segment_postgres_no_server_error_and_documented_responses(
    case: Any, postgres_api: Any
) -> None:
    check(case, postgres_api, segment=True)


@klaviyo_sqlite_schema.parametrize()
@FUZZ
def test_openapi_fuzz_klaviyo_sqlite_no_server_error_and_documented_responses(
    case: Any, sqlite_api: Any
) -> None:
    check(case, sqlite_api, klaviyo=True)


@klaviyo_postgres_schema.parametrize()
@FUZZ
def test_openapi_fuzz_klaviyo_postgres_no_server_error_and_documented_responses(
    case: Any, postgres_api: Any
) -> None:
    check(case, postgres_api, klaviyo=True)
