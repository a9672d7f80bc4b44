"""The Sequenzy list endpoints on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import events, list_members


def _events(db: Database, workspace_id: str, name: str) -> list[sa.Row]:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(events)
            .where(events.c.workspace_id == workspace_id, events.c.name == name)
            .order_by(events.c.id)
        ).all()
    )


def _new_list(app_client, name="Newsletter", **extra):
    res = app_client.post("/lists", {"name": name, **extra})
    assert res.status_code == 200, res.text
    return res.json()["list"]


def test_list_create_and_list_with_counts(app_client):
    created = app_client.post(
        "/lists", {"name": "VIP", "description": "best customers", "isPrivate": True}
    ).json()
    assert created["success"] is True and created["created"] is True
    item = created["list"]
    assert item["id"].startswith("lst_")
    assert (item["name"], item["description"], item["isPrivate"]) == ("VIP", "best customers", True)
    assert item["allowMemberUnsubscribe"] is False
    assert item["createdAt"].endswith("Z")
    app_client.post("/subscribers", {"email": "a@example.com", "lists": [item["id"]]})
    app_client.post("/subscribers", {"email": "b@example.com", "lists": ["VIP"], "status": "unsubscribed"})
    listed = app_client.get("/lists").json()
    assert listed["success"] is True
    [vip] = listed["lists"]
    assert (vip["subscriberCount"], vip["activeSubscriberCount"]) == (2, 1)


def test_list_create_same_name_returns_existing(app_client):
    first = _new_list(app_client, "Same")
    again = app_client.post("/lists", {"name": " Same ", "description": "ignored"})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["list"]["id"] == first["id"]
    assert len(app_client.get("/lists").json()["lists"]) == 1


def test_list_update_changes_only_given_fields(app_client):
    item = _new_list(app_client, "Old", description="d")
    res = app_client.patch(f"/lists/{item['id']}", {"name": "New", "isPrivate": True})
    assert res.status_code == 200
    updated = res.json()["list"]
    assert (updated["name"], updated["description"], updated["isPrivate"]) == ("New", "d", True)
    cleared = app_client.patch(f"/lists/{item['id']}", {"description": None}).json()["list"]
    assert cleared["description"] is None and cleared["name"] == "New"
    _new_list(app_client, "Taken")
    clash = app_client.patch(f"/lists/{item['id']}", {"name": "Taken"})
    assert clash.status_code == 409 and clash.json()["success"] is False


def test_list_unknown_id_is_404(app_client):
    for res in (
        app_client.patch("/lists/lst_nope", {"name": "x"}),
        app_client.delete("/lists/lst_nope"),
        app_client.post("/lists/lst_nope/subscribers", {"emails": ["a@example.com"]}),
        app_client.post("/lists/lst_nope/subscribers/remove", {"emails": ["a@example.com"]}),
    ):
        assert res.status_code == 404, res.text
        assert res.json()["success"] is False


def test_list_add_subscribers_creates_and_counts(app_client, db):
    item = _new_list(app_client)
    app_client.post("/subscribers", {"email": "old@example.com", "firstName": "Olga"})
    res = app_client.post(
        f"/lists/{item['id']}/subscribers",
        {"emails": ["old@example.com", "new@example.com", "NEW@example.com", " ", "broken"]},
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["success"] is True and body["listId"] == item["id"]
    assert (body["total"], body["processed"], body["created"], body["addedToList"], body["failed"]) == (
        5,
        2,
        1,
        2,
        1,
    )
    assert (body["duplicateInputCount"], body["ignoredBlankCount"]) == (1, 1)
    by_email = {r["email"]: r for r in body["results"]}
    assert by_email["new@example.com"]["created"] is True
    assert (
        by_email["old@example.com"]["created"] is False and by_email["old@example.com"]["addedToList"] is True
    )
    assert by_email["broken"]["success"] is False
    again = app_client.post(f"/lists/{item['id']}/subscribers", {"emails": ["old@example.com"]}).json()
    assert again["addedToList"] == 0
    events_ = _events(db, app_client.tenant.id, "subscriber.list_added")
    assert len(events_) == 2
    assert events_[0].properties == {"listId": item["id"], "listName": "Newsletter"}
    assert events_[0].source == "cartback"
    listed = app_client.get("/subscribers", params={"listId": item["id"]}).json()["subscribers"]
    assert sorted(s["email"] for s in listed) == ["new@example.com", "old@example.com"]


def test_list_add_subscribers_respects_duplicate_strategy(app_client):
    item = _new_list(app_client)
    app_client.post("/subscribers", {"email": "s@example.com"})
    res = app_client.post(
        f"/lists/{item['id']}/subscribers", {"emails": ["s@example.com"], "duplicateStrategy": "merge"}
    ).json()
    assert res["results"][0]["skipped"] is False
    res = app_client.post(f"/lists/{item['id']}/subscribers", {"emails": ["s@example.com"]}).json()
    assert res["results"][0]["skipped"] is True


def test_list_remove_subscribers_by_email_and_id(app_client, db):
    item = _new_list(app_client)
    a = app_client.post("/subscribers", {"email": "a@example.com", "lists": [item["id"]]}).json()[
        "subscriber"
    ]
    app_client.post("/subscribers", {"email": "b@example.com", "lists": [item["id"]]})
    app_client.post("/subscribers", {"email": "c@example.com"})
    res = app_client.post(
        f"/lists/{item['id']}/subscribers/remove",
        {
            "emails": ["B@example.com", "c@example.com", "ghost@example.com"],
            "subscriberIds": [a["id"], "sub_x"],
        },
    )
    assert res.status_code == 200
    assert res.json() == {"success": True, "removed": 2, "notFound": ["ghost@example.com", "sub_x"]}
    assert len(_events(db, app_client.tenant.id, "subscriber.list_removed")) == 2
    assert app_client.get("/lists").json()["lists"][0]["subscriberCount"] == 0
    assert app_client.post(f"/lists/{item['id']}/subscribers/remove", {}).status_code == 400


def test_list_delete_reports_memberships_and_keeps_subscribers(app_client, db):
    item = _new_list(app_client)
    for email in ("a@example.com", "b@example.com"):
        app_client.post("/subscribers", {"email": email, "lists": [item["id"]]})
    res = app_client.delete(f"/lists/{item['id']}")
    assert res.status_code == 200
    assert res.json() == {"success": True, "removedMemberships": 2}
    assert app_client.get("/lists").json()["lists"] == []
    assert app_client.get("/subscribers/a@example.com").json()["subscriber"]["lists"] == []
    left = db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count())
            .select_from(list_members)
            .where(list_members.c.workspace_id == app_client.tenant.id)
        ).scalar_one()
    )
    assert left == 0


def test_list_other_workspace_cannot_see_or_change(app_client):
    item = _new_list(app_client, "Mine")
    app_client.post("/subscribers", {"email": "a@example.com", "lists": [item["id"]]})
    other = app_client.as_other_workspace()
    assert app_client.get("/lists", headers=other).json()["lists"] == []
    assert app_client.patch(f"/lists/{item['id']}", {"name": "Hacked"}, headers=other).status_code == 404
    assert app_client.delete(f"/lists/{item['id']}", headers=other).status_code == 404
    add = app_client.post(f"/lists/{item['id']}/subscribers", {"emails": ["x@example.com"]}, headers=other)
    assert add.status_code == 404
    remove = app_client.post(
        f"/lists/{item['id']}/subscribers/remove", {"emails": ["a@example.com"]}, headers=other
    )
    assert remove.status_code == 404
    assert app_client.get("/subscribers", params={"listId": item["id"]}, headers=other).status_code == 404
    # A list of the same name there is that workspace's own.
    theirs = app_client.post("/lists", {"name": "Mine"}, headers=other).json()
    assert theirs["created"] is True and theirs["list"]["id"] != item["id"]
    [mine] = app_client.get("/lists").json()["lists"]
    assert (mine["name"], mine["subscriberCount"]) == ("Mine", 1)
