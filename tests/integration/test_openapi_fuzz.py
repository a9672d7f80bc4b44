"""Schemathesis fuzzes every /api/v1 (Sequenzy) and /v1 (Segment) operation of the in-process app,
authenticated with a valid key, on both databases: valid and invalid inputs alike must never produce a 5xx,
every status and body must be the documented ones, and every error must be the envelope of its API.

Only response checks run. Request-side checks (does the app accept every schema-valid body and refuse every
invalid one) are left out: the OpenAPI document is generated from the pydantic models and cannot express
the validators (email, currency, history window) that the API rightly enforces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests import fuzzing

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


@pytest.fixture(scope="module")
def sqlite_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from fuzzing.serve(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'cartback.db'}")


@pytest.fixture(scope="module")
def postgres_api(pg_module_database: str) -> Iterator[Any]:
    yield from fuzzing.serve(pg_module_database)


def check(case: Any, api: Any, *, segment: bool = False, klaviyo: bool = False) -> None:
    surface = "klaviyo" if klaviyo else "segment" if segment else "sequenzy"
    response = fuzzing.send(case, api, surface)
    case.validate_response(response, checks=CHECKS)
    fuzzing.assert_envelope(response, surface)


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
