"""`Metrics.query_metric_aggregates` of the official SDK against a real `cartback serve`: Placed Order
events created through the SDK come back as count, sum_value and unique per day, in total and by
$attributed_flow, and the SDK's request errors get Klaviyo's statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from openapi_client.exceptions import BadRequestException, NotFoundException
from tests.compat.klaviyo.test_sdk_events import event_body


def aggregate_body(metric_id: str, *, by: list[str] | None = None, **extra) -> dict:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    attributes = {
        "metric_id": metric_id,
        "measurements": ["count", "sum_value", "unique"],
        "interval": "day",
        "page_size": 500,
        "timezone": "UTC",
        "filter": [
            f"greater-or-equal(datetime,{(today - timedelta(days=2)).strftime('%Y-%m-%dT%H:%M:%S')})",
            f"less-than(datetime,{(today + timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%S')})",
        ],
        **extra,
    }
    if by:
        attributes["by"] = by
    return {"data": {"type": "metric-aggregate", "attributes": attributes}}


def test_sdk_query_metric_aggregates_counts_sums_and_uniques(klaviyo):
    for n, (email, value) in enumerate(
        [("ana@example.com", 40.0), ("ana@example.com", 15.5), ("ben@example.com", 20.0)]
    ):
        body = event_body("Placed Order", email, {"OrderId": f"o{n}"}, unique_id=f"o{n}", value=value)
        assert klaviyo.Events.create_event(body) is None
    metric = next(m for m in klaviyo.Metrics.get_metrics().data if m.attributes.name == "Placed Order")

    result = klaviyo.Metrics.query_metric_aggregates(aggregate_body(metric.id))
    assert result.data.type == "metric-aggregate"
    assert len(result.data.attributes.dates) == 3
    (row,) = result.data.attributes.data
    assert row.dimensions == []
    assert row.measurements == {"count": [0, 0, 3], "sum_value": [0.0, 0.0, 75.5], "unique": [0, 0, 2]}

    # No email earned these orders: all of them are in the unattributed group.
    grouped = klaviyo.Metrics.query_metric_aggregates(aggregate_body(metric.id, by=["$attributed_flow"]))
    assert [(r.dimensions, r.measurements["count"]) for r in grouped.data.attributes.data] == [
        ([""], [0, 0, 3])
    ]


def test_sdk_query_metric_aggregates_errors(klaviyo):
    with pytest.raises(NotFoundException):
        klaviyo.Metrics.query_metric_aggregates(aggregate_body("XXXXXX"))
    body = event_body("Placed Order", "ana@example.com", {"OrderId": "o9"}, unique_id="o9", value=1.0)
    klaviyo.Events.create_event(body)
    metric = next(m for m in klaviyo.Metrics.get_metrics().data if m.attributes.name == "Placed Order")
    for bad in (
        aggregate_body(metric.id, filter=["less-than(datetime,2026-01-01T00:00:00)"]),
        aggregate_body(metric.id, by=["$message"]),
        aggregate_body(metric.id, timezone="Mars/Olympus"),
        aggregate_body(metric.id, filter=['equals(email,"a@b.c")']),
    ):
        with pytest.raises(BadRequestException):
            klaviyo.Metrics.query_metric_aggregates(bad)
