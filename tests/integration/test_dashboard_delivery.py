"""Settings' Delivery section: which transport mail goes through (or that it is kept in the outbox, not
delivered) and what the transport last answered for this workspace's mail; a message kept in the outbox
(status `kept`) is counted as kept, never as sent, on every page and endpoint."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.testclient import TestClient

from cartback.app import create_app
from cartback.core import sequences
from cartback.delivery import smtp
from cartback.delivery.outbox import OutboxTransport
from cartback.settings import Settings
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, make_user, open_app, sign_in
from delivering import deliver
from smtp_sink import SmtpSink

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _section(page: str) -> str:
    found = re.search(r'<section class="card" id="delivery".*?</section>', page, re.S)
    assert found, "no Delivery section in Settings"
    return found.group(0)


def test_settings_without_smtp_says_mail_is_kept_and_shows_the_last_result(db, db_url, make_workspace):
    clock = FrozenClock(T0)
    tenant = make_workspace()
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        before = _section(client.get("/app/settings").text)
        assert "none: mail is kept in the outbox" in before
        assert "no email handed to the transport yet" in before
        to = f"ann-{tenant.id.lower()}@example.com"
        sent = client.post(
            "/api/v1/transactional/send",
            json={"to": to, "subject": "Your receipt", "body": "<p>Thanks</p>"},
            headers={"Authorization": f"Bearer {tenant.key}"},
        )
        assert sent.status_code == 200, sent.text
        with SmtpSink() as sink:
            assert deliver(db.url, clock, smtp.SmtpTransport.from_url(sink.url)) >= 1
            sink.wait_for(1)
        after = _section(client.get("/app/settings").text)
    last = re.search(r"<span data-last-delivery>([^<]*)</span>", after).group(1)
    assert last.startswith("sent (250)"), last
    assert "2026-11-23" in after


def test_settings_names_the_smtp_server_without_its_password(db, db_url, make_workspace):
    tenant = make_workspace()
    settings = Settings(
        database_url=db_url, secret_key="s" * 48, smtp_url="smtp://mailer:hunter2@mail.example.net:2525"
    )
    app = create_app(settings, clock=FrozenClock(T0), run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        sign_in(client, make_user(db, tenant.name))
        section = _section(client.get("/app/settings").text)
    assert "<strong data-transport>smtp://mailer@mail.example.net:2525</strong>" in section
    assert "hunter2" not in section and "kept in the outbox" not in section


def _test_email(client: TestClient, token: str) -> str:
    reply = client.post("/app/settings/test-email", data={"csrf_token": token})
    assert reply.status_code == 200, reply.text
    found = re.search(r"<p [^>]*data-test-email>([^<]*)</p>", reply.text)
    assert found, "no outcome of the test email on the page"
    return found.group(1)


def test_test_email_goes_through_smtp_to_the_signed_in_user(db, db_url, make_workspace):
    tenant = make_workspace()
    user = make_user(db, tenant.name)
    with SmtpSink() as sink:
        settings = Settings(database_url=db_url, secret_key="s" * 48, smtp_url=sink.url)
        app = create_app(settings, clock=FrozenClock(T0), run_worker=False)
        with TestClient(app, raise_server_exceptions=False) as client:
            token = sign_in(client, user)
            # Without the CSRF token the form is refused and nothing is sent.
            assert client.post("/app/settings/test-email", data={}).status_code == 403
            said = _test_email(client, token)
            (got,) = sink.wait_for(1)
    assert said.startswith(f"Test email sent to {user.email}: smtp://127.0.0.1:") and "250" in said
    assert got.rcpt_tos == [user.email]
    assert b"Subject: cartback test email" in got.data


def test_test_email_reports_the_servers_refusal(db, db_url, make_workspace):
    tenant = make_workspace()
    user = make_user(db, tenant.name)
    with SmtpSink(rcpt_reply=lambda address: "550 5.1.1 User unknown") as sink:
        settings = Settings(database_url=db_url, secret_key="s" * 48, smtp_url=sink.url)
        app = create_app(settings, clock=FrozenClock(T0), run_worker=False)
        with TestClient(app, raise_server_exceptions=False) as client:
            said = _test_email(client, sign_in(client, user))
    assert said.startswith(f"The test email to {user.email} was not sent") and "550" in said
    assert "User unknown" in said


def test_test_email_without_smtp_says_nothing_was_sent(db, db_url, make_workspace):
    tenant = make_workspace()
    user = make_user(db, tenant.name)
    with open_app(db_url, FrozenClock(T0)) as client:
        said = _test_email(client, sign_in(client, user))
    assert said == (
        f"No email was sent to {user.email}: no transport is set (CARTBACK_SMTP_URL), so mail is kept "
        "in the outbox and not delivered."
    )


def _figure(html: str, name: str) -> str:
    return html.split(f'data-figure="{name}">', 1)[1].split("<", 1)[0]


def test_a_sequence_email_is_kept_without_smtp_and_sent_through_it_and_every_figure_agrees(
    db, db_url, make_workspace
):
    """One abandoned-checkout email with no mail server set ends `kept` (not `sent`): its page, the
    person's page, the message list, the overview, the outbox API and the sequence stats all say so, and
    none counts it as sent or delivered. A second one through a real SMTP server ends `sent`."""
    clock = FrozenClock(T0)
    tenant = make_workspace()
    auth = {"Authorization": f"Bearer {tenant.key}"}
    seq_id = db.write_sync(
        lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active")
    ).id
    clock.advance(seconds=1)
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        ann = f"ann-{tenant.id.lower()}@example.com"
        assert (
            client.post("/api/v1/checkouts", json=checkout_body("c1", ann), headers=auth).status_code == 200
        )
        run_until_idle(db, clock)
        clock.advance(hours=1, seconds=1)
        run_until_idle(db, clock)
        assert deliver(db.url, clock, OutboxTransport()) >= 1
        clock.advance(seconds=1)  # the overview's range ends now, exclusive

        [kept] = client.get("/api/v1/outbox", headers=auth).json()["messages"]
        assert (kept["status"], kept["sentAt"], kept["lastError"], kept["transport"]) == (
            "kept",
            None,
            None,
            "outbox",
        )
        page = client.get(f"/app/messages/{kept['id']}").text
        assert 'data-status="kept">kept in outbox, not delivered</span>' in page
        assert '<p class="notice" data-kept>' in page
        listing = client.get("/app/messages", params={"status": "kept"}).text
        assert 'data-status="kept">kept in outbox, not delivered</span>' in listing
        assert "You left Logo tee" not in client.get("/app/messages", params={"status": "sent"}).text
        subscriber_id = page.split('href="/app/people/', 1)[1].split('"', 1)[0]
        person = client.get(f"/app/people/{subscriber_id}").text
        assert 'data-status="kept">kept in outbox, not delivered</span>' in person

        overview = client.get("/app/").text
        assert (_figure(overview, "emails_sent"), _figure(overview, "emails_kept")) == ("0", "1")
        stats = client.get(f"/api/v1/sequences/{seq_id}/stats", headers=auth).json()["stats"]
        assert (stats["sent"], stats["delivered"], stats["kept"]) == (0, 0, 1)
        assert (stats["deliveryRate"], stats["openRate"], stats["rateDenominatorBasis"]) == (0.0, 0.0, "none")
        start = (T0 - timedelta(days=1)).isoformat()
        totals = client.get("/api/v1/analytics/recovery", params={"start": start}, headers=auth).json()[
            "totals"
        ]
        assert (totals["sent"], totals["delivered"], totals["kept"]) == (0, 0, 1)
        # No mail was delivered, so the rates of the page have nothing to be a rate of.
        assert "opened (—)" in overview and "clicked (—)" in overview
        # The sequences list, the sequence's page and the abandoned checkouts say it was kept, not sent.
        kept_note = "+ 1 kept in outbox</span>"
        listing_page = client.get("/app/sequences").text
        assert kept_note in listing_page
        assert kept_note in client.get(f"/app/sequences/{seq_id}").text
        checkouts_page = client.get("/app/checkouts").text
        assert '<td class="num" data-emails>0 <span class="muted" data-kept' in checkouts_page
        assert kept_note in checkouts_page

        # The same step through a real mail server: `sent`, and now counted as sent and delivered.
        bob = f"bob-{tenant.id.lower()}@example.com"
        assert (
            client.post("/api/v1/checkouts", json=checkout_body("c2", bob), headers=auth).status_code == 200
        )
        run_until_idle(db, clock)
        clock.advance(hours=1, seconds=1)
        run_until_idle(db, clock)
        with SmtpSink() as sink:
            assert deliver(db.url, clock, smtp.SmtpTransport.from_url(sink.url)) >= 1
            [got] = sink.wait_for(1)
        clock.advance(seconds=1)
        assert got.rcpt_tos == [bob]
        statuses = {
            m["to"]: m["status"] for m in client.get("/api/v1/outbox", headers=auth).json()["messages"]
        }
        assert statuses == {ann: "kept", bob: "sent"}
        overview = client.get("/app/").text
        assert (_figure(overview, "emails_sent"), _figure(overview, "emails_kept")) == ("1", "1")
        stats = client.get(f"/api/v1/sequences/{seq_id}/stats", headers=auth).json()["stats"]
        assert (stats["sent"], stats["delivered"], stats["kept"], stats["deliveryRate"]) == (1, 1, 1, 1.0)
