"""Key scopes (api/scopes.py) and key lifetimes through the real app: what an events:write, a read and an
admin key may do, the 403 that names the missing scope, and 401 for revoked and expired keys."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from cartback import errors
from cartback.app import create_app
from cartback.settings import Settings
from cartback.store import workspaces
from cartback.store.db import Database
from cartback.testing import FrozenClock

START = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)
CHECKOUT = {"checkoutId": "chk-scope", "customer": {"email": "scope@example.com"}, "totalCents": 500}
ORDER = {
    "orderId": "ord-scope",
    "customer": {"email": "scope@example.com"},
    "totalCents": 500,
    "currency": "USD",
}
EVENT = {"email": "scope@example.com", "event": "page.viewed", "eventId": "evt-scope"}
SEQUENCE = {
    "name": "Scoped",
    "trigger": "event_received",
    "eventName": "Checkout Started",
    "steps": [{"type": "email", "delay": {"hours": 1}, "subject": "Cart", "html": "<p>x</p>"}],
}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def http(db_url: str, clock: FrozenClock) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, rate_limit_burst=0, rate_limit_steady=0)
    with TestClient(create_app(settings, clock=clock, run_worker=False), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def workspace(db: Database) -> str:
    import secrets

    name = f"scopes-{secrets.token_hex(4)}"
    return db.write_sync(lambda tx: workspaces.create_workspace(tx, name, START).id)


@pytest.fixture
def new_key(db: Database, workspace: str) -> Callable[..., str]:
    def make(*scopes: str, expires_at: datetime | None = None) -> str:
        def create(tx: workspaces.Tx) -> str:
            kwargs = {"scopes": scopes} if scopes else {}
            return workspaces.create_api_key(tx, workspace, START, expires_at=expires_at, **kwargs)[1]

        return db.write_sync(create)

    return make


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_scopes_events_write_key_ingests_but_may_not_administer_or_read(http, new_key):
    key = new_key("events:write")
    for path, body in [
        ("/checkouts", CHECKOUT),
        ("/orders", ORDER),
        ("/subscribers/events", EVENT),
        ("/subscribers/events/bulk", {"email": "scope@example.com", "events": [{"name": "page.viewed"}]}),
        ("/subscribers", {"email": "signup@example.com"}),
    ]:
        res = http.post("/api/v1" + path, json=body, headers=auth(key))
        assert res.status_code == 200, (path, res.text)

    created = http.post("/api/v1/sequences", json=SEQUENCE, headers=auth(key))
    assert created.status_code == 403
    assert created.json()["success"] is False and created.json()["code"] == "forbidden"
    assert "'admin' scope" in created.json()["error"]

    for path in ("/subscribers", "/subscribers/scope@example.com", "/sequences"):
        read = http.get("/api/v1" + path, headers=auth(key))
        assert read.status_code == 403, path
        assert "'read' scope" in read.json()["error"]
        assert "it has: events:write" in read.json()["error"]

    # Other writes (tags, suppressions, webhooks) are administration.
    tag = http.post(
        "/api/v1/subscribers/tags", json={"email": "scope@example.com", "tag": "vip"}, headers=auth(key)
    )
    assert tag.status_code == 403 and "'admin' scope" in tag.json()["error"]


def test_scopes_read_key_reads_but_may_not_write(http, new_key):
    admin, reader = new_key(), new_key("read")
    assert http.post("/api/v1/checkouts", json=CHECKOUT, headers=auth(admin)).status_code == 200
    listed = http.get("/api/v1/subscribers", headers=auth(reader))
    assert listed.status_code == 200
    assert http.get("/api/v1/subscribers/scope@example.com", headers=auth(reader)).status_code == 200
    ingest = http.post("/api/v1/checkouts", json=CHECKOUT, headers=auth(reader))
    assert ingest.status_code == 403 and "'events:write' scope" in ingest.json()["error"]
    assert http.post("/api/v1/sequences", json=SEQUENCE, headers=auth(reader)).status_code == 403


def test_scopes_admin_key_may_do_everything(http, new_key):
    admin = new_key("admin")
    assert http.post("/api/v1/checkouts", json=CHECKOUT, headers=auth(admin)).status_code == 200
    assert http.post("/api/v1/sequences", json=SEQUENCE, headers=auth(admin)).status_code == 200
    assert http.get("/api/v1/subscribers", headers=auth(admin)).status_code == 200


def test_scopes_inbound_notifications_need_only_events_write(http, new_key):
    key = new_key("events:write")
    notice = {"type": "bounce", "email": "bounced@example.com", "id": "n-1"}
    assert http.post("/api/v1/inbound/bounces", json=notice, headers=auth(key)).status_code == 200
    reader = http.post("/api/v1/inbound/bounces", json=notice, headers=auth(new_key("read")))
    assert reader.status_code == 403


def test_scopes_revoked_key_gets_401(http, new_key, db, workspace):
    key = new_key()
    assert http.get("/api/v1/subscribers", headers=auth(key)).status_code == 200
    (row,) = db.read_sync(lambda tx: workspaces.list_api_keys(tx, workspace))
    db.write_sync(lambda tx: workspaces.revoke_api_key(tx, workspace, row.prefix, START))
    http.app.state.services.keys.forget()  # what the key cache does by itself within seconds
    res = http.get("/api/v1/subscribers", headers=auth(key))
    assert res.status_code == 401
    assert res.json() == {"success": False, "error": "this API key has been revoked", "code": "unauthorized"}


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, "missing API key: send 'Authorization: Bearer <key>'"),
        (
            "Basic dXNlcjpwdw==",
            "wrong authorization scheme: got 'Basic'; send the API key as 'Authorization: Bearer <key>'",
        ),
        (
            "KEY",
            "wrong authorization scheme: got a single word (a bare key?); "
            "send the API key as 'Authorization: Bearer <key>'",
        ),
        ("Bearer ", "missing API key after 'Bearer': send 'Authorization: Bearer <key>'"),
    ],
    ids=["none", "basic", "bare-key", "empty-bearer"],
)
def test_scopes_a_wrong_authorization_scheme_is_named(http, new_key, header, error):
    key = new_key()
    headers = {} if header is None else {"Authorization": header.replace("KEY", key)}
    res = http.get("/api/v1/subscribers", headers=headers)
    assert res.status_code == 401
    assert res.json()["error"] == error
    assert key not in res.text


def test_scopes_key_expires_at_its_time(http, new_key, clock):
    key = new_key("events:write", expires_at=START + timedelta(days=30))
    assert http.post("/api/v1/checkouts", json=CHECKOUT, headers=auth(key)).status_code == 200
    clock.advance(days=30)
    res = http.post("/api/v1/checkouts", json=CHECKOUT, headers=auth(key))
    assert res.status_code == 401
    assert res.json()["error"] == "this API key has expired"


def test_scopes_openapi_documents_the_scope_of_every_operation(http):
    paths = http.get("/openapi.json").json()["paths"]
    scoped = {
        (method, path): op["x-cartback-scope"]
        for path, item in paths.items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
    }
    assert scoped[("post", "/api/v1/checkouts")] == "events:write"
    assert scoped[("post", "/api/v1/subscribers")] == "events:write"
    assert scoped[("get", "/api/v1/subscribers")] == "read"
    assert scoped[("post", "/api/v1/sequences")] == "admin"
    assert scoped[("delete", "/api/v1/webhooks/{webhook_id}")] == "admin"
    assert set(scoped.values()) == {"events:write", "read", "admin"}
    assert {op["x-cartback-scope"] for op in paths["/v1/batch"].values()} == {"events:write"}


def test_scopes_store_refuses_unknown_scopes_and_past_expiry(db, workspace):
    with pytest.raises(errors.InvalidInput, match="unknown scope"):
        db.write_sync(lambda tx: workspaces.create_api_key(tx, workspace, START, scopes=("write",)))
    with pytest.raises(errors.InvalidInput, match="already past"):
        db.write_sync(
            lambda tx: workspaces.create_api_key(
                tx, workspace, START, expires_at=START - timedelta(seconds=1)
            )
        )


def test_scopes_revoke_finds_keys_only_in_their_own_workspace(db, workspace, new_key):
    new_key()
    (row,) = db.read_sync(lambda tx: workspaces.list_api_keys(tx, workspace))
    other = db.write_sync(lambda tx: workspaces.create_workspace(tx, f"other-{row.id}", START).id)
    with pytest.raises(errors.NotFound):
        db.write_sync(lambda tx: workspaces.revoke_api_key(tx, other, row.id, START))
    first = db.write_sync(lambda tx: workspaces.revoke_api_key(tx, workspace, row.id, START))
    again = db.write_sync(lambda tx: workspaces.revoke_api_key(tx, workspace, row.id, START + timedelta(1)))
    assert first.revoked_at == again.revoked_at == START


def test_scopes_segment_needs_events_write(http, new_key):
    import base64

    batch = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"email": "seg@example.com"}, "messageId": "m1"}
        ]
    }

    def basic(key: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    assert http.post("/v1/batch", json=batch, headers=basic(new_key("events:write"))).status_code == 200
    refused = http.post("/v1/batch", json=batch, headers=basic(new_key("read")))
    assert refused.status_code == 403
    assert refused.json()["success"] is False and refused.json()["code"] == "forbidden"
    assert "'events:write' scope" in refused.json()["message"]


def test_scopes_klaviyo_events_need_events_write(http, new_key):
    body = {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {},
                "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed Product"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "k@example.com"}}},
            },
        }
    }

    def headers(key: str) -> dict[str, str]:
        return {"Authorization": f"Klaviyo-API-Key {key}", "revision": "2026-10-15"}

    assert http.post("/api/events", json=body, headers=headers(new_key("events:write"))).status_code == 202
    refused = http.post("/api/events", json=body, headers=headers(new_key("read")))
    assert refused.status_code == 403
    (error,) = refused.json()["errors"]
    assert error["code"] == "permission_denied" and "'events:write' scope" in error["detail"]


PERSON = {
    "email": "known@example.com",
    "firstName": "Jane",
    "lastName": "Private",
    "phone": "+15555550100",
    "tags": ["vip"],
    "customAttributes": {"birthday": "1990-01-01"},
}


def test_scopes_events_write_answers_a_known_subscriber_with_ids_and_flags_only(http, new_key):
    from sequenzy.subscribers.types.create_subscribers_response import CreateSubscribersResponse

    admin = new_key("admin")
    assert http.post("/api/v1/subscribers", json=PERSON, headers=auth(admin)).status_code == 200
    key = new_key("events:write")
    res = http.post("/api/v1/subscribers", json={"email": PERSON["email"]}, headers=auth(key))
    assert res.status_code == 200, res.text
    body = res.json()
    assert set(body["subscriber"]) == {"id", "created", "updated", "skipped"}
    assert body["subscriber"]["id"].startswith("sub_") and body["subscriber"]["skipped"] is True
    for secret in ("Jane", "Private", "5555550100", "vip", "1990-01-01"):
        assert secret not in res.text
    parsed = CreateSubscribersResponse.model_validate(body)  # the official SDK's model takes it
    assert parsed.subscriber is not None and parsed.subscriber.id == body["subscriber"]["id"]
    # A key that may read gets the whole subscriber, as before.
    full = http.post("/api/v1/subscribers", json={"email": PERSON["email"]}, headers=auth(admin)).json()
    assert full["subscriber"]["firstName"] == "Jane" and full["subscriber"]["tags"] == ["vip"]
    assert full["subscriber"]["customAttributes"] == {"birthday": "1990-01-01"}


def test_scopes_events_write_profile_import_answers_the_id_only(http, new_key):
    from openapi_client.models.post_profile_response import PostProfileResponse

    admin, key = new_key("admin"), new_key("events:write")

    def profile_import(secret: str, attributes: dict[str, object]) -> object:
        return http.post(
            "/api/profile-import",
            json={"data": {"type": "profile", "attributes": attributes}},
            headers={"Authorization": f"Klaviyo-API-Key {secret}", "revision": "2026-10-15"},
        )

    made = profile_import(
        admin,
        {
            "email": "k@example.com",
            "first_name": "Kim",
            "phone_number": "+15555550111",
            "properties": {"p": 1},
        },
    )
    assert made.status_code == 201, made.text
    again = profile_import(key, {"email": "k@example.com"})
    assert again.status_code == 200, again.text
    data = again.json()["data"]
    assert data["id"] == made.json()["data"]["id"] and data["attributes"] == {}
    for secret in ("Kim", "5555550111", '"p"'):
        assert secret not in again.text
    assert PostProfileResponse.from_dict(again.json()).data.id == data["id"]  # the official SDK's model
    new = profile_import(key, {"email": "new@example.com", "first_name": "Nora"})
    assert new.status_code == 201 and new.json()["data"]["attributes"] == {} and "Nora" not in new.text
    full = profile_import(admin, {"email": "k@example.com"}).json()["data"]["attributes"]
    assert full["first_name"] == "Kim" and full["properties"] == {"p": 1}
