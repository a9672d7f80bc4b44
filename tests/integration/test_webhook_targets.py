"""Outbound webhooks go to public addresses only: internal targets are refused when an endpoint is saved
(Sequenzy API and dashboard), and re-checked at every send, so a row stored before (or a name that later
resolves inward) reaches nothing. Only loopback receivers are used: no test sends beyond this machine."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cartback import metrics
from cartback.app import create_app
from cartback.core import webhooks
from cartback.delivery import targets
from cartback.scheduler import webhook_sender
from cartback.settings import Settings
from cartback.store import webhooks as store
from cartback.store.db import Database
from cartback.store.tables import webhook_deliveries
from cartback.testing import FrozenClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# Internal targets, as a hostile tenant would try them (none is ever connected to: they are refused at save).
INTERNAL = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8000/api/v1/subscribers",
    "HTTP://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.0.0.1/",
    "http://localhost/",
    "https://localhost:8443/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://user:secret@example.com/",
    "http://example.com@127.0.0.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:25/",
]


def _app(db_url: str, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(database_url=db_url, **settings), run_worker=False))


@pytest.fixture
def api(db_url: str, make_workspace) -> Iterator[TestClient]:
    tenant = make_workspace()
    with _app(db_url) as client:
        client.headers["Authorization"] = f"Bearer {tenant.key}"
        yield client


@pytest.mark.parametrize("url", INTERNAL)
def test_webhook_target_internal_is_refused_at_save(api: TestClient, url: str) -> None:
    made = api.post("/api/v1/webhooks", json={"name": "x", "url": url})
    assert made.status_code == 400, made.text
    assert made.json()["success"] is False and made.json()["error"].startswith("url")
    assert api.get("/api/v1/webhooks").json()["webhooks"] == []


def test_webhook_target_change_to_internal_is_refused(api: TestClient) -> None:
    hook = api.post("/api/v1/webhooks", json={"name": "x", "url": "https://hooks.example/in"}).json()[
        "webhook"
    ]
    changed = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": "http://169.254.169.254/"})
    assert changed.status_code == 400 and "link-local" in changed.json()["error"]
    assert api.get("/api/v1/webhooks").json()["webhooks"][0]["url"] == "https://hooks.example/in"


def test_webhook_target_public_addresses_and_unresolved_names_are_accepted(api: TestClient) -> None:
    for url in ("https://hooks.example/in", "http://8.8.8.8/in", "http://[2001:4860:4860::8888]/in"):
        assert api.post("/api/v1/webhooks", json={"name": "x", "url": url}).status_code == 200, url


def test_webhook_target_internal_allowed_by_the_operator_setting(db_url: str, make_workspace) -> None:
    tenant = make_workspace()
    with _app(db_url, webhook_allow_private=True) as client:
        client.headers["Authorization"] = f"Bearer {tenant.key}"
        assert (
            client.post("/api/v1/webhooks", json={"name": "x", "url": "http://127.0.0.1/"}).status_code == 200
        )
        # User info is refused whatever the setting: it hides where a URL really goes.
        userinfo = client.post("/api/v1/webhooks", json={"name": "x", "url": "http://a:b@127.0.0.1/"})
        assert userinfo.status_code == 400 and "user name or password" in userinfo.json()["error"]


def test_webhook_target_internal_is_refused_in_the_dashboard(db, db_url, make_workspace) -> None:
    tenant = make_workspace()
    with open_app(db_url, FrozenClock(T0)) as client:
        token = sign_in(client, make_user(db, tenant.name))
        for url in ("http://169.254.169.254/", "http://localhost:8080/"):
            page = client.post("/app/settings/webhooks", data={"name": "x", "url": url, "csrf_token": token})
            assert page.status_code == 400 and "webhooks go to public addresses only" in page.text
    assert db.read_sync(lambda tx: store.list_endpoints(tx, tenant.id)) == []


# -- at send ---------------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A loopback HTTP server that answers every POST with a reply an attacker would like to read."""

    hits: list[bytes] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hits.append(self.rfile.read(int(self.headers.get("content-length", 0))))
                reply = json.dumps({"internal": "secret-from-the-private-network"}).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/in"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@dataclass
class FakeWorker:
    """What the webhook duty uses of the worker (a real database, a frozen clock)."""

    db: Database
    clock: FrozenClock
    owner: str = "w1"
    lease: timedelta = timedelta(seconds=60)
    stopping: bool = False
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)


def _send_due(db: Database, *, allow_private: bool) -> None:
    async def round_() -> None:
        worker = FakeWorker(Database(db.url), FrozenClock(T0 + timedelta(seconds=1)))
        await worker.db.start()
        try:
            sender = webhook_sender.Sender(allow_private=allow_private)
            await sender(worker)  # type: ignore[arg-type]
            await sender.wait_idle()
        finally:
            await worker.db.stop()

    asyncio.run(round_())


def _stored_before(db: Database, workspace_id: str, url: str) -> store.Delivery:
    """An endpoint row as one saved before the checks existed (core does no address check), and a test
    delivery due to it. The PostgreSQL database is shared by the session: others' pending deliveries are
    set aside so this round claims only ours."""
    db.write_sync(
        lambda tx: tx.execute(
            webhook_deliveries.update()
            .where(webhook_deliveries.c.status == "pending")
            .values(status="failed")
        )
    )
    view, _ = db.write_sync(
        lambda tx: webhooks.create(tx, workspace_id, name="old", url=url, event_types=None, now=T0)
    )
    return db.write_sync(lambda tx: webhooks.queue_test(tx, workspace_id, view.endpoint.id, T0))


def _attempts(db: Database, queued: store.Delivery) -> list[store.Attempt]:
    return db.read_sync(lambda tx: store.list_attempts(tx, queued.id))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_webhook_target_stored_internal_is_refused_at_send(db, make_workspace, receiver, host) -> None:
    url = receiver.url.replace("127.0.0.1", host)
    queued = _stored_before(db, make_workspace().id, url)
    _send_due(db, allow_private=False)
    assert receiver.hits == []  # nothing reached the loopback service
    [attempt] = _attempts(db, queued)
    assert attempt.status_code is None and attempt.response_body is None
    assert attempt.error is not None and "refused" in attempt.error and "loopback address" in attempt.error
    row = db.read_sync(
        lambda tx: tx.execute(sa.select(webhook_deliveries).where(webhook_deliveries.c.id == queued.id)).one()
    )
    assert row.status == "pending" and row.attempts == 1  # retried by the policy, refused again each time


def test_webhook_attempt_to_an_allowed_private_target_keeps_no_reply(db, make_workspace, receiver) -> None:
    """CARTBACK_WEBHOOK_ALLOW_PRIVATE lets a store call its own network; what an internal service answers
    is still not read back through the attempts API: status and timing only."""
    queued = _stored_before(db, make_workspace().id, receiver.url)
    _send_due(db, allow_private=True)
    assert len(receiver.hits) == 1
    [attempt] = _attempts(db, queued)
    assert attempt.status_code == 200 and attempt.error is None and attempt.duration_ms >= 0
    assert attempt.response_body is None
    row = db.read_sync(
        lambda tx: tx.execute(sa.select(webhook_deliveries).where(webhook_deliveries.c.id == queued.id)).one()
    )
    assert row.status == "succeeded" and row.last_response_body is None


class _Stream:
    def __init__(self, peer: tuple[str, int] | None) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "server_addr" else None


@pytest.mark.parametrize(
    "peer,public",
    [
        (("93.184.215.14", 443), True),
        (("2606:2800:21f:cb07:6820:80da:af6b:8b2c", 443), True),
        (("127.0.0.1", 80), False),
        (("10.1.2.3", 80), False),
        (("::ffff:192.168.0.1", 80), False),
        (None, False),
    ],
)
def test_webhook_reply_excerpt_is_kept_only_from_a_public_peer(peer: Any, public: bool) -> None:
    assert targets.peer_is_public({"network_stream": _Stream(peer)}) is public
    assert targets.peer_is_public({}) is False
