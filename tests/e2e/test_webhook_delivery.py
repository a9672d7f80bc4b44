"""Outbound webhooks end to end: a real `cartback serve` POSTs to a real receiver, which verifies each
signature as docs/webhooks.md says; a server killed mid-delivery sends the same delivery again after a
restart (at least once, same webhook-id)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

FAST = {
    "CARTBACK_WEBHOOK_RETRY_BASE_SECONDS": "0.1",
    "CARTBACK_WEBHOOK_TIMEOUT_SECONDS": "3",
    "CARTBACK_LEASE_SECONDS": "1",
    "CARTBACK_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1
}


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    timestamp = headers["webhook-timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(
        hmac.new(key, f"v1:{timestamp}:".encode() + body, hashlib.sha256).digest()
    ).decode()
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(body)  # type: ignore[no-any-return]
    raise ValueError("no valid signature")


class Receiver:
    """A threaded HTTP server: answers with the statuses in `script` (then 200), after `delays` seconds."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.script: list[int] = []
        self.delays: list[float] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.delays:
                    time.sleep(receiver.delays.pop(0))
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_webhook_delivery_signed_and_retried_by_real_server(
    start_server: Any, db_url: str, make_workspace: Any, receiver: Receiver
) -> None:
    server = start_server(db_url, env=FAST)
    key = {"Authorization": f"Bearer {make_workspace().key}"}
    r = httpx.post(
        server.api + "/webhooks",
        json={"name": "crm", "url": receiver.url, "events": ["subscriber.created"]},
        headers=key,
    )
    assert r.status_code == 200, r.text
    hook = r.json()["webhook"]
    receiver.script = [503]

    r = httpx.post(
        server.api + "/subscribers/events",
        json={"email": "e2e@example.com", "event": "checkout.viewed", "eventId": "evt-e2e-1"},
        headers=key,
    )
    assert r.status_code in (200, 201), r.text

    def delivered() -> list[dict[str, Any]] | None:
        found = httpx.get(f"{server.api}/webhooks/{hook['id']}/deliveries", headers=key).json()["deliveries"]
        return found if found and found[0]["status"] == "succeeded" else None

    [delivery] = wait_for(delivered)
    assert delivery["attempts"] == 2 and len(receiver.received) == 2
    for headers, body in receiver.received:
        payload = verify(hook["signingSecret"], headers, body)
        assert payload["type"] == "subscriber.created"
        assert payload["data"]["subscriber"]["email"] == "e2e@example.com"
        assert headers["webhook-id"] == delivery["id"]


def test_webhook_killed_mid_delivery_is_sent_again(
    start_server: Any, db_url: str, make_workspace: Any, receiver: Receiver
) -> None:
    server = start_server(db_url, env=FAST)
    key = {"Authorization": f"Bearer {make_workspace().key}"}
    hook = httpx.post(
        server.api + "/webhooks", json={"name": "crm", "url": receiver.url}, headers=key
    ).json()["webhook"]
    receiver.delays = [2.0]  # the first request is still open when the server dies
    r = httpx.post(f"{server.api}/webhooks/{hook['id']}/test", headers=key)
    assert r.status_code == 200, r.text
    wait_for(lambda: receiver.received)
    server.kill9()

    again = start_server(db_url, env=FAST)
    wait_for(lambda: len(receiver.received) >= 2)

    def settled() -> list[dict[str, Any]] | None:
        found = httpx.get(f"{again.api}/webhooks/{hook['id']}/deliveries", headers=key).json()["deliveries"]
        return found if found and found[0]["status"] == "succeeded" else None

    [delivery] = wait_for(settled)
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert ids == {delivery["id"]}
    assert receiver.received[0][1] == receiver.received[1][1]
    for headers, body in receiver.received:
        assert verify(hook["signingSecret"], headers, body)["type"] == "webhook.test"
    # The killed attempt was never recorded: the one that counted is the resend.
    assert delivery["attempts"] == 1
