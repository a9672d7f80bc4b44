"""GET /metrics on a real app and database: Prometheus text that the official parser reads, whose
counters move as requests, events and sends flow; and the X-Request-Id echo."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cartback.app import create_app
from cartback.settings import Settings


def scrape(http: Any, **kwargs: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    res = http.get("/metrics", **kwargs)
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(res.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


FLOW = {
    "name": "abandoned",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "subject": "Your cart", "html": "<p>{{ event.checkoutUrl }}</p>"}],
}


def test_metrics_parse_and_move_with_traffic(app_client) -> None:
    http = app_client.http
    before = scrape(http)
    assert value(before, "cartback_http_requests_total", surface="sequenzy", status="200") == 0

    seq = app_client.post("/sequences", FLOW).json()["sequence"]["id"]
    assert app_client.post(f"/sequences/{seq}/enable").status_code < 300
    who = f"{secrets.token_hex(4)}@example.com"
    res = app_client.post(
        "/checkouts",
        {"checkoutId": "chk-1", "customer": {"email": who}, "totalCents": 100, "currency": "USD"},
    )
    assert res.status_code == 200, res.text
    event = {"email": who, "event": f"made.up.{secrets.token_hex(3)}", "properties": {}}
    assert app_client.post("/subscribers/events", event).status_code == 200
    assert app_client.post("/checkouts", {"checkoutId": ""}).status_code == 400
    assert http.get("/api/v1/subscribers", headers={"Authorization": "Bearer cb_nope"}).status_code == 401
    assert http.get("/u/not-a-token").status_code == 404
    segment = {
        "batch": [
            {
                "type": "track",
                "event": "Checkout Started",
                "userId": "u1",
                "messageId": str(uuid.uuid4()),
                "context": {"traits": {"email": who}},
                "properties": {"checkout_id": "seg-1", "currency": "USD", "value": 12.5},
            }
        ]
    }
    basic = "Basic " + base64.b64encode(f"{app_client.tenant.key}:".encode()).decode()
    res = http.post("/v1/batch", json=segment, headers={"Authorization": basic})
    assert res.status_code == 200, res.text

    def sent() -> dict[Any, float] | None:
        now = scrape(http)
        # No SMTP server is set: the outbox keeps them (outcome `kept`, not `sent`).
        return now if value(now, "cartback_messages_total", outcome="kept") >= 2 else None

    # Both checkouts, the Sequenzy one and the Segment one, start the flow.
    after = wait_for(sent, "both email steps to be kept in the outbox")

    assert value(after, "cartback_http_requests_total", surface="sequenzy", status="200") >= 3
    assert value(after, "cartback_http_requests_total", surface="sequenzy", status="400") == 1
    assert value(after, "cartback_http_requests_total", surface="sequenzy", status="401") == 1
    assert value(after, "cartback_http_requests_total", surface="public", status="404") == 1
    assert value(after, "cartback_http_requests_total", surface="own", status="200") >= 1  # the scrapes
    assert value(after, "cartback_ingest_duration_seconds_count", surface="sequenzy") == 3
    assert value(after, "cartback_http_requests_total", surface="segment", status="200") == 1
    assert value(after, "cartback_ingest_duration_seconds_count", surface="segment") == 1
    assert value(after, "cartback_ingest_duration_seconds_bucket", surface="sequenzy", le="+Inf") == 3
    assert value(after, "cartback_http_request_duration_seconds_count", surface="sequenzy") >= 6
    # The worker dispatches whatever is pending in the database, and on PostgreSQL the test session shares
    # one database: other tests' leftovers may add to the worker's counts, never take away.
    assert value(after, "cartback_events_total", name="ecommerce.checkout_started") >= 2  # one via Segment
    assert value(after, "cartback_events_total", name="custom") >= 1
    batches = "cartback_commit_batch_size_count"
    assert value(after, batches) > value(before, batches)
    assert value(after, "cartback_step_lateness_seconds_count") >= 1
    assert value(after, "cartback_messages_total", outcome="kept") >= 2
    assert value(after, "cartback_messages_total", outcome="sent") == 0
    # The gauge counts every workspace (PostgreSQL's database is shared by the test session), at most
    # once per 5 s: the first scrape, before the checkout, may still be what it shows.
    wait_for(
        lambda: sum(v for (name, _), v in scrape(http).items() if name == "cartback_enrollments") >= 1,
        "the enrollment gauge to count the enrollment",
        timeout=10,
    )
    # No raw path, address or key ever becomes a label.
    text = http.get("/metrics").text
    assert who not in text and "cb_nope" not in text and "not-a-token" not in text


def test_request_id_is_echoed_or_generated(app_client) -> None:
    http = app_client.http
    res = http.get("/healthz", headers={"X-Request-Id": "lb-7f3a.1"})
    assert res.headers["x-request-id"] == "lb-7f3a.1"
    generated = http.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated != http.get("/healthz").headers["x-request-id"]
    bad = http.get("/healthz", headers={"X-Request-Id": "x" * 200}).headers["x-request-id"]
    assert bad != "x" * 200 and len(bad) == 32
    # Errors, in every envelope, carry it too.
    res = app_client.post("/checkouts", {}, headers={"X-Request-Id": "req-err"})
    assert res.status_code == 400 and res.headers["x-request-id"] == "req-err"
    assert res.json()["success"] is False


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_metrics_token_when_configured(db_url: str) -> None:
    settings = Settings(database_url=db_url, metrics_token="s3cret-token")
    with TestClient(create_app(settings)) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = http.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and "cartback_http_requests_total" in ok.text
        assert http.get("/healthz").status_code == 200
