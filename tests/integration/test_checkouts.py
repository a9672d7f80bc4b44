"""POST /api/v1/checkouts on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import checkouts, events, subscribers

SEED = {
    "checkoutId": "checkout-abc123",
    "totalCents": 8850,
    "currency": "USD",
    "checkoutUrl": "https://store.example.com/checkout/abc123",
    "customer": {"email": "buyer@example.com"},
    "items": [{"productId": "SKU-PROTEIN-1KG", "title": "Protein Powder", "quantity": 1, "priceCents": 8850}],
}


def _count(db: Database, table: sa.Table, workspace_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.c.workspace_id == workspace_id)
    if table is events:  # the subscriber.created event of a new subscriber is not the checkout's
        query = query.where(events.c.name == "ecommerce.checkout_started")
    return db.read_sync(lambda tx: tx.execute(query).scalar_one())


def test_checkout_seed_example_answers_documented_body(app_client, db):
    res = app_client.post("/checkouts", SEED)
    assert res.status_code == 200
    body = res.json()
    assert body["success"] is True
    assert body["checkoutId"] == "checkout-abc123"
    assert body["subscriberId"].startswith("sub_")
    assert body["eventId"].startswith("evt_")
    ws = app_client.tenant.id
    assert (_count(db, checkouts, ws), _count(db, events, ws), _count(db, subscribers, ws)) == (1, 1, 1)


def test_checkout_replay_returns_same_ids_and_appends_nothing(app_client, db):
    first = app_client.post("/checkouts", SEED).json()
    second = app_client.post("/checkouts", SEED).json()
    assert first == second
    assert _count(db, events, app_client.tenant.id) == 1


def test_checkout_changed_cart_updates_snapshot_without_new_event(app_client, db):
    first = app_client.post("/checkouts", SEED).json()
    changed = {
        **SEED,
        "totalCents": 9900,
        "items": [*SEED["items"], {"productId": "b", "title": "Bar", "quantity": 2}],
    }
    second = app_client.post("/checkouts", changed).json()
    assert second == first
    row = db.read_sync(
        lambda tx: tx.execute(
            sa.select(checkouts).where(checkouts.c.workspace_id == app_client.tenant.id)
        ).one()
    )
    assert row.total_cents == 9900
    assert [i["title"] for i in row.items] == ["Protein Powder", "Bar"]
    assert _count(db, events, app_client.tenant.id) == 1


def test_checkout_and_order_currency_must_be_an_iso_4217_code(app_client, db):
    """`XYZ` has three letters but is no currency: a 400 naming the field, nothing stored."""
    ws = app_client.tenant.id
    refused = app_client.post("/checkouts", {**SEED, "currency": "XYZ"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["success"] is False and "currency" in refused.json()["error"]
    order = {
        "orderId": "ord-xyz",
        "currency": "XYZ",
        "totalCents": 100,
        "customer": {"email": "a@example.com"},
    }
    refused_order = app_client.post("/orders", order)
    assert refused_order.status_code == 400, refused_order.text
    assert "currency" in refused_order.json()["error"]
    assert (_count(db, checkouts, ws), _count(db, subscribers, ws)) == (0, 0)
    # Real codes, in any case, with or without a minor unit, are fine.
    for code in ("eur", "JPY", "KWD"):
        ok = app_client.post("/checkouts", {**SEED, "checkoutId": f"chk-{code}", "currency": code})
        assert ok.status_code == 200, ok.text
