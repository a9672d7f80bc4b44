"""No spelling of a suppressed address reaches its mailbox: a real `cartback serve` sending to a real SMTP
sink (aiosmtpd), on SQLite and PostgreSQL. Addresses carry a per-test prefix: on PostgreSQL the database
is shared by the session."""

from __future__ import annotations

import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cartback.core import transactional
from cartback.store.tables import messages

sys.path.insert(0, str(Path(__file__).parent.parent))
from smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


def _wait(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _env(sink: SmtpSink) -> dict[str, str]:
    return {
        "CARTBACK_SMTP_URL": sink.url,
        "CARTBACK_PUBLIC_URL": "https://shop.example.com",
        "CARTBACK_DELIVERY_RETRY_SECONDS": "0.05",
    }


def _checkout(checkout_id: str, email: str) -> dict[str, Any]:
    return {
        "checkoutId": checkout_id,
        "customer": {"email": email},
        "currency": "USD",
        "totalCents": 5400,
        "checkoutUrl": f"https://shop.example.com/checkout/{checkout_id}",
        "items": [{"productId": "p1", "title": "Thing", "quantity": 1, "priceCents": 5400}],
    }


SEQUENCE = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "steps": [{"type": "email", "subject": "Your cart", "html": "<p>Come back</p>"}],
}


def _statuses(db: Any, workspace_id: str) -> dict[str, tuple[str, str | None]]:
    rows = db.read_sync(
        lambda tx: tx.execute(
            sa.select(messages.c.to_email, messages.c.status, messages.c.error).where(
                messages.c.workspace_id == workspace_id
            )
        ).all()
    )
    return {r.to_email: (r.status, r.error) for r in rows}


def test_suppressed_address_gets_no_mail_in_any_spelling(start_server, db, db_url, make_workspace):
    tenant = make_workspace()
    prefix = secrets.token_hex(4)
    victim = f"{prefix}-unsubbed@victim.example"
    control = f"{prefix}-jane@shop.example"
    with SmtpSink() as sink:
        server = start_server(db_url, env=_env(sink))
        api = httpx.Client(base_url=server.api, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=10)
        seq_id = api.post("/sequences", json=SEQUENCE).json()["sequence"]["id"]
        assert api.post(f"/sequences/{seq_id}/enable").status_code == 200
        assert api.post("/suppressions", json={"email": victim, "reason": "unsubscribed"}).status_code == 200

        for i, hostile in enumerate(
            [f"{victim};x@shop.example", f"{victim},x@shop.example", f"{victim}<x@shop.example>"]
        ):
            res = api.post("/checkouts", json=_checkout(f"chk-h{i}", hostile))
            assert res.status_code == 400 and "customer.email" in res.json()["error"], res.text
        # Other spellings of the same mailbox are accepted as that mailbox, which is suppressed.
        other = f"{prefix}-UNSUBBED@Victim.EXAMPLE"
        assert api.post("/checkouts", json=_checkout("chk-case", other)).status_code == 200
        sent = api.post(
            "/transactional/send",
            json={"to": victim.upper(), "subject": "Hi", "body": "<p>Hi</p>", "emailType": "marketing"},
        )
        assert sent.json()["recipients"][0]["status"] == "suppressed", sent.text
        assert api.post("/checkouts", json=_checkout("chk-ok", control)).status_code == 200

        _wait(lambda: [m for m in sink.received if m.rcpt_tos == [control]], what="the control message")

        def settled() -> bool:
            items = api.get(f"/sequences/{seq_id}/enrollments").json()["enrollments"]
            return len(items) == 2 and all(e["status"] not in ("active", "waiting") for e in items)

        _wait(settled, what="both enrollments to finish")
        time.sleep(0.3)
        api.close()
    reached = {a.lower() for a in sink.handler.rcpts}
    assert control.lower() in reached
    assert not [a for a in reached if "victim.example" in a]


def test_suppressed_address_stored_before_the_check_is_never_sent(start_server, db, db_url, make_workspace):
    """Rows written before addresses were parsed: the sender refuses an envelope that is not one plain
    ASCII mailbox (the hostile spellings; a non-ASCII local part, which needs SMTPUTF8) and records the
    message `failed` with the reason, instead of mailing the first address in it or ending `unknown`."""
    tenant = make_workspace()
    prefix = secrets.token_hex(4)
    victim = f"{prefix}-unsubbed@victim.example"
    stored = [f"{victim};x@shop.example", f"{victim}<x@shop.example>", f"{prefix}-jürgen@shop.example"]
    control = f"{prefix}-jane@shop.example"
    options = transactional.Options(public_url="https://shop.example.com", transport="smtp")
    request = transactional.SendRequest(to=[*stored, control], subject="Hi", html="<p>Hi</p>")
    db.write_sync(lambda tx: transactional.send(tx, tenant.id, request, options, datetime.now(UTC)))
    with SmtpSink() as sink:
        start_server(db_url, env=_env(sink))
        _wait(
            lambda: all(s in ("sent", "failed") for s, _ in _statuses(db, tenant.id).values()),
            what="every message to be settled",
        )
        time.sleep(0.2)
    got = _statuses(db, tenant.id)
    assert got[control][0] == "sent"
    for address in stored[:2]:
        status, error = got[address]
        assert status == "failed" and error and "not sent, recipient" in error, (address, error)
    # The message builder refuses a non-ASCII mailbox before the transport sees it; either way the
    # message fails alone, saying why.
    status, error = got[stored[2]]
    assert status == "failed" and error and "SMTPUTF8" in error, error
    assert {a.lower() for a in sink.handler.rcpts} == {control.lower()}
