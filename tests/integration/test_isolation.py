"""One workspace can never read or change another's data: the same checkoutId, orderId or email under another
key is another record, and nothing sent with A's key touches a row of B's."""

from __future__ import annotations

import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import checkouts, metadata, orders, subscribers

CHECKOUT = {
    "checkoutId": "chk-shared",
    "customer": {"email": "Shared@Example.com", "firstName": "Bea"},
    "totalCents": 8850,
    "currency": "USD",
    "checkoutUrl": "https://b.example.com/checkout/shared",
    "items": [{"productId": "SKU-1", "title": "Protein Powder", "quantity": 1, "priceCents": 8850}],
}
ORDER = {
    "orderId": "ord-shared",
    "currency": "USD",
    "totalCents": 6450,
    "customer": {"email": "shared@example.com"},
}


def rows(db: Database, workspace_id: str) -> dict[str, list[str]]:
    """Every row the workspace owns, in every table."""
    return db.read_sync(
        lambda tx: {
            t.name: sorted(
                repr(tuple(r)) for r in tx.execute(sa.select(t).where(t.c.workspace_id == workspace_id))
            )
            for t in metadata.sorted_tables
            if "workspace_id" in t.c
        }
    )


def one(db: Database, table: sa.Table, workspace_id: str) -> sa.Row:
    return db.read_sync(
        lambda tx: tx.execute(sa.select(table).where(table.c.workspace_id == workspace_id)).one()
    )


def test_isolation_replayed_checkout_is_a_new_record_in_the_callers_workspace(app_client, db):
    b = app_client.make_workspace()
    as_b = {"Authorization": f"Bearer {b.key}"}
    in_b = app_client.post("/checkouts", CHECKOUT, headers=as_b).json()
    b_before = rows(db, b.id)

    changed = {
        **CHECKOUT,
        "totalCents": 1,
        "items": [],
        "customer": {"email": "shared@example.com", "lastName": "A"},
    }
    in_a = app_client.post("/checkouts", changed)

    assert in_a.status_code == 200, in_a.text
    in_a = in_a.json()
    assert in_a["checkoutId"] == in_b["checkoutId"] == "chk-shared"
    assert in_a["subscriberId"] != in_b["subscriberId"]
    assert in_a["eventId"] != in_b["eventId"]
    assert rows(db, b.id) == b_before
    a_checkout = one(db, checkouts, app_client.tenant.id)
    assert a_checkout.total_cents == 1
    assert one(db, subscribers, app_client.tenant.id).id == in_a["subscriberId"]
    # And B's key still gets B's ids back.
    assert app_client.post("/checkouts", CHECKOUT, headers=as_b).json() == in_b
    assert rows(db, b.id) == b_before


def test_isolation_order_naming_another_workspaces_checkout_links_nothing_there(app_client, db):
    b = app_client.make_workspace()
    as_b = {"Authorization": f"Bearer {b.key}"}
    assert app_client.post("/checkouts", CHECKOUT, headers=as_b).status_code == 200
    b_before = rows(db, b.id)

    res = app_client.post("/orders", {**ORDER, "properties": {"checkoutId": "chk-shared"}})

    assert res.status_code == 200, res.text
    assert rows(db, b.id) == b_before
    assert one(db, checkouts, b.id).order_id is None
    assert one(db, orders, app_client.tenant.id).checkout_id == "chk-shared"


def test_isolation_same_order_id_in_two_workspaces_is_two_orders(app_client, db):
    b = app_client.make_workspace()
    as_b = {"Authorization": f"Bearer {b.key}"}
    in_b = app_client.post("/orders", ORDER, headers=as_b).json()
    b_before = rows(db, b.id)

    in_a = app_client.post("/orders", {**ORDER, "totalCents": 1, "status": "refunded"}).json()

    assert in_a["duplicate"] is False
    assert set(in_a["eventIds"]).isdisjoint(in_b["eventIds"])
    assert in_a["subscriberId"] != in_b["subscriberId"]
    assert rows(db, b.id) == b_before
    assert one(db, orders, b.id).status == "placed"
    assert one(db, orders, app_client.tenant.id).status == "refunded"
