"""Recovered revenue end to end on real SQLite and PostgreSQL: the app with its own worker (dispatcher,
attribution hook, the sender to a real SMTP sink) on a frozen clock, driven only through the public HTTP
APIs: Sequenzy checkouts, orders and sequences, the click-tracking links, and the analytics endpoints."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from tests import klaviyo_spec
from tests.smtp_sink import SmtpSink

from cartback.app import create_app
from cartback.core import aggregates
from cartback.core.clock import system_clock
from cartback.settings import Settings
from cartback.store.db import Database
from cartback.store.tables import attributions, enrollments, events, message_bodies, messages
from cartback.testing import FrozenClock

SEQUENCE = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": "ecommerce.order_placed",
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "steps": [
        {
            "type": "email",
            "delay": {"hours": 1},
            "subject": "You left something",
            "html": "<p>Your cart</p><a href='{{ event.checkoutUrl }}'>Back to your cart</a>",
        }
    ],
}


def currency(i: int) -> str:
    return "USD" if i % 2 == 0 else "EUR"


def total(i: int) -> int:
    return 2000 + 100 * i


class Shop:
    def __init__(
        self, http: TestClient, db: Database, clock: FrozenClock, workspace_id: str, key: str
    ) -> None:
        self.http, self.db, self.clock, self.workspace_id, self.key = http, db, clock, workspace_id, key

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        res = self.http.post("/api/v1" + path, json=body)
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        res = self.http.get("/api/v1" + path, params=params)
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]

    def count(self, query: Any) -> int:
        return int(self.db.read_sync(lambda tx: tx.execute(query).scalar_one()))

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
        """Let the app's worker catch up with the frozen clock."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.state()}"
            time.sleep(0.02)

    def state(self) -> list[Any]:
        """Where the runs and messages are, for a failure message."""

        def read(tx: Any) -> list[Any]:
            runs = tx.execute(
                sa.select(
                    enrollments.c.status,
                    enrollments.c.next_run_at,
                    enrollments.c.lease_owner,
                    enrollments.c.lease_until,
                ).where(enrollments.c.workspace_id == self.workspace_id)
            ).all()
            sent = tx.execute(
                sa.select(messages.c.status).where(messages.c.workspace_id == self.workspace_id)
            ).all()
            return [self.clock.now(), runs[:5], sent[:5]]

        return self.db.read_sync(read)  # type: ignore[no-any-return]

    def settled(self) -> bool:
        return (
            self.count(
                sa.select(sa.func.count()).where(
                    events.c.workspace_id == self.workspace_id, events.c.dispatched_at.is_(None)
                )
            )
            == 0
        )

    def sent(self) -> int:
        return self.count(
            sa.select(sa.func.count()).where(
                events.c.workspace_id == self.workspace_id, events.c.name == "email.sent"
            )
        )

    def delayed(self) -> int:
        """Runs whose first step, the delay, has run: only then may the clock move on, or the delay
        would start from the later time."""
        return self.count(
            sa.select(sa.func.count()).where(
                enrollments.c.workspace_id == self.workspace_id,
                enrollments.c.next_run_at > self.clock.now(),
                enrollments.c.lease_owner.is_(None),
            )
        )

    def checkout(self, i: int) -> None:
        self.post(
            "/checkouts",
            {
                "checkoutId": f"chk_{i}",
                "customer": {"email": f"shopper{i}@example.com"},
                "currency": currency(i),
                "totalCents": total(i),
                "checkoutUrl": f"https://shop.example.com/cart/{i}",
            },
        )

    def order(self, i: int, *, checkout: bool = True, **extra: Any) -> None:
        self.post(
            "/orders",
            {
                "orderId": f"ord_{i}",
                "customer": {"email": f"shopper{i}@example.com"},
                "currency": currency(i),
                "totalCents": total(i),
                "properties": {"checkoutId": f"chk_{i}"} if checkout else {},
                **extra,
            },
        )

    def click(self, i: int) -> None:
        html = self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(message_bodies.c.html)
                .join_from(messages, message_bodies)
                .where(
                    messages.c.workspace_id == self.workspace_id,
                    messages.c.to_email == f"shopper{i}@example.com",
                )
            ).scalar_one()
        )
        href = re.search(r"href=['\"]([^'\"]*/t/c/[^'\"]+)['\"]", html)
        assert href is not None, html
        res = self.http.get(urlsplit(href.group(1)).path, follow_redirects=False)
        assert res.status_code == 302
        assert res.headers["location"] == f"https://shop.example.com/cart/{i}"


@pytest.fixture
def shop(db_url: str, make_workspace: Callable[[], Any]) -> Iterator[Shop]:
    tenant = make_workspace()
    clock = FrozenClock(system_clock.now().replace(microsecond=0))
    # A real mail server: attribution by receipt and the sent/delivered figures are of delivered mail
    # (without one the outbox keeps the emails, and none of that applies).
    with SmtpSink() as sink:
        settings = Settings(database_url=db_url, tick_seconds=0.02, smtp_url=sink.url)
        app = create_app(settings, clock=clock)
        db = Database(db_url)
        with TestClient(app, raise_server_exceptions=False) as http:
            http.headers["Authorization"] = f"Bearer {tenant.key}"
            yield Shop(http, db, clock, tenant.id, tenant.key)
        db.close()


def recovery(shop: Shop, start: Any, **params: Any) -> dict[str, Any]:
    end = shop.clock.now() + timedelta(days=1)
    return shop.get("/analytics/recovery", start=start.isoformat(), end=end.isoformat(), **params)


def revenue(report: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["currency"]: (r["orders"], r["revenueCents"]) for r in report["revenue"]}


def test_recovered_revenue_counts_only_orders_after_a_click_within_the_window(shop: Shop) -> None:
    t0 = shop.clock.now()
    seq = shop.post("/sequences", SEQUENCE)["sequence"]
    shop.post(f"/sequences/{seq['id']}/enable", {})

    for i in range(100):
        shop.checkout(i)
    shop.wait("100 runs waiting out their delay", lambda: shop.delayed() == 100)
    shop.clock.advance(hours=1, minutes=1)
    shop.wait("100 emails sent", lambda: shop.sent() == 100)

    # 40 shoppers click their email.
    shop.clock.advance(hours=1)
    for i in range(40):
        shop.click(i)

    # Two days later (within the 5-day window): 8 of them order, and 2 people who never got an email.
    shop.clock.advance(days=2)
    for i in range(8):
        shop.order(i)
    for i in (500, 501):
        shop.order(i, checkout=False)
    # Six days after the clicks (past the window, and days after the email arrived): 2 more clickers order.
    shop.clock.advance(days=4)
    for i in (8, 9):
        shop.order(i)
    shop.wait("dispatch", shop.settled)

    expected = {
        "USD": (4, sum(total(i) for i in range(8) if currency(i) == "USD")),
        "EUR": (4, sum(total(i) for i in range(8) if currency(i) == "EUR")),
    }
    report = recovery(shop, t0 - timedelta(hours=1))
    totals = report["totals"]
    assert (totals["sent"], totals["delivered"], totals["clicked"]) == (100, 100, 40)
    assert (totals["checkoutsStarted"], totals["checkoutsRecovered"]) == (100, 8)
    # Shopify's rate: over abandoned checkouts, which leave out the two ordered without an email.
    assert totals["checkoutsAbandoned"] == 98
    assert totals["recoveryRate"] == round(8 / 98, 4)
    assert revenue(totals) == expected
    (listed,) = report["sequences"]
    assert (listed["sequenceId"], listed["checkoutsRecovered"]) == (seq["id"], 8)
    (step,) = listed["steps"]
    assert (step["sent"], step["clicked"], step["checkoutsRecovered"]) == (100, 40, 8)
    assert revenue(step) == expected

    # Each of the 8 is attributed once, to its own checkout's enrollment; the others to nothing.
    rows = shop.db.read_sync(
        lambda tx: tx.execute(
            sa.select(attributions.c.order_id, attributions.c.kind, attributions.c.sequence_id).where(
                attributions.c.workspace_id == shop.workspace_id
            )
        ).all()
    )
    assert sorted(rows) == sorted((f"ord_{i}", "checkout", seq["id"]) for i in range(8))

    # Metric aggregates by $attributed_flow see the same 8 orders (Klaviyo's sum_value adds currencies up,
    # as Klaviyo does); the 4 unattributed ones are the "" group.
    query = aggregates.Query(
        "ecommerce.order_placed",
        ("count", "sum_value", "unique"),
        t0,
        shop.clock.now() + timedelta(hours=1),
        interval="week",
        by=("$attributed_flow",),
    )
    got = shop.db.read_sync(lambda tx: aggregates.aggregate(tx, shop.workspace_id, query))
    flows = {r.dimensions[0]: {k: sum(v) for k, v in r.measurements.items()} for r in got.rows}
    assert flows == {
        seq["id"]: {"count": 8, "sum_value": sum(total(i) for i in range(8)) / 100, "unique": 8},
        "": {"count": 4, "sum_value": (total(8) + total(9) + total(500) + total(501)) / 100, "unique": 4},
    }

    # The Sequenzy stats carry the same figures.
    stats = shop.get(f"/sequences/{seq['id']}/stats")
    assert (stats["stats"]["sent"], stats["stats"]["clicked"], stats["stats"]["conversions"]) == (100, 40, 8)
    assert {r["currency"]: r["revenueCents"] for r in stats["stats"]["revenueByCurrency"]} == {
        c: cents for c, (_, cents) in expected.items()
    }
    assert "revenueCents" not in stats["stats"]  # two currencies are never added up

    # A partial refund lowers its currency's revenue; a cancellation takes the order out altogether.
    shop.order(0, status="refunded", refundAmountCents=500)
    shop.order(1, status="cancelled")
    shop.wait("dispatch", shop.settled)
    after = recovery(shop, t0 - timedelta(hours=1))["totals"]
    assert after["checkoutsRecovered"] == 7
    assert revenue(after) == {
        "USD": (4, expected["USD"][1] - 500),
        "EUR": (3, expected["EUR"][1] - total(1)),
    }


def test_recovered_revenue_over_time_and_per_sequence_filter(shop: Shop) -> None:
    t0 = shop.clock.now()
    seq = shop.post("/sequences", SEQUENCE)["sequence"]
    shop.post(f"/sequences/{seq['id']}/enable", {})
    for i in range(4):
        shop.checkout(i)
    shop.wait("4 runs waiting out their delay", lambda: shop.delayed() == 4)
    shop.clock.advance(hours=1, minutes=1)
    shop.wait("4 emails sent", lambda: shop.sent() == 4)
    # Receipt within a day counts without any click: one order the next hour, one two days later (too late).
    shop.clock.advance(hours=1)
    shop.order(0)
    shop.clock.advance(days=2)
    shop.order(2)
    shop.wait("dispatch", shop.settled)

    report = recovery(shop, t0 - timedelta(hours=1), interval="day", sequenceId=seq["id"])
    assert report["sequenceId"] == seq["id"]
    assert report["totals"]["checkoutsRecovered"] == 1
    assert report["totals"]["checkoutsStarted"] == 4  # the runs this sequence started
    recovered_days = [p for p in report["series"] if p["checkoutsRecovered"]]
    assert len(recovered_days) == 1 and revenue(recovered_days[0]) == {"USD": (1, total(0))}
    assert sum(p["sent"] for p in report["series"]) == 4
    kinds = shop.db.read_sync(
        lambda tx: tx.execute(
            sa.select(attributions.c.kind).where(attributions.c.workspace_id == shop.workspace_id)
        ).all()
    )
    assert [k for (k,) in kinds] == ["checkout"]


def test_recovery_report_bad_input_is_400_and_other_workspaces_see_nothing(shop: Shop) -> None:
    for params in (
        {"interval": "fortnight"},
        {"timezone": "Mars/Olympus"},
        {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        {"start": "2000-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z", "interval": "hour"},
        {"start": "yesterday"},
    ):
        res = shop.http.get("/api/v1/analytics/recovery", params=params)
        assert res.status_code == 400, (params, res.text)
        assert res.json()["success"] is False
    res = shop.http.get("/api/v1/analytics/recovery", params={"sequenceId": "seq_nope"})
    assert res.status_code == 404


def test_recovered_revenue_counts_orders_from_any_surface(shop: Shop) -> None:
    """A Segment checkout and order (the official client's /v1/batch) are attributed like Sequenzy's."""
    t0 = shop.clock.now()
    plain = {
        **SEQUENCE,
        "steps": [{**SEQUENCE["steps"][0], "html": "<a href='https://shop.example.com/'>Shop</a>"}],
    }
    seq = shop.post("/sequences", plain)["sequence"]
    shop.post(f"/sequences/{seq['id']}/enable", {})
    auth = {"Authorization": "Basic " + base64.b64encode(f"{shop.key}:".encode()).decode()}

    def segment(event: str, properties: dict[str, Any]) -> None:
        message = {
            "type": "track",
            "event": event,
            "userId": "seg_1",
            "properties": properties,
            "context": {"traits": {"email": "seg@example.com"}},
            "messageId": f"{event}-{len(properties)}-{properties.get('total')}",
        }
        res = shop.http.post("/v1/batch", json={"batch": [message]}, headers=auth)
        assert res.status_code == 200, res.text

    segment("Checkout Started", {"checkout_id": "sc1", "total": 40, "currency": "USD"})
    shop.wait("the run waiting out its delay", lambda: shop.delayed() == 1)
    shop.clock.advance(hours=1, minutes=1)
    shop.wait("the email sent", lambda: shop.sent() == 1)
    html = shop.db.read_sync(
        lambda tx: tx.execute(
            sa.select(message_bodies.c.html)
            .join_from(messages, message_bodies)
            .where(messages.c.workspace_id == shop.workspace_id)
        ).scalar_one()
    )
    href = re.search(r"href=['\"]([^'\"]*/t/c/[^'\"]+)['\"]", html)
    assert href is not None
    assert shop.http.get(urlsplit(href.group(1)).path, follow_redirects=False).status_code == 302

    shop.clock.advance(days=1)
    segment("Order Completed", {"order_id": "so1", "checkout_id": "sc1", "total": 40, "currency": "USD"})
    shop.wait("dispatch", shop.settled)
    totals = recovery(shop, t0 - timedelta(hours=1))["totals"]
    assert (totals["checkoutsRecovered"], revenue(totals)) == (1, {"USD": (1, 4000)})

    segment("Order Refunded", {"order_id": "so1", "total": 10})
    shop.wait("dispatch", shop.settled)
    totals = recovery(shop, t0 - timedelta(hours=1))["totals"]
    assert (totals["checkoutsRecovered"], revenue(totals)) == (1, {"USD": (1, 3000)})


def test_klaviyo_events_include_attributions_names_the_email_that_earned_the_order(shop: Shop) -> None:
    """`GET /api/events?include=attributions` (Klaviyo's spec and both SDKs list it): the attributed
    order's event relates to an attribution naming the email.sent event of the email that got the
    credit, its sequence (flow) and message (flow-message); other events relate to none."""
    seq = shop.post("/sequences", SEQUENCE)["sequence"]
    shop.post(f"/sequences/{seq['id']}/enable", {})
    shop.checkout(1)
    shop.wait("the run waiting out its delay", lambda: shop.delayed() == 1)
    shop.clock.advance(hours=1, minutes=1)
    shop.wait("the email sent", lambda: shop.sent() == 1)
    shop.click(1)
    shop.clock.advance(hours=2)
    shop.order(1)
    shop.wait("dispatch", shop.settled)

    def one(column: Any, **where: Any) -> Any:
        table = column.table
        query = sa.select(column).where(table.c.workspace_id == shop.workspace_id)
        for name, value in where.items():
            query = query.where(table.c[name] == value)
        return shop.db.read_sync(lambda tx: tx.execute(query).scalar_one())

    sent_event = one(events.c.id, name="email.sent")
    order_event = one(events.c.id, name="ecommerce.order_placed")
    message_id = one(messages.c.id)
    attribution_id = one(attributions.c.id)

    klaviyo = {"Authorization": f"Klaviyo-API-Key {shop.key}", "revision": "2026-07-15"}
    res = shop.http.get("/api/events", params={"include": "attributions"}, headers=klaviyo)
    assert res.status_code == 200, res.text
    body = res.json()
    assert klaviyo_spec.problems("GET /api/events", body) == []
    credited = {e["id"]: e["relationships"]["attributions"]["data"] for e in body["data"]}
    assert credited.pop(order_event) == [{"type": "attribution", "id": attribution_id}]
    assert set(map(len, credited.values())) == {0}
    [included] = body["included"]
    assert included["id"] == attribution_id
    assert included["relationships"] == {
        "event": {"data": {"type": "event", "id": order_event}},
        "attributed-event": {"data": {"type": "event", "id": sent_event}},
        "flow": {"data": {"type": "flow", "id": seq["id"]}},
        "flow-message": {"data": {"type": "flow-message", "id": message_id}},
    }
    single = shop.http.get(f"/api/events/{order_event}", params={"include": "attributions"}, headers=klaviyo)
    assert klaviyo_spec.problems("GET /api/events/{id}", single.json()) == []
    assert single.json()["included"] == [included]
