"""Messages and Events pages: the outbox, one message with a sandboxed preview, the live event log."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cartback.core import sequences
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def shop(db, db_url, make_workspace):
    """A signed-in client whose workspace sent one abandoned-checkout email (queued in the outbox)."""
    clock = FrozenClock(T0)
    tenant = make_workspace()
    db.write_sync(lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active"))
    clock.advance(seconds=1)
    with open_app(db_url, clock) as client:
        body = checkout_body("c1", title="Wool socks")
        reply = client.post("/api/v1/checkouts", json=body, headers={"Authorization": f"Bearer {tenant.key}"})
        assert reply.status_code == 200
        run_until_idle(db, clock)
        clock.advance(hours=1, seconds=1)
        run_until_idle(db, clock)
        sign_in(client, make_user(db, tenant.name))
        yield client


def message_id_of(html: str) -> str:
    return html.split('href="/app/messages/', 1)[1].split('"', 1)[0]


def test_dashboard_messages_list_and_detail_with_a_sandboxed_preview(shop):
    client = shop
    listing = client.get("/app/messages")
    assert listing.status_code == 200
    assert "You left Wool socks" in listing.text and "jane@example.com" in listing.text
    message_id = message_id_of(listing.text)

    page = client.get(f"/app/messages/{message_id}")
    assert page.status_code == 200
    assert f'sandbox="" src="/app/messages/{message_id}/preview"' in page.text
    assert "Delivery attempts" in page.text
    # Owner words: the sequence's name and the step as numbered everywhere, no ids, no raw Liquid.
    assert "Abandoned checkout</a> · Step 1: You left …" in page.text
    assert "node_" not in page.text and "{{" not in page.text

    preview = client.get(f"/app/messages/{message_id}/preview")
    assert preview.status_code == 200
    assert "<li>Wool socks</li>" in preview.text
    policy = preview.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy and "script" not in policy
    # No remote images: a shopper-supplied image URL would learn the operator's IP address.
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["img-src"] == ["data:"]
    assert "http:" not in policy and "https:" not in policy and "*" not in policy
    assert preview.headers["x-frame-options"] == "SAMEORIGIN"
    # Looking at a message must not count as opening it: the open pixel is not in the preview.
    assert "/t/o/" not in preview.text

    assert "Wool socks" not in client.get("/app/messages", params={"status": "sent"}).text
    assert "Wool socks" in client.get("/app/messages", params={"to": "JANE@example.com"}).text


def test_dashboard_events_log_filters_and_serves_rows_for_live_refresh(shop):
    client = shop
    page = client.get("/app/events")
    assert page.status_code == 200
    assert "ecommerce.checkout_started" in page.text
    assert 'hx-get="/app/events/rows?' in page.text and 'hx-trigger="every 2s"' in page.text
    rows = client.get("/app/events/rows", params={"name": "ecommerce.checkout_started"})
    assert rows.status_code == 200 and "<html" not in rows.text
    assert "ecommerce.checkout_started" in rows.text
    # The poll gets rows only (no "No events match" row to pile up), and with `after` only newer ones.
    assert "<tr" not in client.get("/app/events/rows", params={"name": "ecommerce.order_placed"}).text
    assert "<tr" not in client.get("/app/events/rows", params={"source": "klaviyo"}).text
    assert "No events match" in client.get("/app/events", params={"source": "klaviyo"}).text
    newest = re.findall(r'data-event="([^"]+)"', rows.text)[0]
    after = {"name": "ecommerce.checkout_started", "after": newest}
    assert "<tr" not in client.get("/app/events/rows", params=after).text
    assert (
        "ecommerce.checkout_started" in client.get("/app/events", params={"person": "jane@example.com"}).text
    )
    assert "Nobody with the address" in client.get("/app/events", params={"person": "x@example.com"}).text


def test_dashboard_unknown_message_is_404(shop):
    assert shop.get("/app/messages/msg_NOPE").status_code == 404
    assert shop.get("/app/messages/msg_NOPE/preview").status_code == 404
