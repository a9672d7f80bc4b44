"""The official `sequenzy` SDK against a real `cartback serve`: suppressions and transactional email."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sequenzy import Sequenzy
from sequenzy.errors import ConflictError, NotFoundError


@pytest.fixture
def key(make_workspace) -> str:
    return make_workspace().key


@pytest.fixture
def client(server, key) -> Iterator[Sequenzy]:
    with httpx.Client(timeout=10) as http:
        yield Sequenzy(api_key=key, base_url=server.api, max_retries=0, httpx_client=http)


def test_sdk_suppressions_list_get_remove(client, server, key):
    client.subscribers.create(email="a+b@example.com")
    headers = {"Authorization": f"Bearer {key}"}
    notice = {"type": "bounce", "email": "a+b@example.com", "detail": "550 5.1.1 user unknown"}
    assert httpx.post(server.api + "/inbound/bounces", json=notice, headers=headers).status_code == 200

    listed = client.suppressions.list(page=1, limit=10, sort="suppressedAt", order="desc")
    assert listed.success is True
    assert [s.email for s in listed.suppressions] == ["a+b@example.com"]
    assert listed.suppressions[0].reason == "bounced"
    assert listed.suppressions[0].suppressed_at is not None

    got = client.suppressions.get("a+b@example.com")
    assert got.suppression.suppressed is True
    assert got.suppression.local.reason == "bounced"
    assert client.suppressions.get("nobody@example.com").suppression.suppressed is False

    removed = client.suppressions.remove("a+b@example.com")
    assert removed.removed is True
    assert len(removed.reactivated_subscriber_ids) == 1
    assert client.subscribers.get("a+b@example.com").subscriber.status == "active"
    with pytest.raises(NotFoundError):
        client.suppressions.remove("a+b@example.com")


def test_sdk_transactional_send_and_templates(client):
    created = client.transactional.create(
        name="Receipt", slug="receipt", subject="Order {{ orderId }}", html="<p>Thanks {{ firstName }}</p>"
    )
    assert created.transactional.slug == "receipt"
    assert [t.slug for t in client.transactional.list().transactional] == ["receipt"]
    assert client.transactional.get("receipt").transactional.subject == "Order {{ orderId }}"
    client.transactional.update("receipt", subject="Your order {{ orderId }}")

    sent = client.transactional.send(
        to="jane@example.com", slug="receipt", variables={"orderId": "1001", "firstName": "Jane"}
    )
    assert sent.success is True and sent.email_send_id.startswith("msg_")

    first = client.transactional.send(
        to=["x@example.com", "y@example.com"],
        subject="Hi",
        body="<p>Hello {{ name }}</p>",
        idempotency_key="sdk-key-1",
        headers={"X-Thing": "1", "From": "spoof@example.com"},
    )
    again = client.transactional.send(
        to=["x@example.com", "y@example.com"],
        subject="Hi",
        body="<p>Hello {{ name }}</p>",
        idempotency_key="sdk-key-1",
        headers={"X-Thing": "1", "From": "spoof@example.com"},
    )
    assert again.email_send_id == first.email_send_id
    assert again.idempotent_replay is True
    assert first.diagnostics is not None and first.diagnostics.status == "warning"
    assert [(h.name, h.reason) for h in first.ignored_headers] == [("From", "reserved")]
    with pytest.raises(ConflictError):
        client.transactional.send(
            to="x@example.com", subject="Hi", body="<p>Other</p>", idempotency_key="sdk-key-1"
        )
    deleted = client.transactional.delete("receipt")
    assert deleted.success is True
