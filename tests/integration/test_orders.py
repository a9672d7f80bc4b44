"""POST /api/v1/orders: idempotency by orderId, one event per status reached, revenue attributes."""

from __future__ import annotations

import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import checkouts, events, orders, subscribers

CUSTOMER = {"email": "Jane@Example.com", "firstName": "Jane", "externalId": "cust_1"}


def order(order_id: str = "ord_1", total: int = 6450, **extra: object) -> dict[str, object]:
    return {"orderId": order_id, "currency": "USD", "totalCents": total, "customer": CUSTOMER, **extra}


def event_names(db: Database, workspace_id: str) -> list[str]:
    return db.read_sync(
        lambda tx: list(
            tx.execute(
                sa.select(events.c.name)
                .where(events.c.workspace_id == workspace_id, events.c.name.like("ecommerce.%"))
                .order_by(events.c.id)
            ).scalars()
        )
    )


def attributes(db: Database, workspace_id: str) -> dict[str, object]:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(subscribers.c.attributes).where(subscribers.c.workspace_id == workspace_id)
        ).scalar_one()
    )


def test_order_replay_is_idempotent(app_client, db):
    first = app_client.post("/orders", order())
    second = app_client.post("/orders", order())
    assert first.status_code == second.status_code == 200
    assert first.json()["eventIds"] == second.json()["eventIds"]
    assert second.json()["duplicate"] is True
    ws = app_client.tenant.id
    assert event_names(db, ws) == ["ecommerce.order_placed"]
    count = db.read_sync(
        lambda tx: tx.execute(sa.select(sa.func.count()).where(orders.c.workspace_id == ws)).scalar_one()
    )
    assert count == 1


def test_order_each_status_reached_appends_its_event_once(app_client, db):
    for status in ["placed", "fulfilled", "fulfilled", "refunded", "refunded"]:
        assert app_client.post("/orders", order(status=status)).status_code == 200
    # Ids order events only to the millisecond, so compare the set: each status exactly once.
    assert sorted(event_names(db, app_client.tenant.id)) == [
        "ecommerce.order_fulfilled",
        "ecommerce.order_placed",
        "ecommerce.order_refunded",
    ]


def test_order_first_seen_cancelled_still_records_placed(app_client, db):
    app_client.post("/orders", order(status="cancelled"))
    assert sorted(event_names(db, app_client.tenant.id)) == [
        "ecommerce.order_cancelled",
        "ecommerce.order_placed",
    ]


def test_order_revenue_attributes_follow_refunds_and_cancellations(app_client, db):
    ws = app_client.tenant.id
    app_client.post("/orders", order("a", 10000, orderedAt="2026-01-01T10:00:00Z"))
    app_client.post("/orders", order("b", 5000, orderedAt="2026-01-02T10:00:00Z"))
    attrs = attributes(db, ws)
    assert attrs["ordersCount"] == 2
    assert attrs["totalSpent"] == 150.0
    assert attrs["ltv"] == 150.0
    assert attrs["aov"] == 75.0
    assert attrs["lastOrderAt"] == "2026-01-02T10:00:00Z"

    app_client.post("/orders", order("b", 5000, status="refunded", refundAmountCents=2000))
    attrs = attributes(db, ws)
    assert (attrs["ordersCount"], attrs["totalSpent"]) == (2, 130.0)

    app_client.post("/orders", order("a", 10000, status="cancelled"))
    attrs = attributes(db, ws)
    assert (attrs["ordersCount"], attrs["totalSpent"], attrs["aov"]) == (1, 30.0, 30.0)

    app_client.post("/orders", order("b", 5000, status="refunded"))  # refunded in full
    attrs = attributes(db, ws)
    assert (attrs["ordersCount"], attrs["totalSpent"]) == (0, 0.0)


def test_order_customer_totals_from_the_shop_win(app_client, db):
    app_client.post("/orders", order(customerTotals={"ordersCount": 7, "totalSpentCents": 70000}))
    attrs = attributes(db, app_client.tenant.id)
    assert (attrs["ordersCount"], attrs["totalSpent"], attrs["aov"]) == (7, 700.0, 100.0)


def test_order_links_its_checkout_through_properties(app_client, db):
    chk = app_client.post(
        "/checkouts", {"checkoutId": "chk_9", "customer": {"email": "jane@example.com"}, "totalCents": 6450}
    ).json()
    res = app_client.post("/orders", order(properties={"checkoutId": "chk_9"})).json()
    assert res["subscriberId"] == chk["subscriberId"]  # same person: email matched case-insensitively
    ws = app_client.tenant.id
    linked = db.read_sync(
        lambda tx: tx.execute(
            sa.select(checkouts.c.order_id).where(checkouts.c.workspace_id == ws)
        ).scalar_one()
    )
    assert linked == "ord_1"
    props = db.read_sync(
        lambda tx: tx.execute(
            sa.select(events.c.properties).where(
                events.c.workspace_id == ws, events.c.name == "ecommerce.order_placed"
            )
        ).scalar_one()
    )
    assert props["checkoutId"] == "chk_9"
    assert props["value"] == 64.5


def test_order_unknown_status_is_refused(app_client, db):
    res = app_client.post("/orders", order(status="shipped"))
    assert res.status_code == 400
    assert res.json()["success"] is False
    assert "status" in res.json()["error"]
    assert event_names(db, app_client.tenant.id) == []
