"""create_event through the official SDK: the seed's "Started Checkout" payload lands as the canonical
ecommerce.checkout_started with the checkout snapshot, and a replayed unique_id stores nothing new."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from cartback.store.tables import checkouts, events, subscribers

CHECKOUT_ID = "cart-abcd1234"
# The seed's payload (shared seeds, "Full cURL example for Started Checkout"), in the SDK's JSON:API form.
SEED_PROPERTIES = {
    "value": 129.98,
    "currency": "USD",
    "checkout_url": "https://store.example.com/checkout?cart=abcd1234",
    "coupon": "SPRING10",
    "item_names": ["Blue Tee - M", "White Jeans - 32"],
    "items": [
        {"ProductID": "tee-001", "ProductName": "Blue Tee - M", "ItemPrice": 29.99, "Quantity": 1},
        {"ProductID": "jeans-032", "ProductName": "White Jeans - 32", "ItemPrice": 99.99, "Quantity": 1},
    ],
}


def event_body(
    metric: str, email: str, properties: dict, *, unique_id: str, value: float | None = None
) -> dict:
    attributes = {
        "properties": properties,
        "time": datetime.now(UTC).isoformat(),
        "unique_id": unique_id,
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
    }
    if value is not None:
        attributes["value"] = value
        attributes["value_currency"] = "USD"
    return {"data": {"type": "event", "attributes": attributes}}


def rows(db, table, workspace_id):
    return db.read_sync(
        lambda tx: tx.execute(sa.select(table).where(table.c.workspace_id == workspace_id)).all()
    )


def test_sdk_create_event_started_checkout_lands_as_canonical_checkout(klaviyo, tenant, db):
    body = event_body(
        "Started Checkout", "customer@example.com", SEED_PROPERTIES, unique_id=CHECKOUT_ID, value=129.98
    )
    assert klaviyo.Events.create_event(body) is None  # 202, as the SDK's status map requires
    assert klaviyo.Events.create_event(body) is None  # the retry is accepted too

    started = [e for e in rows(db, events, tenant.id) if e.name == "ecommerce.checkout_started"]
    assert len(started) == 1
    event = started[0]
    assert event.source == "klaviyo"
    props = event.properties
    assert props["checkoutId"] == CHECKOUT_ID
    assert props["checkoutUrl"] == "https://store.example.com/checkout?cart=abcd1234"
    assert props["totalCents"] == 12998
    assert props["currency"] == "USD"
    assert [(i["title"], i["quantity"], i["priceCents"], i["productId"]) for i in props["items"]] == [
        ("Blue Tee - M", 1, 2999, "tee-001"),
        ("White Jeans - 32", 1, 9999, "jeans-032"),
    ]
    assert props["coupon"] == "SPRING10"

    (checkout,) = rows(db, checkouts, tenant.id)
    assert checkout.checkout_id == CHECKOUT_ID
    assert checkout.total_cents == 12998
    (subscriber,) = rows(db, subscribers, tenant.id)
    assert subscriber.email == "customer@example.com"
    assert checkout.subscriber_id == subscriber.id == event.subscriber_id


def test_sdk_create_event_same_unique_id_twice_stores_one_event(klaviyo, tenant, db):
    body = event_body("Viewed Product", "viewer@example.com", {"ProductName": "Mug"}, unique_id="view-1")
    klaviyo.Events.create_event(body)
    klaviyo.Events.create_event(body)
    other = event_body("Viewed Product", "viewer@example.com", {"ProductName": "Mug"}, unique_id="view-2")
    klaviyo.Events.create_event(other)

    viewed = [e for e in rows(db, events, tenant.id) if e.name == "Viewed Product"]
    assert len(viewed) == 2
    assert sorted(e.properties["ProductName"] for e in viewed) == ["Mug", "Mug"]
