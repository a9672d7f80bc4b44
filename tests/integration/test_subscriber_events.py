"""POST /subscribers/events and /subscribers/events/bulk on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import events


def _rows(db: Database, workspace_id: str) -> list[sa.Row]:
    """The events that came in through the API; cartback's own (tag, list, ...) are left out."""
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(events)
            .where(events.c.workspace_id == workspace_id, events.c.source == "sequenzy")
            .order_by(events.c.id)
        ).all()
    )


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def test_event_trigger_creates_subscriber_and_event(app_client, db):
    res = app_client.post(
        "/subscribers/events",
        {
            "email": "jane@example.com",
            "event": "checkout.viewed",
            "properties": {"checkoutId": "chk_1"},
            "firstName": "Jane",
            "customAttributes": {"plan": "pro"},
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["success"] is True
    assert body["event"]["id"].startswith("evt_")
    assert body["event"]["name"] == "checkout.viewed"
    assert body["event"]["definitionCreated"] is True
    assert body["subscriber"]["created"] is True and body["subscriber"]["email"] == "jane@example.com"
    assert (body["duplicate"], body["historical"]) == (False, False)
    [row] = _rows(db, app_client.tenant.id)
    assert (row.id, row.subscriber_id, row.source) == (
        body["event"]["id"],
        body["subscriber"]["id"],
        "sequenzy",
    )
    assert row.properties == {"checkoutId": "chk_1"}
    sub = app_client.get("/subscribers/jane@example.com").json()["subscriber"]
    assert (sub["firstName"], sub["customAttributes"]) == ("Jane", {"plan": "pro"})
    second = app_client.post("/subscribers/events", {"email": "jane@example.com", "event": "checkout.viewed"})
    assert second.json()["event"]["definitionCreated"] is False
    assert second.json()["subscriber"]["created"] is False


def test_event_id_replay_is_a_duplicate_with_the_original_id(app_client, db):
    body = {"email": "r@example.com", "event": "paid", "eventId": "evt-ext-1", "properties": {"n": 1}}
    first = app_client.post("/subscribers/events", body).json()
    replay = app_client.post(
        "/subscribers/events",
        {**body, "properties": {"n": 2}, "firstName": "Changed", "customAttributes": {"x": 1}},
    ).json()
    assert replay["duplicate"] is True
    assert replay["event"]["id"] == first["event"]["id"]
    assert replay["subscriber"]["id"] == first["subscriber"]["id"]
    rows = _rows(db, app_client.tenant.id)
    assert len(rows) == 1 and rows[0].properties == {"n": 1}
    assert rows[0].idempotency_key == "event:evt-ext-1"
    sub = app_client.get("/subscribers/r@example.com").json()["subscriber"]
    assert (sub["firstName"], sub["customAttributes"]) == (None, {})  # a replay applies nothing


def test_event_names_are_canonical(app_client, db):
    res = app_client.post("/subscribers/events", {"email": "c@example.com", "event": "Started Checkout"})
    assert res.json()["event"]["name"] == "ecommerce.checkout_started"
    assert _rows(db, app_client.tenant.id)[0].name == "ecommerce.checkout_started"


def test_event_occurred_long_ago_is_historical(app_client, db):
    res = app_client.post(
        "/subscribers/events",
        {"email": "h@example.com", "event": "old", "occurredAt": _iso(-timedelta(hours=3))},
    )
    assert res.status_code == 200
    assert res.json()["historical"] is True
    recent = app_client.post(
        "/subscribers/events",
        {"email": "h@example.com", "event": "new", "occurredAt": _iso(-timedelta(minutes=5))},
    )
    assert recent.json()["historical"] is False
    rows = {r.name: r for r in _rows(db, app_client.tenant.id)}
    assert rows["old"].historical is True and rows["new"].historical is False


def test_event_naive_occurred_at_is_utc(app_client, db):
    naive = (datetime.now(UTC) - timedelta(hours=2)).replace(tzinfo=None, microsecond=0)
    res = app_client.post(
        "/subscribers/events", {"email": "z@example.com", "event": "n", "occurredAt": naive.isoformat()}
    )
    assert res.json()["historical"] is True
    [row] = _rows(db, app_client.tenant.id)
    assert row.occurred_at == naive.replace(tzinfo=UTC)


def test_event_rejects_far_future_missing_identity_and_name(app_client, db):
    for body in (
        {"email": "f@example.com", "event": "x", "occurredAt": _iso(timedelta(days=2))},
        {"email": "f@example.com", "event": "x", "occurredAt": _iso(-timedelta(days=6 * 365))},
        {"event": "x"},
        {"email": "f@example.com"},
        {"email": "f@example.com", "event": ""},
        {"email": "f@example.com", "event": "x", "occurredAt": "yesterday"},
    ):
        res = app_client.post("/subscribers/events", body)
        assert res.status_code == 400, (body, res.text)
        assert res.json()["success"] is False
    assert _rows(db, app_client.tenant.id) == []
    soon = app_client.post(
        "/subscribers/events",
        {"email": "f@example.com", "event": "x", "occurredAt": _iso(timedelta(hours=1))},
    )
    assert soon.status_code == 200


def test_event_by_external_id(app_client):
    sub = app_client.post("/subscribers", {"email": "x@example.com", "externalId": "u1"}).json()["subscriber"]
    res = app_client.post("/subscribers/events", {"externalId": "u1", "event": "login"})
    assert res.status_code == 200
    assert res.json()["subscriber"]["id"] == sub["id"]
    unknown = app_client.post("/subscribers/events", {"externalId": "nobody", "event": "login"})
    assert unknown.status_code == 404


def test_event_bulk_counts_inserted_and_duplicates(app_client, db):
    app_client.post("/subscribers/events", {"email": "b@example.com", "event": "a", "eventId": "e1"})
    res = app_client.post(
        "/subscribers/events/bulk",
        {
            "email": "b@example.com",
            "events": [
                {"name": "a", "eventId": "e1"},
                {"name": "b", "eventId": "e2", "properties": {"k": "v"}},
                {"name": "Placed Order", "occurredAt": _iso(-timedelta(days=3))},
            ],
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["inserted"], body["duplicates"]) == (2, 1)
    assert [e["duplicate"] for e in body["events"]] == [True, False, False]
    assert [e["name"] for e in body["events"]] == ["a", "b", "ecommerce.order_placed"]
    assert body["events"][2]["historical"] is True
    assert body["subscriber"]["created"] is False
    assert len(_rows(db, app_client.tenant.id)) == 3
    again = app_client.post(
        "/subscribers/events/bulk",
        {
            "email": "b@example.com",
            "events": [{"name": "a", "eventId": "e1"}, {"name": "b", "eventId": "e2"}],
        },
    ).json()
    assert (again["inserted"], again["duplicates"]) == (0, 2)
    assert [e["id"] for e in again["events"]] == [body["events"][0]["id"], body["events"][1]["id"]]


def test_event_bulk_limits(app_client):
    too_many = [{"name": f"e{i}"} for i in range(101)]
    assert (
        app_client.post(
            "/subscribers/events/bulk", {"email": "l@example.com", "events": too_many}
        ).status_code
        == 400
    )
    assert (
        app_client.post("/subscribers/events/bulk", {"email": "l@example.com", "events": []}).status_code
        == 400
    )
    ok = app_client.post("/subscribers/events/bulk", {"email": "l@example.com", "events": too_many[:100]})
    assert ok.status_code == 200 and ok.json()["inserted"] == 100


def test_event_ids_are_per_workspace(app_client, db):
    mine = app_client.post(
        "/subscribers/events", {"email": "w@example.com", "event": "x", "eventId": "same"}
    ).json()
    other = app_client.as_other_workspace()
    theirs = app_client.post(
        "/subscribers/events", {"email": "w@example.com", "event": "x", "eventId": "same"}, headers=other
    ).json()
    assert theirs["duplicate"] is False
    assert theirs["event"]["id"] != mine["event"]["id"]
    assert theirs["subscriber"]["id"] != mine["subscriber"]["id"]
    assert len(_rows(db, app_client.tenant.id)) == 1
