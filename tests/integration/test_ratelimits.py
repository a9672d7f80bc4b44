"""Rate limits through the real app on SQLite and PostgreSQL: 429 in the surface's envelope with integer
Retry-After and RateLimit headers, other keys untouched, and one budget for several nodes (PostgreSQL) or
for the processes of `serve --processes` (SQLite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from cartback import metrics
from cartback.app import create_app
from cartback.settings import Settings
from cartback.store import ratelimits as store
from cartback.store.db import Database
from cartback.testing import FrozenClock

START = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
CHECKOUT = {
    "checkoutId": "chk-limit",
    "customer": {"email": "limit@example.com"},
    "totalCents": 1000,
    "currency": "USD",
}


@contextmanager
def client(
    db_url: str, clock: FrozenClock, *, burst: int, steady: int, processes: int = 1
) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url, rate_limit_burst=burst, rate_limit_steady=steady, processes=processes
    )
    with TestClient(create_app(settings, clock=clock, run_worker=False), raise_server_exceptions=False) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_ratelimits_burst_past_the_limit_gets_429_with_headers_in_the_sequenzy_envelope(
    db_url, make_workspace
):
    clock = FrozenClock(START)
    tenant, other = make_workspace(), make_workspace()
    with client(db_url, clock, burst=5, steady=0) as http:
        answers = [
            http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(tenant.key)) for _ in range(5)
        ]
        assert [r.status_code for r in answers] == [200] * 5
        assert [r.headers["RateLimit-Remaining"] for r in answers] == ["4", "3", "2", "1", "0"]
        assert {(r.headers["RateLimit-Limit"], r.headers["RateLimit-Reset"]) for r in answers} == {("5", "1")}
        assert answers[0].headers["RateLimit-Policy"] == "5;w=1"

        refused = http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(tenant.key))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("5", "0")
        assert refused.headers["RateLimit-Reset"] == "1"
        body = refused.json()
        assert body["success"] is False and body["code"] == "rate_limited"
        assert "5 requests per second" in body["error"]
        # Reads count against the same key's budget on this surface.
        assert http.get("/api/v1/subscribers", headers=bearer(tenant.key)).status_code == 429

        # Another key is unaffected.
        assert http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(other.key)).status_code == 200

        clock.advance(seconds=1)
        again = http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(tenant.key))
        assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "4"


def test_ratelimits_steady_limit_retry_after_counts_to_the_end_of_the_minute(db_url, make_workspace):
    clock = FrozenClock(START)
    tenant = make_workspace()
    with client(db_url, clock, burst=100, steady=3) as http:
        for _ in range(3):
            assert http.get("/api/v1/subscribers", headers=bearer(tenant.key)).status_code == 200
        clock.advance(seconds=15)
        refused = http.get("/api/v1/subscribers", headers=bearer(tenant.key))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "45"
        assert refused.headers["RateLimit-Limit"] == "3"
        assert "3 requests per minute" in refused.json()["error"]


def test_ratelimits_requests_without_a_valid_key_are_not_counted_and_get_401(db_url, make_workspace):
    clock = FrozenClock(START)
    with client(db_url, clock, burst=1, steady=0) as http:
        for _ in range(3):
            res = http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer("cb_made_up"))
            assert res.status_code == 401
            assert "ratelimit-limit" not in res.headers
        assert http.get("/healthz").status_code == 200


def test_ratelimits_revoked_and_expired_keys_are_answered_401_not_429(db_url, make_workspace, db):
    from cartback.store import workspaces

    clock = FrozenClock(START)
    tenant = make_workspace()
    with client(db_url, clock, burst=1, steady=0) as http:
        db.write_sync(lambda tx: workspaces.revoke_api_key(tx, tenant.id, _only_key(tx, tenant.id), START))
        for _ in range(2):
            assert (
                http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(tenant.key)).status_code == 401
            )


def _only_key(tx, workspace_id: str) -> str:  # type: ignore[no-untyped-def]
    from cartback.store import workspaces

    (key,) = workspaces.list_api_keys(tx, workspace_id)
    return key.id


def test_ratelimits_off_when_both_limits_are_zero(db_url, make_workspace):
    tenant = make_workspace()
    with client(db_url, FrozenClock(START), burst=0, steady=0) as http:
        res = http.post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(tenant.key))
        assert res.status_code == 200 and "ratelimit-limit" not in res.headers


def test_ratelimits_two_nodes_share_one_budget(db_url, make_workspace, tmp_path, monkeypatch):
    """Two apps on one database: one key's budget is spent across both. On PostgreSQL they stand for two
    API nodes; on SQLite for two processes of `serve --processes 2`, which tell each app so (and find the
    directory of shared metrics that supervisor.py would make)."""
    monkeypatch.setenv(metrics.MULTIPROCESS_DIR, str(tmp_path))
    clock = FrozenClock(START)
    tenant = make_workspace()
    with (
        client(db_url, clock, burst=7, steady=0, processes=2) as node_a,
        client(db_url, clock, burst=7, steady=0, processes=2) as node_b,
    ):
        statuses = [
            (node_a if i % 2 else node_b).post("/api/v1/checkouts", json=CHECKOUT, headers=bearer(tenant.key))
            for i in range(14)
        ]
        assert [r.status_code for r in statuses].count(200) == 7
        assert all(r.headers["Retry-After"] == "1" for r in statuses if r.status_code == 429)


def test_ratelimits_concurrent_leases_grant_exactly_the_limit(db_url: str):
    """Eight threads lease 3 at a time from one bucket: together they get exactly the limit, never more."""
    db = Database(db_url)
    bucket = f"test {datetime.now(UTC).timestamp()}"
    granted: list[int] = []
    lock = threading.Lock()

    def lease_until_refused() -> None:
        while True:
            got = store.lease(db, bucket, 3, 1_000_000, 0, 0, 100, 1 << 40)[0]
            with lock:
                granted.append(got)
            if got == 0:
                return

    threads = [threading.Thread(target=lease_until_refused) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.close()
    assert sum(granted) == 100
    assert max(granted) == 3


def test_ratelimits_lease_refund_and_window_reset(db_url: str):
    db = Database(db_url)
    bucket = f"refund {datetime.now(UTC).timestamp()}"
    second = 60 * 1_000_000  # the first second of a minute
    try:
        assert store.lease(db, bucket, 8, second, 0, 0, 1000, 20) == (8, second, 8, second // 60, 8)
        # A new second: the 8 of the last second count no more there; 7 unspent go back to the minute.
        assert store.lease(db, bucket, 8, second + 1, 7, second // 60, 1000, 20) == (
            8,
            second + 1,
            8,
            second // 60,
            9,
        )
        # A refund for another minute is ignored; the minute has 11 left.
        assert store.lease(db, bucket, 50, second + 2, 5, 12, 1000, 20)[0] == 11
        assert store.lease(db, bucket, 1, second + 3, 0, 0, 1000, 20)[0] == 0
        # The next minute starts from zero.
        assert store.lease(db, bucket, 5, second + 60, 0, 0, 1000, 20)[:3] == (5, second + 60, 5)
    finally:
        db.close()


def _segment_auth(key: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def _segment_batch(n: int) -> dict[str, object]:
    return {
        "batch": [
            {"type": "track", "event": "Page Viewed", "userId": "u1", "messageId": f"m-{n}", "properties": {}}
        ]
    }


def test_ratelimits_segment_burst_gets_429_in_segments_envelope(db_url, make_workspace):
    clock = FrozenClock(START)
    tenant, other = make_workspace(), make_workspace()
    with client(db_url, clock, burst=3, steady=0) as http:
        answers = [
            http.post("/v1/batch", json=_segment_batch(n), headers=_segment_auth(tenant.key))
            for n in range(4)
        ]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert answers[0].headers["RateLimit-Remaining"] == "2"
        refused = answers[-1]
        assert refused.headers["Retry-After"] == "1"
        assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("3", "0")
        body = refused.json()
        assert body["success"] is False and body["code"] == "rate_limited"
        assert "3 requests per second" in body["message"]
        # The same key has a budget of its own on the Sequenzy surface, and another key is unaffected.
        assert http.get("/api/v1/subscribers", headers=bearer(tenant.key)).status_code == 200
        other_answer = http.post("/v1/batch", json=_segment_batch(9), headers=_segment_auth(other.key))
        assert other_answer.status_code == 200


def _klaviyo_event(n: int) -> dict[str, object]:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {},
                "unique_id": f"k-{n}",
                "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed Product"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "k@example.com"}}},
            },
        }
    }


def _klaviyo_auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Klaviyo-API-Key {key}", "revision": "2026-10-15"}


def test_ratelimits_klaviyo_burst_gets_429_in_jsonapi_errors(db_url, make_workspace):
    clock = FrozenClock(START)
    tenant, other = make_workspace(), make_workspace()
    with client(db_url, clock, burst=3, steady=0) as http:
        answers = [
            http.post("/api/events", json=_klaviyo_event(n), headers=_klaviyo_auth(tenant.key))
            for n in range(4)
        ]
        assert [r.status_code for r in answers] == [202, 202, 202, 429]
        assert answers[0].headers["RateLimit-Remaining"] == "2"
        refused = answers[-1]
        assert refused.headers["Retry-After"] == "1"
        assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("3", "0")
        (error,) = refused.json()["errors"]
        assert (error["status"], error["code"]) == (429, "throttled")
        assert "3 requests per second" in error["detail"]
        # The same key's Sequenzy budget (/api/v1) is its own, and another key is unaffected.
        assert http.get("/api/v1/subscribers", headers=bearer(tenant.key)).status_code == 200
        res = http.post("/api/events", json=_klaviyo_event(9), headers=_klaviyo_auth(other.key))
        assert res.status_code == 202


def test_a_request_the_lean_front_leaves_to_the_route_is_counted_once(db_url, make_workspace):
    # The front counts a checkout before reading its body; one it then leaves to the FastAPI route (a body
    # the model refuses) must not be counted again behind it, nor escape the count.
    clock = FrozenClock(START)
    tenant = make_workspace()
    bad = {**CHECKOUT, "customer": {"email": "not an address"}}
    with client(db_url, clock, burst=6, steady=0) as http:
        answers = [
            http.post("/api/v1/checkouts", json=body, headers=bearer(tenant.key))
            for body in (CHECKOUT, bad, CHECKOUT, bad, bad, CHECKOUT, bad)
        ]
    assert [r.status_code for r in answers] == [200, 400, 200, 400, 400, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["5", "4", "3", "2", "1", "0", "0"]
    assert answers[1].json()["success"] is False and "customer.email" in answers[1].json()["error"]
    assert answers[-1].json()["code"] == "rate_limited"
