"""A refusal of a rate limit or budget (429) is answered CARTBACK_REFUSAL_DELAY_SECONDS late, never later
than its Retry-After, and holds nothing else up while it waits: a client that retries at once is slowed
down instead of answered faster (api/refusals.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.delivery import render_budget
from cartback.settings import Settings
from cartback.testing import FrozenClock

START = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
HEAVY = "{% for i in (1..99) %}{% for j in (1..99) %}x{% endfor %}{% endfor %}"


@contextmanager
def client(db_url: str, **settings: object) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, **settings), clock=FrozenClock(START), run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def timed(send: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    answer = send()
    return answer, time.perf_counter() - started


def test_refusal_delay_a_rate_limited_request_waits_and_holds_no_other_request(db_url, make_workspace):
    tenant, other = make_workspace(), make_workspace()
    with client(db_url, rate_limit_burst=1, rate_limit_steady=0, refusal_delay_seconds=0.8) as http:
        assert http.get("/api/v1/subscribers", headers=bearer(tenant.key)).status_code == 200
        refused: list[tuple[object, float]] = []
        waiting = threading.Thread(
            target=lambda: refused.append(
                timed(lambda: http.get("/api/v1/subscribers", headers=bearer(tenant.key)))
            )
        )
        waiting.start()
        time.sleep(0.2)
        # While the refusal waits, another key's request is answered at once.
        answer, seconds = timed(lambda: http.get("/api/v1/subscribers", headers=bearer(other.key)))
        assert answer.status_code == 200 and seconds < 0.5  # type: ignore[attr-defined]
        assert waiting.is_alive()
        waiting.join()
        ((answer, seconds),) = refused
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"  # type: ignore[attr-defined]
        assert seconds >= 0.8


def test_refusal_delay_is_never_longer_than_retry_after(db_url, make_workspace):
    tenant = make_workspace()
    with client(db_url, rate_limit_burst=1, rate_limit_steady=0, refusal_delay_seconds=5) as http:
        assert http.get("/api/v1/subscribers", headers=bearer(tenant.key)).status_code == 200
        answer, seconds = timed(lambda: http.get("/api/v1/subscribers", headers=bearer(tenant.key)))
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"  # type: ignore[attr-defined]
        assert 1 <= seconds < 3


def preview(http: TestClient, key: str) -> object:
    return http.post(
        "/api/v1/transactional/send",
        json={"to": "me@example.com", "subject": "t", "body": HEAVY, "preview": True},
        headers=bearer(key),
    )


@pytest.mark.parametrize("delay", [0.8, 0.0])
def test_refusal_delay_applies_to_the_render_budget_and_zero_turns_it_off(db_url, make_workspace, delay):
    heavy = make_workspace()
    settings = {"rate_limit_burst": 0, "rate_limit_steady": 0, "render_seconds_per_minute": 3}
    try:
        with client(db_url, **settings, refusal_delay_seconds=delay) as http:
            for _ in range(400):
                answer, seconds = timed(lambda: preview(http, heavy.key))
                if answer.status_code != 200:  # type: ignore[attr-defined]
                    break
            assert answer.status_code == 429  # type: ignore[attr-defined]
            assert (seconds >= 0.8) if delay else (seconds < 0.5)
    finally:
        render_budget.BUDGET.configure(0)
