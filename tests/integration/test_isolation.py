"""One workspace can never read or change another's data: the same checkoutId, orderId or email under another
key is another record, and nothing sent with A's key touches a row of B's."""

from __future__ import annotations

import pytest
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


# Set by the engine when it has looked at an event for flows: B's own bookkeeping, not a change A made.
VOLATILE = {"dispatched_at"}


def rows(db: Database, workspace_id: str) -> dict[str, list[str]]:
    """Every row the workspace owns, in every table (the engine's bookkeeping columns left out)."""

    def read(tx: sa.Connection) -> dict[str, list[str]]:
        out = {}
        for t in metadata.sorted_tables:
            if "workspace_id" not in t.c:
                continue
            columns = [c for c in t.c if c.name not in VOLATILE]
            query = sa.select(*columns).where(t.c.workspace_id == workspace_id)
            out[t.name] = sorted(repr(tuple(r)) for r in tx.execute(query))
        return out

    return db.read_sync(read)


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


SUBSCRIBER = {
    "email": "only-b@example.com",
    "externalId": "ext-only-b",
    "firstName": "Bea",
    "tags": ["vip"],
    "customAttributes": {"plan": "gold"},
}


def _b_with_subscriber(app_client):
    b = app_client.make_workspace()
    res = app_client.post("/subscribers", SUBSCRIBER, headers={"Authorization": f"Bearer {b.key}"})
    assert res.status_code == 200, res.text
    return b


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/subscribers/only-b@example.com", None, id="get-by-email"),
        pytest.param("GET", "/subscribers/external/ext-only-b", None, id="get-by-external-id-path"),
        pytest.param(
            "GET", "/subscribers/external?externalId=ext-only-b", None, id="get-by-external-id-query"
        ),
        pytest.param(
            "PATCH", "/subscribers/only-b@example.com", {"firstName": "Mallory"}, id="patch-by-email"
        ),
        pytest.param(
            "PATCH", "/subscribers/external/ext-only-b", {"status": "unsubscribed"}, id="patch-by-external-id"
        ),
        pytest.param("DELETE", "/subscribers/only-b@example.com", None, id="delete-by-email"),
        pytest.param("DELETE", "/subscribers/external/ext-only-b", None, id="delete-by-external-id-path"),
        pytest.param(
            "DELETE", "/subscribers/external?externalId=ext-only-b", None, id="delete-by-external-id-query"
        ),
    ],
)
def test_isolation_another_workspaces_subscriber_is_not_found(app_client, db, method, path, body):
    b = _b_with_subscriber(app_client)
    b_before = rows(db, b.id)
    a_before = rows(db, app_client.tenant.id)

    kwargs = {} if body is None else {"json": body}
    res = app_client.http.request(method, "/api/v1" + path, **kwargs)

    assert res.status_code == 404, res.text
    assert res.json()["success"] is False
    # Nothing of B's comes back beyond what the caller sent.
    b_subscriber = db.read_sync(
        lambda tx: tx.execute(
            sa.select(subscribers.c.id).where(subscribers.c.workspace_id == b.id)
        ).scalar_one()
    )
    for secret in (b_subscriber, "Bea", "gold", "vip"):
        assert secret not in res.text
    assert rows(db, b.id) == b_before
    assert rows(db, app_client.tenant.id) == a_before


def test_isolation_subscriber_writes_by_email_touch_only_the_callers_workspace(app_client, db):
    b = _b_with_subscriber(app_client)
    b_before = rows(db, b.id)

    for path, body in [
        ("/subscribers", {**SUBSCRIBER, "firstName": "Mallory", "duplicateStrategy": "overwrite"}),
        ("/subscribers/tags", {"email": "only-b@example.com", "tag": "pwned"}),
        ("/subscribers/tags/remove", {"email": "only-b@example.com", "tag": "vip"}),
        ("/subscribers/events", {"email": "only-b@example.com", "event": "x.happened", "eventId": "evt-b-1"}),
        ("/lists", {"name": "B's list"}),
    ]:
        res = app_client.post(path, body)
        assert res.status_code == 200, (path, res.text)

    assert rows(db, b.id) == b_before
    listed = app_client.get("/subscribers").json()["subscribers"]
    assert [s["email"] for s in listed] == ["only-b@example.com"]
    assert listed[0]["firstName"] == "Mallory"
    as_b = {"Authorization": f"Bearer {b.key}"}
    mine = app_client.get("/subscribers/only-b@example.com", headers=as_b).json()["subscriber"]
    assert (mine["firstName"], mine["tags"]) == ("Bea", ["vip"])


def test_isolation_event_id_replayed_under_another_key_is_another_event(app_client, db):
    b = app_client.make_workspace()
    as_b = {"Authorization": f"Bearer {b.key}"}
    event = {"email": "shared@example.com", "event": "plan.upgraded", "eventId": "evt-shared"}
    in_b = app_client.post("/subscribers/events", event, headers=as_b).json()
    b_before = rows(db, b.id)

    in_a = app_client.post("/subscribers/events", event).json()

    assert in_a["duplicate"] is False and in_b["duplicate"] is False
    assert in_a["event"]["id"] != in_b["event"]["id"]
    assert rows(db, b.id) == b_before
    replay = app_client.post("/subscribers/events", event, headers=as_b).json()
    assert (replay["duplicate"], replay["event"]["id"]) == (True, in_b["event"]["id"])
