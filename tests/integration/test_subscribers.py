"""The Sequenzy subscriber and tag endpoints on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import events, subscribers


def _events(db: Database, workspace_id: str, name: str | None = None) -> list[sa.Row]:
    query = sa.select(events).where(events.c.workspace_id == workspace_id).order_by(events.c.id)
    if name is not None:
        query = query.where(events.c.name == name)
    return db.read_sync(lambda tx: tx.execute(query).all())


def _create(app_client, **body):
    res = app_client.post("/subscribers", body)
    assert res.status_code == 200, res.text
    return res.json()["subscriber"]


# -- create ----------------------------------------------------------------------------------------


def test_subscriber_create_answers_documented_shape(app_client):
    res = app_client.post(
        "/subscribers",
        {
            "email": "jane.doe@example.com",
            "externalId": "cust_1",
            "firstName": "Jane",
            "lastName": "Doe",
            "tags": ["shopper", " vip ", "shopper"],
            "customAttributes": {"plan": "free"},
            "timezone": "Europe/Paris",
            "phone": "+33123456789",
            "smsConsent": True,
        },
    )
    assert res.status_code == 200
    body = res.json()
    assert body["success"] is True
    assert body["optIn"] == {"required": False, "emailQueued": False}
    sub = body["subscriber"]
    assert sub["id"].startswith("sub_")
    assert (sub["created"], sub["updated"], sub["skipped"]) == (True, False, False)
    assert sub["email"] == "jane.doe@example.com"
    assert sub["externalId"] == "cust_1"
    assert (sub["firstName"], sub["lastName"]) == ("Jane", "Doe")
    assert sub["tags"] == ["shopper", "vip"]
    assert sub["customAttributes"] == {"plan": "free"}
    assert sub["status"] == "active"
    assert sub["smsStatus"] == "subscribed"
    assert sub["emailProvider"] is None
    assert sub["timezone"] == "Europe/Paris"
    assert sub["createdAt"].endswith("Z") and sub["updatedAt"].endswith("Z")
    assert sub["unsubscribedAt"] is None


def test_subscriber_create_default_strategy_is_skip(app_client):
    first = _create(app_client, email="a@example.com", firstName="Ann")
    again = _create(app_client, email="A@Example.com", firstName="Other", lastName="New", tags=["x"])
    assert again["id"] == first["id"]
    assert (again["created"], again["updated"], again["skipped"]) == (False, False, True)
    assert (again["firstName"], again["lastName"], again["tags"]) == ("Ann", None, [])


def test_subscriber_create_merge_fills_only_missing_fields(app_client):
    _create(app_client, email="m@example.com", firstName="Ann", customAttributes={"plan": "free"})
    merged = _create(
        app_client,
        email="m@example.com",
        firstName="Other",
        lastName="Lee",
        customAttributes={"plan": "pro", "city": "Oslo"},
        tags=["new"],
        duplicateStrategy="merge",
    )
    assert (merged["created"], merged["updated"], merged["skipped"]) == (False, True, False)
    assert (merged["firstName"], merged["lastName"]) == ("Ann", "Lee")
    assert merged["customAttributes"] == {"plan": "free", "city": "Oslo"}
    assert merged["tags"] == ["new"]


def test_subscriber_create_overwrite_replaces_but_never_reactivates(app_client):
    _create(app_client, email="o@example.com", firstName="Ann", status="unsubscribed")
    over = _create(
        app_client,
        email="o@example.com",
        firstName="Bea",
        customAttributes={"plan": "pro"},
        status="active",
        duplicateStrategy="overwrite",
    )
    assert over["updated"] is True
    assert over["firstName"] == "Bea"
    assert over["customAttributes"] == {"plan": "pro"}
    assert over["status"] == "unsubscribed"
    assert over["unsubscribedAt"] is not None


def test_subscriber_create_with_lists_by_name_and_id_creates_missing_list(app_client):
    existing = app_client.post("/lists", {"name": "VIP"}).json()["list"]
    sub = _create(app_client, email="l@example.com", lists=[existing["id"], "Newsletter"])
    detail = app_client.get("/subscribers/l@example.com").json()["subscriber"]
    assert sorted(m["name"] for m in detail["lists"]) == ["Newsletter", "VIP"]
    assert detail["id"] == sub["id"]
    names = [item["name"] for item in app_client.get("/lists").json()["lists"]]
    assert sorted(names) == ["Newsletter", "VIP"]


def test_subscriber_create_created_at_only_moves_earlier(app_client):
    first = _create(app_client, email="c@example.com", createdAt="2020-01-02T03:04:05")
    assert first["createdAt"] == "2020-01-02T03:04:05.000Z"
    later = _create(app_client, email="c@example.com", createdAt="2021-01-01T00:00:00Z")
    assert later["createdAt"] == "2020-01-02T03:04:05.000Z"
    earlier = _create(app_client, email="c@example.com", createdAt="2019-06-01T00:00:00+02:00")
    assert earlier["createdAt"] == "2019-05-31T22:00:00.000Z"


def test_subscriber_create_rejects_bad_input_with_envelope(app_client):
    for body in (
        {"email": "not-an-email"},
        {"firstName": "nobody"},
        {"email": "x@example.com", "duplicateStrategy": "replace"},
        {"email": "x@example.com", "timezone": "Mars/Olympus"},
        {"email": "x@example.com", "status": "pending"},
    ):
        res = app_client.post("/subscribers", body)
        assert res.status_code == 400, (body, res.text)
        assert res.json()["success"] is False
        assert res.json()["error"]


def test_subscriber_create_null_is_treated_as_absent(app_client):
    sub = _create(app_client, email="n@example.com", lastName=None, tags=None, customAttributes=None)
    assert sub["lastName"] is None and sub["tags"] == []


# -- read ------------------------------------------------------------------------------------------


def test_subscriber_get_by_plus_email_path_is_literal_and_case_insensitive(app_client):
    sub = _create(app_client, email="a+b@example.com")
    _create(app_client, email="a b@example.com".replace(" ", "") + ".other")
    for path in ("/subscribers/a+b@example.com", "/subscribers/A+B@Example.COM"):
        res = app_client.get(path)
        assert res.status_code == 200, res.text
        assert res.json()["subscriber"]["id"] == sub["id"]
        assert res.json()["subscriber"]["email"] == "a+b@example.com"


def test_subscriber_get_detail_has_lists_activity_and_stats(app_client):
    _create(app_client, email="d@example.com", lists=["News"], tags=["t"])
    app_client.post(
        "/subscribers/events", {"email": "d@example.com", "event": "viewed", "properties": {"a": 1}}
    )
    detail = app_client.get("/subscribers/d@example.com").json()["subscriber"]
    assert [m["name"] for m in detail["lists"]] == ["News"]
    membership = detail["lists"][0]
    assert membership["subscribedAt"].endswith("Z") and membership["unsubscribedAt"] is None
    assert membership["isPrivate"] is False
    assert detail["activity"][0]["eventName"] == "viewed"
    assert detail["activity"][0]["properties"] == {"a": 1}
    assert {a["eventName"] for a in detail["activity"]} >= {"subscriber.tag_added", "subscriber.list_added"}
    assert detail["emailStats"]["sent"] == 0
    assert detail["sequenceEnrollments"] == []


def test_subscriber_get_by_external_id_query_and_path(app_client):
    sub = _create(app_client, email="e@example.com", externalId="user/42")
    by_query = app_client.get("/subscribers/external", params={"externalId": "user/42"})
    assert by_query.status_code == 200
    assert by_query.json()["subscriber"]["id"] == sub["id"]
    _create(app_client, email="f@example.com", externalId="u43")
    by_path = app_client.get("/subscribers/external/u43")
    assert by_path.status_code == 200
    assert by_path.json()["subscriber"]["email"] == "f@example.com"


def test_subscriber_unknown_is_404_with_envelope(app_client):
    for res in (
        app_client.get("/subscribers/nobody@example.com"),
        app_client.get("/subscribers/external", params={"externalId": "nope"}),
        app_client.get("/subscribers/external/nope"),
        app_client.patch("/subscribers/nobody@example.com", {"firstName": "x"}),
        app_client.delete("/subscribers/nobody@example.com"),
        app_client.delete("/subscribers/external/nope"),
    ):
        assert res.status_code == 404, res.text
        assert res.json()["success"] is False
        assert res.json()["code"] == "not_found"


def test_subscriber_external_query_requires_external_id(app_client):
    res = app_client.get("/subscribers/external")
    assert res.status_code == 400
    assert res.json()["success"] is False


def test_subscriber_fixed_paths_are_not_captured_by_email(app_client):
    _create(app_client, email="tags@example.com")
    for path in ("/subscribers/tags", "/subscribers/events", "/subscribers/bulk"):
        assert app_client.get(path).status_code == 404
    assert app_client.post("/subscribers/tags", {"email": "tags@example.com", "tag": "x"}).status_code == 200


# -- update ----------------------------------------------------------------------------------------


def test_subscriber_update_replaces_attributes_by_default_and_merges_on_request(app_client):
    _create(app_client, email="u@example.com", customAttributes={"a": 1, "b": 2})
    merged = app_client.patch(
        "/subscribers/u@example.com",
        {"customAttributes": {"b": 3, "c": 4}, "customAttributesStrategy": "merge"},
    ).json()["subscriber"]
    assert merged["customAttributes"] == {"a": 1, "b": 3, "c": 4}
    replaced = app_client.patch("/subscribers/u@example.com", {"customAttributes": {"z": 0}}).json()
    assert replaced["subscriber"]["customAttributes"] == {"z": 0}


def test_subscriber_update_tags_replace_the_set_and_append_events(app_client, db):
    sub = _create(app_client, email="t@example.com", tags=["a", "b"])
    res = app_client.patch("/subscribers/t@example.com", {"tags": ["b", "c"], "firstName": "Tia"})
    assert res.status_code == 200
    body = res.json()["subscriber"]
    assert body["tags"] == ["b", "c"] and body["firstName"] == "Tia"
    ws = app_client.tenant.id
    added = [e.properties["tag"] for e in _events(db, ws, "subscriber.tag_added")]
    removed = [e for e in _events(db, ws, "subscriber.tag_removed")]
    assert sorted(added) == ["a", "b", "c"]
    assert [e.properties for e in removed] == [{"tag": "a"}]
    assert all(e.source == "cartback" and e.subscriber_id == sub["id"] for e in removed)


def test_subscriber_update_status_sets_and_clears_unsubscribed_at(app_client):
    _create(app_client, email="s@example.com")
    off = app_client.patch("/subscribers/s@example.com", {"status": "unsubscribed"}).json()["subscriber"]
    assert off["status"] == "unsubscribed" and off["unsubscribedAt"].endswith("Z")
    on = app_client.patch("/subscribers/s@example.com", {"status": "active"}).json()["subscriber"]
    assert on["status"] == "active" and on["unsubscribedAt"] is None
    complained = app_client.patch("/subscribers/s@example.com", {"status": "complained"}).json()
    assert complained["subscriber"]["status"] == "unsubscribed"


def test_subscriber_update_email_to_anothers_is_409(app_client):
    _create(app_client, email="one@example.com")
    _create(app_client, email="two@example.com", externalId="x2")
    res = app_client.patch("/subscribers/one@example.com", {"email": "TWO@example.com"})
    assert res.status_code == 409
    assert res.json()["success"] is False
    res = app_client.patch("/subscribers/one@example.com", {"externalId": "x2"})
    assert res.status_code == 409
    moved = app_client.patch("/subscribers/one@example.com", {"email": "uno@example.com"})
    assert moved.json()["subscriber"]["email"] == "uno@example.com"
    assert app_client.get("/subscribers/uno@example.com").status_code == 200


def test_subscriber_update_by_external_id_body_external_id_is_the_new_one(app_client):
    sub = _create(app_client, email="x@example.com", externalId="old")
    res = app_client.patch(
        "/subscribers/external", {"externalId": "new", "lastName": "Q"}, params={"externalId": "old"}
    )
    assert res.status_code == 200
    assert res.json()["subscriber"]["externalId"] == "new"
    assert app_client.get("/subscribers/external/old").status_code == 404
    by_path = app_client.patch("/subscribers/external/new", {"firstName": "P"})
    assert by_path.json()["subscriber"]["id"] == sub["id"]
    assert by_path.json()["subscriber"]["firstName"] == "P"


# -- delete ----------------------------------------------------------------------------------------


def test_subscriber_delete_by_email_and_external_id_answers_json(app_client, db):
    _create(app_client, email="del+1@example.com", tags=["t"])
    _create(app_client, email="del2@example.com", externalId="d2")
    _create(app_client, email="del3@example.com", externalId="d3")
    for res in (
        app_client.delete("/subscribers/DEL+1@example.com"),
        app_client.delete("/subscribers/external", params={"externalId": "d2"}),
        app_client.delete("/subscribers/external/d3"),
    ):
        assert res.status_code == 200
        assert res.json() == {"success": True, "deleted": True}
    count = db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count())
            .select_from(subscribers)
            .where(subscribers.c.workspace_id == app_client.tenant.id)
        ).scalar_one()
    )
    assert count == 0
    assert app_client.get("/subscribers/del+1@example.com").status_code == 404


# -- list ------------------------------------------------------------------------------------------


def test_subscriber_list_pages_and_cursor_cover_everyone_once(app_client):
    emails = [f"p{i:02d}@example.com" for i in range(7)]
    for email in emails:
        _create(app_client, email=email)
    first = app_client.get("/subscribers", params={"limit": 3}).json()
    assert first["pagination"]["total"] == 7 and first["pagination"]["totalPages"] == 3
    assert first["pagination"]["hasMore"] is True
    seen = [s["email"] for s in first["subscribers"]]
    cursor = first["pagination"]["nextCursor"]
    while cursor:
        page = app_client.get("/subscribers", params={"limit": 3, "cursor": cursor}).json()
        assert page["pagination"]["total"] is None
        seen += [s["email"] for s in page["subscribers"]]
        cursor = page["pagination"]["nextCursor"]
    assert seen == list(reversed(emails))  # newest first
    by_page = [
        s["email"]
        for n in (1, 2, 3)
        for s in app_client.get("/subscribers", params={"limit": 3, "page": n}).json()["subscribers"]
    ]
    assert by_page == seen
    last = app_client.get("/subscribers", params={"limit": 3, "page": 3}).json()["pagination"]
    assert last["hasMore"] is False and last["nextCursor"] is None


def test_subscriber_list_rejects_bad_paging(app_client):
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"page": 0},
        {"cursor": "garbage!"},
        {"page": 1, "cursor": "x"},
    ):
        res = app_client.get("/subscribers", params=params)
        assert res.status_code == 400, params
        assert res.json()["success"] is False


def test_subscriber_list_filters(app_client):
    _create(app_client, email="alice@example.com", firstName="Alice", tags=["a", "b"], lists=["L1"])
    _create(app_client, email="bob@example.com", externalId="crm-bob", tags=["a"])
    _create(app_client, email="carol@example.com", status="unsubscribed", tags=["b"], lists=["L1"])

    def emails(**params):
        res = app_client.get("/subscribers", params=params)
        assert res.status_code == 200, res.text
        return sorted(s["email"] for s in res.json()["subscribers"])

    assert emails() == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert emails(status="active") == ["alice@example.com", "bob@example.com"]
    assert emails(status="unsubscribed") == ["carol@example.com"]
    assert emails(status="all") == emails()
    assert emails(tags="a") == ["alice@example.com", "bob@example.com"]
    assert emails(tags="a,b") == ["alice@example.com"]  # must carry all of them
    assert emails(tags="a,unknown") == []
    assert emails(email="BOB") == ["bob@example.com"]
    assert emails(query="ALIC") == ["alice@example.com"]
    assert emails(query="crm-") == ["bob@example.com"]
    assert emails(query="100%_") == []
    list_id = app_client.get("/lists").json()["lists"][0]["id"]
    assert emails(list="L1") == ["alice@example.com", "carol@example.com"]
    assert emails(listId=list_id) == ["alice@example.com", "carol@example.com"]
    assert emails(listName="L1", status="active") == ["alice@example.com"]
    assert app_client.get("/subscribers", params={"listId": "lst_nope"}).status_code == 404


# -- tags ------------------------------------------------------------------------------------------


def test_tag_add_creates_subscriber_and_tag_once(app_client, db):
    res = app_client.post("/subscribers/tags", {"email": "new@example.com", "tag": "vip", "firstName": "Nia"})
    assert res.status_code == 200
    body = res.json()
    assert body["subscriber"]["created"] is True and body["subscriber"]["tags"] == ["vip"]
    assert (
        body["tag"]["name"] == "vip"
        and body["tag"]["created"] is True
        and body["tag"]["id"].startswith("tag_")
    )
    again = app_client.post("/subscribers/tags", {"email": "NEW@example.com", "tag": "vip"}).json()
    assert again["subscriber"]["created"] is False
    assert again["tag"] == {**body["tag"], "created": False}
    assert len(_events(db, app_client.tenant.id, "subscriber.tag_added")) == 1
    assert app_client.get("/subscribers/new@example.com").json()["subscriber"]["firstName"] == "Nia"


def test_tag_add_by_unknown_external_id_alone_is_404(app_client):
    res = app_client.post("/subscribers/tags", {"externalId": "ghost", "tag": "vip"})
    assert res.status_code == 404
    assert app_client.post("/subscribers/tags", {"tag": "vip"}).status_code == 400


def test_tag_remove(app_client, db):
    _create(app_client, email="r@example.com", externalId="r1", tags=["a", "b"])
    res = app_client.post("/subscribers/tags/remove", {"externalId": "r1", "tag": "a"})
    assert res.status_code == 200
    body = res.json()
    assert body["tag"] == {"name": "a", "removed": True}
    assert body["subscriber"]["tags"] == ["b"]
    again = app_client.post("/subscribers/tags/remove", {"email": "r@example.com", "tag": "a"}).json()
    assert again["tag"]["removed"] is False
    assert len(_events(db, app_client.tenant.id, "subscriber.tag_removed")) == 1
    missing = app_client.post("/subscribers/tags/remove", {"email": "nobody@example.com", "tag": "a"})
    assert missing.status_code == 404 and missing.json()["success"] is False


def test_tags_bulk_on_one_contact(app_client):
    _create(app_client, email="b@example.com", tags=["old"])
    app_client.post("/subscribers/tags", {"email": "other@example.com", "tag": "premium"})
    res = app_client.post(
        "/subscribers/tags/bulk", {"email": "b@example.com", "tags": ["premium", "old", "vip"]}
    )
    assert res.status_code == 200
    body = res.json()
    assert body["subscriber"]["created"] is False
    assert body["subscriber"]["tags"] == ["old", "premium", "vip"]
    assert body["tags"] == {"added": ["premium", "vip"], "created": ["vip"]}


def test_bulk_tags_add_and_remove_across_contacts(app_client, db):
    a = _create(app_client, email="a@example.com", tags=["x"])
    _create(app_client, email="b@example.com", externalId="eb")
    body = {
        "tags": ["x"],
        "emails": ["A@example.com", "ghost@example.com"],
        "externalIds": ["eb", "ghost"],
        "subscriberIds": [a["id"], "sub_ghost"],
    }
    res = app_client.post("/subscribers/bulk/tags/add", body)
    assert res.status_code == 200
    added = res.json()
    assert (added["requested"], added["matched"], added["updated"], added["unchanged"], added["failed"]) == (
        6,
        2,
        1,
        1,
        0,
    )
    assert added["notFound"] == {
        "emails": ["ghost@example.com"],
        "externalIds": ["ghost"],
        "subscriberIds": ["sub_ghost"],
    }
    assert added["tags"] == ["x"] and added["failures"] == []
    removed = app_client.post(
        "/subscribers/bulk/tags/remove", {"tags": ["x"], "emails": ["a@example.com", "b@example.com"]}
    )
    assert (removed.json()["matched"], removed.json()["updated"]) == (2, 2)
    assert app_client.get("/subscribers", params={"tags": "x"}).json()["subscribers"] == []
    assert len(_events(db, app_client.tenant.id, "subscriber.tag_removed")) == 2
    assert app_client.post("/subscribers/bulk/tags/add", {"tags": ["x"]}).status_code == 400


# -- isolation -------------------------------------------------------------------------------------


def test_subscriber_other_workspace_cannot_see_or_change(app_client):
    _create(app_client, email="mine@example.com", externalId="m1", tags=["t"])
    other = app_client.as_other_workspace()
    assert app_client.get("/subscribers/mine@example.com", headers=other).status_code == 404
    assert app_client.get("/subscribers/external/m1", headers=other).status_code == 404
    assert (
        app_client.patch("/subscribers/mine@example.com", {"firstName": "X"}, headers=other).status_code
        == 404
    )
    assert app_client.delete("/subscribers/mine@example.com", headers=other).status_code == 404
    assert (
        app_client.post(
            "/subscribers/tags/remove", {"email": "mine@example.com", "tag": "t"}, headers=other
        ).status_code
        == 404
    )
    bulk = app_client.post(
        "/subscribers/bulk/tags/add", {"tags": ["y"], "emails": ["mine@example.com"]}, headers=other
    )
    assert bulk.json()["matched"] == 0
    assert app_client.get("/subscribers", headers=other).json()["subscribers"] == []
    # Creating the same email there makes that workspace's own subscriber.
    theirs = app_client.post("/subscribers", {"email": "mine@example.com"}, headers=other).json()[
        "subscriber"
    ]
    mine = app_client.get("/subscribers/mine@example.com").json()["subscriber"]
    assert theirs["id"] != mine["id"]
    assert (mine["firstName"], mine["tags"]) == (None, ["t"])
