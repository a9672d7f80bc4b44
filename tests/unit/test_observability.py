"""The pieces of metrics and logs that need no server: surface labels (for surfaces this branch may not
serve yet too), bounded event labels, request ids, log redaction and the JSON log format."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cartback import logs, metrics
from cartback.api import access


@pytest.mark.parametrize(
    ("path", "surface"),
    [
        ("/api/v1/checkouts", "sequenzy"),
        ("/api/v1", "sequenzy"),
        ("/api/v1/subscribers/jane@example.com", "sequenzy"),
        ("/api/events", "klaviyo"),
        ("/api/profile-import", "klaviyo"),
        ("/api", "klaviyo"),
        ("/api/v2/whatever", "klaviyo"),
        ("/api/v1x", "klaviyo"),
        ("/v1/batch", "segment"),
        ("/v1/track", "segment"),
        ("/v1", "segment"),
        ("/v10/batch", "own"),
        ("/u/tok.en", "public"),
        ("/t/o/tok.gif", "public"),
        ("/t/c/tok", "public"),
        ("/app/sequences", "dashboard"),
        ("/apple", "own"),
        ("/healthz", "own"),
        ("/metrics", "own"),
        ("/openapi.json", "own"),
        ("/", "own"),
        ("/apix", "own"),
        ("/users", "own"),
    ],
)
def test_surface_of_labels_by_path_prefix(path: str, surface: str) -> None:
    assert metrics.surface_of(path) == surface


def test_is_ingest_covers_every_surface_and_only_posts() -> None:
    for path in ("/api/v1/checkouts", "/api/v1/orders", "/api/events", "/v1/batch", "/v1/track"):
        assert metrics.is_ingest("POST", path)
    assert not metrics.is_ingest("GET", "/api/events")
    assert not metrics.is_ingest("POST", "/api/v1/sequences")


def test_event_label_is_canonical_or_custom() -> None:
    assert metrics.event_label("ecommerce.checkout_started") == "ecommerce.checkout_started"
    assert metrics.event_label("Started Checkout") == "ecommerce.checkout_started"
    assert metrics.event_label("Order Completed") == "ecommerce.order_placed"
    assert metrics.event_label("email.sent") == "email.sent"
    assert metrics.event_label("page.viewed") == "custom"
    assert metrics.event_label("email.made_up") == "custom"
    # However many custom names arrive, the label set stays bounded.
    m = metrics.Metrics()
    m.events_dispatched({f"custom-{i}": 1 for i in range(500)} | {"Placed Order": 2})
    samples = {
        s.labels["name"]: s.value
        for family in text_string_to_metric_families(_text(m))
        if family.name == "cartback_events"
        for s in family.samples
        if s.name == "cartback_events_total"
    }
    assert samples == {"custom": 500.0, "ecommerce.order_placed": 2.0}


def test_metrics_registries_are_per_instance() -> None:
    a, b = metrics.Metrics(), metrics.Metrics()
    a.request_done("sequenzy", 200, 0.01, ingest=True)
    assert "cartback_http_requests_total" in _text(a)
    assert 'cartback_http_requests_total{status="200",surface="sequenzy"}' not in _text(b)


def test_metrics_refusals_are_counted_but_not_timed() -> None:
    """A 429 waits on purpose (api/refusals.py): in the durations it would look like a slow server."""
    m = metrics.Metrics()
    m.request_done("sequenzy", 200, 0.01, ingest=True)
    m.request_done("sequenzy", 429, 1.0, ingest=True)
    text = _text(m)
    assert 'cartback_http_requests_total{status="429",surface="sequenzy"} 1.0' in text
    assert 'cartback_http_request_duration_seconds_count{surface="sequenzy"} 1.0' in text
    assert 'cartback_ingest_duration_seconds_count{surface="sequenzy"} 1.0' in text


def test_enrollment_gauge_is_computed_at_scrape_time_and_survives_errors() -> None:
    calls = []

    def count() -> dict[str, int]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database down")
        return {"active": 3, "completed": 5}

    m = metrics.Metrics()
    m.add_enrollment_gauge(count, cache_seconds=0)
    assert calls == []  # registering does not query
    text = _text(m)
    assert 'cartback_enrollments{status="active"} 3.0' in text
    assert 'cartback_enrollments{status="completed"} 5.0' in text
    # A failing count leaves the gauge out of that scrape; the rest of /metrics still answers.
    text = _text(m)
    assert "cartback_enrollments{" not in text and "cartback_http_requests" in text
    assert 'cartback_enrollments{status="active"} 3.0' in _text(m)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (b"abc-123", True),
        (b"Root=1-5759e988-bd862e3fe1be46a994272793", True),
        (b"0af7651916cd43dd8448eb211c80319c", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"", False),
        (b"has space", False),
        (b"jane@example.com", False),
        (b'quote"d', False),
        ("é".encode(), False),
    ],
)
def test_request_id_from_keeps_only_plausible_ids(incoming: bytes, kept: bool) -> None:
    got = access.request_id_from([(b"x-request-id", incoming)])
    assert (got == incoming.decode("latin-1")) is kept
    assert 1 <= len(got) <= 128


def test_request_id_is_generated_when_absent() -> None:
    a, b = access.request_id_from([]), access.request_id_from([])
    assert a != b and len(a) == 32


def test_redact_masks_addresses_and_keys() -> None:
    text = "to jane.doe+x@example.co.uk with key cb_AbC123xyz_-987654321 and whsec_Zm9vYmFyYmF6"
    masked = logs.redact(text)
    assert "jane.doe" not in masked and "j***@example.co.uk" in masked
    assert "AbC123xyz" not in masked and "cb_[redacted]" in masked
    assert "Zm9vYmFy" not in masked


def test_json_logs_are_one_object_per_line_with_request_fields() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("json", "info", stream=stream)
        log = logging.getLogger("cartback.test")
        with logs.request_scope(request_id="rid-1"):
            logs.note(workspace_id="ws_1")
            log.info("sending to %s", "jane@example.com")
        try:
            raise ValueError("key cb_secretsecretsecret")
        except ValueError:
            log.exception("failed")
        log.debug("hidden at info")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert first["event"] == "sending to j***@example.com"
    assert first["request_id"] == "rid-1" and first["workspace_id"] == "ws_1"
    assert first["level"] == "info" and first["logger"] == "cartback.test" and first["timestamp"]
    assert "request_id" not in second
    assert "ValueError" in second["exception"] and "cb_secret" not in second["exception"]


def _text(m: metrics.Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(m.registry).decode()


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_lines_written_directly_are_what_logging_writes_and_go_out_once_per_loop_turn() -> None:
    stream = _Writes()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    log = logging.getLogger("cartback.access")
    fields = {"method": "POST", "path": "/api/v1/checkouts", "status": 200, "surface": "sequenzy"}

    async def requests() -> tuple[int, int]:
        with logs.request_scope(request_id="cb_notreallyakeybutshapedlikeone"):
            logs.note(workspace_id="ws_1")
            for n in range(3):
                logs.write_line(log, logging.INFO, "request", {**fields, "n": n, "to": "jane@example.com"})
        written_before_the_turn = stream.writes
        await asyncio.sleep(0)
        return written_before_the_turn, stream.writes

    try:
        logs.configure("json", "info", stream=stream)
        with logs.request_scope(request_id="cb_notreallyakeybutshapedlikeone"):
            logs.note(workspace_id="ws_1")
            log.info("request", extra={**fields, "n": 0, "to": "jane@example.com"})
        stream.writes = 0
        before, after = asyncio.run(requests())
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert (before, after) == (0, 1)  # nothing during the turn, then one write for the three lines
    via_logging, *direct = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(direct) == 3
    for line in (via_logging, *direct):
        line.pop("timestamp")
    assert list(direct[0]) == list(via_logging) and direct[0] == via_logging
    assert direct[0]["request_id"] == "cb_[redacted]" and direct[0]["to"] == "j***@example.com"
    assert [line["n"] for line in direct] == [0, 1, 2]
