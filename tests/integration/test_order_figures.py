"""One order rule on every surface: a customer's order count, spend and refunds agree on the dashboard's
person page, the Sequenzy subscriber (customAttributes), the Klaviyo profile (properties); refunds
accumulate, one event each at the time the sender gave, whichever API reports them."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import events, orders
from cartback.testing import FrozenClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
EMAIL = "jane@example.com"
_ROW = re.compile(
    r'<tr><td>(?P<currency>[A-Z]{3})</td><td class="num">(?P<orders>[\d,]+)</td>'
    r'<td class="num" data-total="[A-Z]{3}">(?P<spent>[^<]+)</td>'
    r'<td class="num">(?P<refunded>[^<]+)</td></tr>'
)


@dataclass
class Shop:
    http: Any
    db: Database
    clock: FrozenClock
    workspace_id: str
    key: str

    def sequenzy(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.http.post(f"/api/v1{path}", json=body, headers={"Authorization": f"Bearer {self.key}"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def klaviyo(self, metric: str, properties: dict[str, Any], **attributes: Any) -> None:
        body = {
            "data": {
                "type": "event",
                "attributes": {
                    "properties": properties,
                    "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
                    "profile": {"data": {"type": "profile", "attributes": {"email": EMAIL}}},
                    **attributes,
                },
            }
        }
        reply = self.http.post("/api/events", json=body, headers=self._klaviyo_headers())
        assert reply.status_code == 202, reply.text

    def segment(self, event: str, properties: dict[str, Any], **extra: Any) -> None:
        message = {
            "type": "track",
            "event": event,
            "userId": "cust_1",
            "context": {"traits": {"email": EMAIL}},
            "properties": properties,
            "messageId": str(uuid.uuid4()),
            **extra,
        }
        reply = self.http.post("/v1/batch", json={"batch": [message]}, auth=(self.key, ""))
        assert reply.status_code == 200, reply.text

    def _klaviyo_headers(self) -> dict[str, str]:
        return {"Authorization": f"Klaviyo-API-Key {self.key}", "revision": "2026-10-15"}

    def figures(self) -> dict[str, tuple[int, str]]:
        """(orders, spent) as the person page, the Sequenzy subscriber and the Klaviyo profile say."""
        sub = self.http.get(f"/api/v1/subscribers/{EMAIL}", headers={"Authorization": f"Bearer {self.key}"})
        assert sub.status_code == 200, sub.text
        body = sub.json()
        custom = (body.get("subscriber") or body)["customAttributes"]
        profiles = self.http.get(
            "/api/profiles", params={"filter": f'equals(email,"{EMAIL}")'}, headers=self._klaviyo_headers()
        )
        assert profiles.status_code == 200, profiles.text
        (profile,) = profiles.json()["data"]
        props = profile["attributes"]["properties"]
        page = self.http.get(f"/app/people/{profile['id']}")
        assert page.status_code == 200
        (row,) = [m.groupdict() for m in _ROW.finditer(page.text)]
        return {
            "page": (int(row["orders"]), row["spent"], row["refunded"]),
            "sequenzy": (custom["ordersCount"], f"${custom['totalSpent']:.2f}"),
            "klaviyo": (props["ordersCount"], f"${props['totalSpent']:.2f}"),
        }

    def order_row(self) -> Any:
        ws = self.workspace_id
        return self.db.read_sync(
            lambda tx: tx.execute(sa.select(orders).where(orders.c.workspace_id == ws)).one()
        )

    def refunds(self) -> list[tuple[datetime, dict[str, Any]]]:
        ws = self.workspace_id
        rows = self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(events.c.occurred_at, events.c.properties)
                .where(events.c.workspace_id == ws, events.c.name == "ecommerce.order_refunded")
                .order_by(events.c.occurred_at)
            ).all()
        )
        return [(r.occurred_at, r.properties) for r in rows]


@pytest.fixture
def shop(db: Database, db_url: str, make_workspace: Any) -> Iterator[Shop]:
    tenant = make_workspace()
    clock = FrozenClock(T0)
    with open_app(db_url, clock) as http:
        sign_in(http, make_user(db, tenant.name))
        yield Shop(http, db, clock, tenant.id, tenant.key)


def _agree(shop: Shop, orders_count: int, spent: str, refunded: str) -> None:
    figures = shop.figures()
    assert figures == {
        "page": (orders_count, spent, refunded),
        "sequenzy": (orders_count, spent),
        "klaviyo": (orders_count, spent),
    }


def test_order_figures_full_refund_agree_everywhere(shop):
    customer = {"email": EMAIL}
    shop.sequenzy("/orders", {"orderId": "o1", "currency": "USD", "totalCents": 10000, "customer": customer})
    _agree(shop, 1, "$100.00", "$0.00")
    shop.sequenzy(
        "/orders",
        {"orderId": "o1", "currency": "USD", "totalCents": 10000, "customer": customer, "status": "refunded"},
    )
    _agree(shop, 0, "$0.00", "$100.00")
    assert shop.order_row().refund_amount_cents == 10000


def test_order_figures_two_klaviyo_partial_refunds_accumulate_at_their_sent_times(shop):
    shop.klaviyo("Placed Order", {"order_id": "o1"}, value=30.0, unique_id="o1", time="2026-11-20T09:00:00Z")
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r1", time="2026-11-21T09:00:00Z"
    )
    shop.klaviyo("Refunded Order", {"order_id": "o1"}, value=5.0, unique_id="r2", time="2026-11-22T09:00:00Z")
    # A retry of the first refund is that refund again, not a third one.
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r1", time="2026-11-21T09:00:00Z"
    )
    assert shop.order_row().refund_amount_cents == 1500
    _agree(shop, 1, "$15.00", "$15.00")
    refunds = shop.refunds()
    assert [(at, p["refundCents"], p["value"]) for at, p in refunds] == [
        (datetime(2026, 11, 21, 9, tzinfo=UTC), 1000, 10.0),
        (datetime(2026, 11, 22, 9, tzinfo=UTC), 500, 5.0),
    ]


def test_order_figures_klaviyo_refund_from_before_refunds_accumulated_retried_counts_once(shop):
    """A Klaviyo refund stored before migration 0017 has the one refund key of that time
    (`order:<id>:refunded`) and no unique_id; the same refund sent again after the upgrade is that refund,
    not a second one. A later refund of the same amount with another unique_id is a new refund."""
    shop.klaviyo("Placed Order", {"order_id": "o1"}, value=30.0, unique_id="o1", time="2026-11-20T09:00:00Z")
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r1", time="2026-11-21T09:00:00Z"
    )
    ws = shop.workspace_id
    # As the refund was stored before 0017 (which re-keys only Sequenzy pushes' refund events).
    shop.db.write_sync(
        lambda tx: tx.execute(
            events.update()
            .where(events.c.workspace_id == ws, events.c.name == "ecommerce.order_refunded")
            .values(idempotency_key="order:o1:refunded")
        )
    )
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r1", time="2026-11-21T09:00:00Z"
    )
    assert shop.order_row().refund_amount_cents == 1000
    assert [p["refundCents"] for _, p in shop.refunds()] == [1000]
    _agree(shop, 1, "$20.00", "$10.00")
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r2", time="2026-11-22T09:00:00Z"
    )
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r1", time="2026-11-21T09:00:00Z"
    )
    assert shop.order_row().refund_amount_cents == 2000
    assert [p["refundCents"] for _, p in shop.refunds()] == [1000, 1000]


def test_order_figures_two_segment_partial_refunds_accumulate_at_their_sent_times(shop):
    shop.segment("Order Completed", {"order_id": "o1", "total": 30}, timestamp="2026-11-20T09:00:00Z")
    shop.segment("Order Refunded", {"order_id": "o1", "total": 10}, timestamp="2026-11-21T09:00:00Z")
    shop.segment("Order Refunded", {"order_id": "o1", "total": 5}, timestamp="2026-11-22T09:00:00Z")
    assert shop.order_row().refund_amount_cents == 1500
    _agree(shop, 1, "$15.00", "$15.00")
    assert [(at, p["refundCents"]) for at, p in shop.refunds()] == [
        (datetime(2026, 11, 21, 9, tzinfo=UTC), 1000),
        (datetime(2026, 11, 22, 9, tzinfo=UTC), 500),
    ]


def test_order_figures_refunds_are_capped_at_the_order_total(shop):
    shop.klaviyo("Placed Order", {"order_id": "o1"}, value=30.0, unique_id="o1")
    shop.klaviyo("Refunded Order", {"order_id": "o1"}, value=20.0, unique_id="r1")
    shop.klaviyo("Refunded Order", {"order_id": "o1"}, value=20.0, unique_id="r2")
    assert shop.order_row().refund_amount_cents == 3000
    _agree(shop, 0, "$0.00", "$30.00")
    assert sorted(p["refundCents"] for _, p in shop.refunds()) == [1000, 2000]


def test_order_figures_refund_without_amount_refunds_the_rest(shop):
    shop.segment("Order Completed", {"order_id": "o1", "total": 30})
    shop.segment("Order Refunded", {"order_id": "o1", "total": 10})
    shop.segment("Order Refunded", {"order_id": "o1"})
    assert shop.order_row().refund_amount_cents == 3000
    _agree(shop, 0, "$0.00", "$30.00")


def test_order_figures_cancel_keeps_the_sent_time_and_voids_the_order(shop):
    shop.klaviyo("Placed Order", {"order_id": "o1"}, value=30.0, unique_id="o1", time="2026-11-20T09:00:00Z")
    shop.klaviyo("Cancelled Order", {"order_id": "o1"}, unique_id="c1", time="2026-11-20T10:00:00Z")
    shop.klaviyo(
        "Fulfilled Order", {"order_id": "o2"}, value=12.0, unique_id="f2", time="2026-11-21T10:00:00Z"
    )
    ws = shop.workspace_id
    when = dict(
        shop.db.read_sync(
            lambda tx: tx.execute(
                sa.select(events.c.name, events.c.occurred_at).where(
                    events.c.workspace_id == ws,
                    events.c.name.in_(["ecommerce.order_cancelled", "ecommerce.order_fulfilled"]),
                )
            ).all()
        )
    )
    assert when == {
        "ecommerce.order_cancelled": datetime(2026, 11, 20, 10, tzinfo=UTC),
        "ecommerce.order_fulfilled": datetime(2026, 11, 21, 10, tzinfo=UTC),
    }
    _agree(shop, 1, "$12.00", "$0.00")


def test_order_figures_backfilled_refund_lands_in_its_sent_interval_of_metric_aggregates(shop):
    shop.klaviyo("Placed Order", {"order_id": "o1"}, value=30.0, unique_id="o1", time="2026-11-20T09:00:00Z")
    shop.klaviyo(
        "Refunded Order", {"order_id": "o1"}, value=10.0, unique_id="r1", time="2026-11-21T09:00:00Z"
    )
    shop.segment("Order Refunded", {"order_id": "o1", "total": 5}, timestamp="2026-11-22T09:00:00Z")
    metrics = shop.http.get("/api/metrics", headers=shop._klaviyo_headers()).json()["data"]
    refunded = next(m["id"] for m in metrics if m["attributes"]["name"] == "Refunded Order")
    body = {
        "data": {
            "type": "metric-aggregate",
            "attributes": {
                "metric_id": refunded,
                "measurements": ["count", "sum_value"],
                "interval": "day",
                "filter": [
                    "greater-or-equal(datetime,2026-11-20T00:00:00)",
                    "less-than(datetime,2026-11-24T00:00:00)",
                ],
            },
        }
    }
    reply = shop.http.post("/api/metric-aggregates", json=body, headers=shop._klaviyo_headers())
    assert reply.status_code == 200, reply.text
    (row,) = reply.json()["data"]["attributes"]["data"]
    assert row["measurements"] == {"count": [0, 1, 1, 0], "sum_value": [0.0, 10.0, 5.0, 0.0]}


def test_order_figures_sequenzy_push_states_the_refunded_amount_so_far(shop):
    customer = {"email": EMAIL}
    order = {
        "orderId": "o1",
        "currency": "USD",
        "totalCents": 3000,
        "customer": customer,
        "status": "refunded",
    }
    shop.sequenzy("/orders", {**order, "status": "placed"})
    first = shop.sequenzy("/orders", {**order, "refundAmountCents": 1000})
    again = shop.sequenzy("/orders", {**order, "refundAmountCents": 1000})
    assert again["duplicate"] is True and again["eventIds"] == first["eventIds"]
    shop.sequenzy("/orders", {**order, "refundAmountCents": 1500})
    assert shop.order_row().refund_amount_cents == 1500
    _agree(shop, 1, "$15.00", "$15.00")
    # Both at the frozen clock's time: compare the amounts as a set.
    assert sorted(p["refundCents"] for _, p in shop.refunds()) == [500, 1000]


def test_order_figures_refund_keys_fit_the_longest_order_id(shop):
    order_id = "o" * 255
    shop.segment("Order Completed", {"order_id": order_id, "total": 30})
    shop.segment("Order Refunded", {"order_id": order_id, "total": 10})
    shop.klaviyo("Refunded Order", {"order_id": order_id}, value=5.0, unique_id="r" * 1000)
    assert shop.order_row().refund_amount_cents == 1500
    assert len(shop.refunds()) == 2
