"""Outbound webhooks on real SQLite and PostgreSQL: the API, and deliveries to a real HTTP receiver that
verifies every signature with the algorithm docs/webhooks.md documents (written out here, not imported)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from cartback import metrics
from cartback.core import webhooks
from cartback.scheduler import webhook_sender
from cartback.store import webhooks as store
from cartback.store.db import Database
from cartback.store.tables import webhook_deliveries, webhook_endpoints, webhook_secrets
from cartback.testing import FrozenClock

if TYPE_CHECKING:
    from fastapi.testclient import TestClient
    from tests.conftest import Tenant

# -- the receiver ------------------------------------------------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> dict[str, Any]:
    """docs/webhooks.md, "Verifying": the receiver side of the scheme, independent of cartback's code."""
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        raise ValueError("timestamp outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"v1:{timestamp}:".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(body)  # type: ignore[no-any-return]
    raise ValueError("no valid signature")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A real HTTP server in a thread. Answers each POST with the next status of `script` (then 200)."""

    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    delay: float = 0.0
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.script.pop(0) if receiver.script else 200
                reply = json.dumps({"ok": status < 300, "n": len(receiver.received)}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.json["type"] == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


# -- the app, with a fast worker and fast retries ----------------------------------------------------


@dataclass
class ApiClient:
    http: TestClient
    tenant: Tenant
    make_workspace: Callable[[], Tenant]

    def post(self, path: str, json: object = None) -> Any:
        return self.http.post("/api/v1" + path, json=json)

    def get(self, path: str) -> Any:
        return self.http.get("/api/v1" + path)

    def patch(self, path: str, json: object = None) -> Any:
        return self.http.patch("/api/v1" + path, json=json)

    def delete(self, path: str) -> Any:
        return self.http.delete("/api/v1" + path)

    def as_other_workspace(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.make_workspace().key}"}


@pytest.fixture
def api(db_url: str, make_workspace: Callable[[], Tenant]) -> Iterator[ApiClient]:
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings

    settings = Settings(
        database_url=db_url,
        tick_seconds=0.05,
        webhook_retry_base_seconds=0.1,
        webhook_timeout_seconds=5,
        webhook_disable_after_failures=3,
        webhook_disable_after_seconds=0,
        webhook_allow_private=True,  # the receivers listen on 127.0.0.1
    )
    tenant = make_workspace()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {tenant.key}"
        yield ApiClient(client, tenant, make_workspace)


def create_hook(
    api: ApiClient, url: str, events: list[str] | None = None, name: str = "hook"
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "url": url}
    if events is not None:
        body["events"] = events
    r = api.post("/webhooks", body)
    assert r.status_code == 200, r.text
    return r.json()["webhook"]  # type: ignore[no-any-return]


def deliveries(api: ApiClient, hook_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/webhooks/{hook_id}/deliveries")
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]  # type: ignore[no-any-return]


def settled(api: ApiClient, hook_id: str, count: int = 1) -> list[dict[str, Any]]:
    """Deliveries once `count` of them exist and none is pending or in flight."""

    def done() -> list[dict[str, Any]] | None:
        found = deliveries(api, hook_id)
        if len(found) >= count and all(d["status"] not in ("pending", "delivering") for d in found):
            return found
        return None

    return wait_for(done)  # type: ignore[no-any-return]


# -- API -------------------------------------------------------------------------------------------


def test_webhooks_crud_secret_shown_once(api: ApiClient) -> None:
    hook = create_hook(api, "https://example.com/in", ["subscriber.created", "email.opened"], name="CRM")
    assert hook["signingSecret"].startswith("whsec_")
    assert hook["status"] == "enabled" and hook["events"] == ["subscriber.created", "email.opened"]
    assert [s["prefix"] for s in hook["signingSecrets"]] == [hook["signingSecret"][:12]]
    assert hook["consecutiveFailures"] == 0 and hook["autoDisabledAt"] is None

    listed = api.get("/webhooks").json()
    assert listed["success"] is True
    assert [w["id"] for w in listed["webhooks"]] == [hook["id"]]
    assert "signingSecret" not in listed["webhooks"][0]
    assert hook["signingSecret"] not in json.dumps(listed)

    r = api.patch(f"/webhooks/{hook['id']}", {"name": "CRM 2", "url": "http://example.org/x", "events": None})
    assert r.status_code == 200, r.text
    changed = r.json()["webhook"]
    assert (changed["name"], changed["url"], changed["events"]) == (
        "CRM 2",
        "http://example.org/x",
        ["subscriber.created", "email.opened"],
    )
    r = api.patch(f"/webhooks/{hook['id']}", {"status": "disabled"})
    assert r.json()["webhook"]["status"] == "disabled"

    all_types = create_hook(api, "https://example.com/all")
    assert all_types["events"] == list(webhooks.EVENT_TYPES)

    r = api.delete(f"/webhooks/{hook['id']}")
    assert r.status_code == 200 and r.json()["success"] is True and r.json()["webhook"]["id"] == hook["id"]
    assert [w["id"] for w in api.get("/webhooks").json()["webhooks"]] == [all_types["id"]]
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 404


def test_webhooks_other_workspace_sees_nothing(api: ApiClient) -> None:
    hook = create_hook(api, "https://example.com/in")
    other = api.as_other_workspace()
    assert api.http.get("/api/v1/webhooks", headers=other).json()["webhooks"] == []
    base = f"/api/v1/webhooks/{hook['id']}"
    secret_id = hook["signingSecrets"][0]["id"]
    for method, path in [
        ("PATCH", base),
        ("DELETE", base),
        ("POST", base + "/test"),
        ("POST", base + "/secrets"),
        ("DELETE", base + f"/secrets/{secret_id}"),
        ("GET", base + "/deliveries"),
        ("GET", base + "/deliveries/whd_x/attempts"),
        ("POST", base + "/deliveries/whd_x/replay"),
    ]:
        r = api.http.request(
            method, path, headers=other, json={"name": "stolen"} if method == "PATCH" else None
        )
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["success"] is False
    assert api.get("/webhooks").json()["webhooks"][0]["name"] == "hook"
    assert len(api.get("/webhooks").json()["webhooks"][0]["signingSecrets"]) == 1


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("POST", "/webhooks", {"name": "x", "url": "ftp://example.com/"}),
        ("POST", "/webhooks", {"name": "x", "url": "not a url"}),
        ("POST", "/webhooks", {"name": "x", "url": "https://"}),
        ("POST", "/webhooks", {"name": "x", "url": "http://example.com:99999/"}),
        ("POST", "/webhooks", {"name": "x"}),
        ("POST", "/webhooks", {"url": "https://example.com/"}),
        ("POST", "/webhooks", {"name": "", "url": "https://example.com/"}),
        ("POST", "/webhooks", {"name": "x", "url": "https://example.com/", "events": ["order.placed"]}),
        ("POST", "/webhooks", {"name": "x", "url": "https://example.com/", "events": []}),
        ("POST", "/webhooks", {"name": "x", "url": "https://example.com/", "events": [1]}),
        ("POST", "/webhooks", {"name": "x", "url": "https://example.com/", "events": "email.sent"}),
        ("POST", "/webhooks", {"name": "x" * 300, "url": "https://example.com/"}),
        ("POST", "/webhooks", {"name": "x", "url": "https://example.com/" + "a" * 3000}),
        ("POST", "/webhooks", ["not", "an", "object"]),
        ("PATCH", "/webhooks/{id}", {"status": "paused"}),
        ("PATCH", "/webhooks/{id}", {"url": "javascript:alert(1)"}),
        ("PATCH", "/webhooks/{id}", {"events": ["nope"]}),
        ("GET", "/webhooks/{id}/deliveries?limit=abc", None),
    ],
)
def test_webhooks_bad_input_is_400(api: ApiClient, method: str, path: str, body: Any) -> None:
    hook = create_hook(api, "https://example.com/in")
    r = api.http.request(method, "/api/v1" + path.replace("{id}", hook["id"]), json=body)
    assert r.status_code == 400, r.text
    assert r.json()["success"] is False and r.json()["error"]
    assert api.get("/webhooks").json()["webhooks"][0]["url"] == "https://example.com/in"


def test_webhooks_deliveries_limit_is_clamped(api: ApiClient) -> None:
    hook = create_hook(api, "https://example.com/in")
    for limit in ("-5", "0", "100000"):
        assert api.get(f"/webhooks/{hook['id']}/deliveries?limit={limit}").status_code == 200


# -- delivery ---------------------------------------------------------------------------------------


def test_webhook_event_reaches_subscribed_endpoint_once_signed(api: ApiClient, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url, ["subscriber.created", "subscriber.list_subscribed"])
    quiet = Receiver().start()
    try:
        create_hook(api, quiet.url, ["email.opened"], name="not subscribed")
        r = api.post("/subscribers", {"email": "jane@example.com", "firstName": "Jane", "lists": []})
        assert r.status_code in (200, 201), r.text
        sub_id = r.json()["subscriber"]["id"]

        found = settled(api, hook["id"])
        time.sleep(0.3)  # more ticks: nothing else arrives
        assert len(receiver.received) == 1 and quiet.received == []
    finally:
        quiet.stop()

    got = receiver.received[0]
    payload = verify(hook["signingSecret"], got.headers, got.body)
    assert payload["type"] == "subscriber.created"
    assert payload["id"].startswith("evt_")
    assert payload["data"]["subscriber"]["id"] == sub_id
    assert payload["data"]["subscriber"]["email"] == "jane@example.com"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-signature"].count("v1,") == 1

    [delivery] = found
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1
    assert delivery["id"] == got.headers["webhook-id"]
    assert delivery["eventId"] == payload["id"] and delivery["eventType"] == "subscriber.created"
    assert delivery["lastStatusCode"] == 200
    assert delivery["lastResponseBody"] is None  # a reply from a private address is never kept

    endpoint = api.get("/webhooks").json()["webhooks"][0]
    assert endpoint["lastSuccessAt"] is not None and endpoint["consecutiveFailures"] == 0


def test_webhook_list_join_is_list_subscribed(api: ApiClient, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url, ["subscriber.list_subscribed"])
    r = api.post("/lists", {"name": "VIP"})
    list_id = r.json()["list"]["id"]
    r = api.post("/subscribers", {"email": "ann@example.com"})
    r = api.post(f"/lists/{list_id}/subscribers", {"emails": ["ann@example.com"]})
    assert r.status_code == 200, r.text
    settled(api, hook["id"])
    [got] = receiver.received
    payload = verify(hook["signingSecret"], got.headers, got.body)
    assert payload["type"] == "subscriber.list_subscribed"
    assert payload["data"]["event"] == "subscriber.list_added"
    assert payload["data"]["properties"]["listId"] == list_id


def test_webhook_secret_rotation(api: ApiClient, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url, ["subscriber.created"])
    old_secret, old_id = hook["signingSecret"], hook["signingSecrets"][0]["id"]
    r = api.post(f"/webhooks/{hook['id']}/secrets")
    assert r.status_code == 200, r.text
    rotated = r.json()["webhook"]
    new_secret = rotated["signingSecret"]
    assert new_secret != old_secret and len(rotated["signingSecrets"]) == 2

    api.post("/subscribers", {"email": "one@example.com"})
    settled(api, hook["id"])
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert verify(old_secret, got.headers, got.body) == verify(new_secret, got.headers, got.body)

    r = api.delete(f"/webhooks/{hook['id']}/secrets/{old_id}")
    assert r.status_code == 200, r.text
    assert [s["id"] for s in r.json()["webhook"]["signingSecrets"]] != [old_id]
    api.post("/subscribers", {"email": "two@example.com"})
    settled(api, hook["id"], 2)
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    verify(new_secret, got.headers, got.body)
    with pytest.raises(ValueError):
        verify(old_secret, got.headers, got.body)

    last_id = r.json()["webhook"]["signingSecrets"][0]["id"]
    r = api.delete(f"/webhooks/{hook['id']}/secrets/{last_id}")
    assert r.status_code == 400 and r.json()["success"] is False
    assert api.delete(f"/webhooks/{hook['id']}/secrets/whs_nope").status_code == 404


def test_webhook_retried_until_receiver_recovers(api: ApiClient, receiver: Receiver) -> None:
    receiver.script = [500, 500, 200]
    hook = create_hook(api, receiver.url, ["subscriber.created"])
    api.post("/subscribers", {"email": "retry@example.com"})
    [delivery] = settled(api, hook["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len({r.json["id"] for r in receiver.received}) == 1
    for got in receiver.received:
        verify(hook["signingSecret"], got.headers, got.body)

    attempts = api.get(f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/attempts").json()["attempts"]
    assert [(a["attemptNumber"], a["statusCode"], a["status"]) for a in attempts] == [
        (1, 500, "failed"),
        (2, 500, "failed"),
        (3, 200, "succeeded"),
    ]
    assert attempts[0]["error"] == "HTTP 500" and attempts[2]["error"] is None
    assert all(a["durationMs"] >= 0 for a in attempts)
    endpoint = api.get("/webhooks").json()["webhooks"][0]
    assert endpoint["consecutiveFailures"] == 0 and endpoint["failingSince"] is None
    assert endpoint["lastFailureAt"] is not None and endpoint["status"] == "enabled"


def test_webhook_replay_sends_same_delivery_again(api: ApiClient, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url, ["subscriber.created"])
    api.post("/subscribers", {"email": "replay@example.com"})
    [delivery] = settled(api, hook["id"])
    r = api.post(f"/webhooks/{hook['id']}/deliveries/{delivery['id']}/replay")
    assert r.status_code == 200, r.text
    assert r.json()["delivery"]["id"] == delivery["id"]
    wait_for(lambda: len(receiver.received) == 2)
    [again] = settled(api, hook["id"])
    assert again["id"] == delivery["id"] and again["attempts"] == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    assert receiver.received[0].body == receiver.received[1].body
    assert api.post(f"/webhooks/{hook['id']}/deliveries/whd_nope/replay").status_code == 404


def test_webhook_test_delivery(api: ApiClient, receiver: Receiver) -> None:
    hook = create_hook(api, receiver.url, ["email.sent"])
    r = api.post(f"/webhooks/{hook['id']}/test")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["queuedDeliveries"] == 1 and body["delivery"]["eventType"] == "webhook.test"
    settled(api, hook["id"])
    [got] = receiver.received
    payload = verify(hook["signingSecret"], got.headers, got.body)
    assert payload["type"] == "webhook.test" and payload["id"] == body["eventId"]
    assert got.headers["webhook-id"] == body["delivery"]["id"]


def test_webhook_auto_disabled_after_failing_then_reenabled(api: ApiClient, receiver: Receiver) -> None:
    receiver.script = [500] * 100
    hook = create_hook(api, receiver.url, ["subscriber.created"])
    api.post("/subscribers", {"email": "a@example.com"})
    api.post("/subscribers", {"email": "b@example.com"})

    def disabled() -> dict[str, Any] | None:
        found = api.get("/webhooks").json()["webhooks"][0]
        return found if found["status"] == "disabled" else None

    endpoint = wait_for(disabled)
    assert endpoint["autoDisabledAt"] is not None and "consecutive failed" in endpoint["disabledReason"]
    assert endpoint["consecutiveFailures"] >= 3 and endpoint["failingSince"] is not None
    found = settled(api, hook["id"], 2)
    assert {d["status"] for d in found} <= {"cancelled", "failed"} and "cancelled" in {
        d["status"] for d in found
    }
    sent = len(receiver.received)
    time.sleep(0.4)
    assert len(receiver.received) == sent  # nothing more goes to a disabled endpoint
    assert api.post(f"/webhooks/{hook['id']}/test").status_code == 400

    r = api.patch(f"/webhooks/{hook['id']}", {"status": "enabled"})
    again = r.json()["webhook"]
    assert again["status"] == "enabled" and again["autoDisabledAt"] is None
    assert (
        again["consecutiveFailures"] == 0
        and again["failingSince"] is None
        and again["disabledReason"] is None
    )
    receiver.script = []
    api.post("/subscribers", {"email": "c@example.com"})
    wait_for(lambda: any(r.json["data"]["subscriber"]["email"] == "c@example.com" for r in receiver.received))


def test_webhook_unreachable_endpoint_records_error(api: ApiClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    hook = create_hook(api, f"http://127.0.0.1:{port}/gone")
    api.post(f"/webhooks/{hook['id']}/test")

    def attempted() -> list[dict[str, Any]] | None:
        found = deliveries(api, hook["id"])
        return found if found and found[0]["attempts"] >= 1 else None

    [delivery] = wait_for(attempted)
    assert delivery["lastStatusCode"] is None and "Connect" in delivery["lastError"]


# -- core, with a frozen clock ----------------------------------------------------------------------

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_webhook_types_map_log_events() -> None:
    assert webhooks.webhook_types("subscriber.list_added") == ("subscriber.list_subscribed",)
    assert webhooks.webhook_types("subscriber.created") == ("subscriber.created",)
    assert webhooks.webhook_types("email.unsubscribed") == ("email.unsubscribed", "subscriber.unsubscribed")
    assert webhooks.webhook_types("ecommerce.checkout_started") == ()


def test_webhook_backoff_grows_and_is_capped() -> None:
    policy = webhooks.Policy(retry_base=timedelta(seconds=30), retry_cap=timedelta(hours=6))
    delays = [policy.delay(n).total_seconds() for n in range(1, 30)]
    assert 24 <= delays[0] <= 36 and 48 <= delays[1] <= 72
    assert max(delays) <= 6 * 3600 * 1.2


def test_webhook_gives_up_after_the_retry_window(db: Database, make_workspace: Callable[[], Tenant]) -> None:
    ws = make_workspace()
    policy = webhooks.Policy(retry_window=timedelta(days=7), disable_after_failures=1000)
    view, _ = db.write_sync(
        lambda tx: webhooks.create(tx, ws.id, name="h", url="https://example.com/", event_types=None, now=T0)
    )
    delivery = db.write_sync(lambda tx: webhooks.queue_test(tx, ws.id, view.endpoint.id, T0))

    def attempt_at(now: datetime) -> store.Delivery:
        def run(tx: Any) -> store.Delivery:
            # The PostgreSQL database is shared by the session: other tests' deliveries may be due too.
            claimed = store.claim_due(tx, "w1", now, lease=timedelta(minutes=1), limit=1000)
            assert delivery.id in {d.id for d in claimed}
            outcome = webhooks.Outcome(503, None, "busy", 5, now)
            result = webhooks.record_outcome(tx, delivery.id, "w1", outcome, now, policy)
            assert result is not None
            return result

        return db.write_sync(run)

    first = attempt_at(T0)
    assert first.status == "pending" and first.next_attempt_at is not None and first.next_attempt_at > T0
    late = T0 + timedelta(days=7)
    db.write_sync(
        lambda tx: tx.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.id == delivery.id)
            .values(next_attempt_at=late)
        )
    )
    last = attempt_at(late)
    assert last.status == "failed" and last.next_attempt_at is None and last.attempts == 2
    assert last.last_error == "HTTP 503" and last.last_response_body == "busy"


def test_webhook_sequence_finished_event_is_queued(
    db: Database, make_workspace: Callable[[], Tenant]
) -> None:
    from cartback.core import subscribers
    from cartback.scheduler import worker
    from cartback.store.enrollments import Enrollment

    ws = make_workspace()
    view, _ = db.write_sync(
        lambda tx: webhooks.create(
            tx, ws.id, name="h", url="https://example.com/", event_types=["sequence.finished"], now=T0
        )
    )
    sub, _ = db.write_sync(
        lambda tx: subscribers.upsert(tx, ws.id, subscribers.Identity(email="s@example.com"), T0)
    )
    run = Enrollment(
        id="enr_1",
        workspace_id=ws.id,
        sequence_id="seq_1",
        subscriber_id=sub.id,
        trigger_event_id=None,
        trigger_received_at=T0,
        context={},
        dedupe_key=None,
        status="completed",
        current_node_id=None,
        next_run_at=None,
        lease_owner=None,
        lease_until=None,
        stop_reason=None,
        created_at=T0,
        updated_at=T0,
        finished_at=T0,
    )
    db.write_sync(lambda tx: webhooks.enrollment_finished(tx, run, "completed", T0 + timedelta(seconds=1)))
    db.write_sync(lambda tx: webhooks.enrollment_finished(tx, run, "cancelled", T0 + timedelta(seconds=1)))
    hooks = [webhooks.queue_for_event]
    while db.write_sync(lambda tx: worker.dispatch_batch(tx, T0 + timedelta(seconds=2), 500, hooks)):
        pass
    found = db.read_sync(lambda tx: store.list_deliveries(tx, view.endpoint.id, 10))
    assert [(d.event_type, d.payload["data"]["properties"]["sequenceId"]) for d in found] == [
        ("sequence.finished", "seq_1")
    ]
    # Dispatching again queues nothing twice.
    while db.write_sync(lambda tx: worker.dispatch_batch(tx, T0 + timedelta(seconds=3), 500, hooks)):
        pass
    assert len(db.read_sync(lambda tx: store.list_deliveries(tx, view.endpoint.id, 10))) == 1


@dataclass
class FakeWorker:
    """What the webhook duty uses of the worker."""

    db: Database
    clock: FrozenClock
    owner: str = "w1"
    lease: timedelta = timedelta(seconds=60)
    stopping: bool = False
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)


def test_webhook_deliveries_that_cannot_be_built_fail_alone(
    db: Database, make_workspace: Callable[[], Tenant], receiver: Receiver
) -> None:
    """Rows written before (or beside) today's checks: workspace A's delivery whose payload is not a JSON
    object, its endpoint with a URL that cannot be requested, and one with a secret that is not base64 are
    claimed between workspace B's deliveries. B's reach the receiver in the same round; A's are failed at
    once with the reason (an attempt each), not retried and not claimed again."""
    a, b = make_workspace(), make_workspace()
    # The PostgreSQL database is shared by the session: other tests' pending deliveries are set aside.
    db.write_sync(
        lambda tx: tx.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.status == "pending")
            .values(status="failed")
        )
    )

    def endpoint(ws: str, url: str) -> str:
        view, _ = db.write_sync(
            lambda tx: webhooks.create(tx, ws, name="h", url=url, event_types=None, now=T0)
        )
        return view.endpoint.id

    good = endpoint(b.id, receiver.url)
    bad_payload, bad_url, bad_secret = (endpoint(a.id, receiver.url) for _ in range(3))
    db.write_sync(
        lambda tx: tx.execute(
            webhook_endpoints.update()
            .where(webhook_endpoints.c.id == bad_url)
            .values(url="http://127.0.0.1:1/in\r\nX-Injected: 1")
        )
    )
    db.write_sync(
        lambda tx: tx.execute(
            webhook_secrets.update()
            .where(webhook_secrets.c.endpoint_id == bad_secret)
            .values(secret="whsec_@@@")
        )
    )
    order = [good, bad_payload, good, bad_url, good, bad_secret, good]
    queued = []
    for i, hook in enumerate(order):
        at = T0 + timedelta(milliseconds=i)
        ws = b.id if hook == good else a.id
        queued.append(
            db.write_sync(lambda tx, hook=hook, ws=ws, at=at: webhooks.queue_test(tx, ws, hook, at)).id
        )
    db.write_sync(
        lambda tx: tx.execute(
            webhook_deliveries.update().where(webhook_deliveries.c.id == queued[1]).values(payload=[1, 2])
        )
    )

    clock = FrozenClock(T0 + timedelta(seconds=1))

    async def round_() -> int:
        worker = FakeWorker(Database(db.url), clock)
        await worker.db.start()
        try:
            sender = webhook_sender.Sender(
                webhooks.Policy(retry_base=timedelta(seconds=10)), allow_private=True
            )
            done = await sender(worker)  # type: ignore[arg-type]
            await sender.wait_idle()
            return done
        finally:
            await worker.db.stop()

    assert asyncio.run(round_()) == 7
    assert len(receiver.received) == 4
    assert all(r.json["type"] == "webhook.test" for r in receiver.received)
    rows = {
        r.id: r
        for r in db.read_sync(
            lambda tx: tx.execute(
                sa.select(webhook_deliveries).where(webhook_deliveries.c.id.in_(queued))
            ).all()
        )
    }
    assert [rows[queued[i]].status for i in (0, 2, 4, 6)] == ["succeeded"] * 4
    reasons = {
        1: "the payload is not a JSON object",
        3: "the URL has spaces or control characters",
        5: "a signing secret is not valid base64",
    }
    for i, reason in reasons.items():
        row = rows[queued[i]]
        assert row.status == "failed" and row.next_attempt_at is None and row.lease_owner is None
        assert row.last_error == f"cannot build the request: {reason}" and row.attempts == 1
        [attempt] = db.read_sync(lambda tx, row=row: store.list_attempts(tx, row.id))
        assert attempt.error == row.last_error and attempt.status_code is None
    clock.advance(seconds=120)
    assert asyncio.run(round_()) == 0
