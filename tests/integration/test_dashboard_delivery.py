"""Settings' Delivery section: which transport mail goes through (or that it is kept in the outbox, not
delivered) and what the transport last answered for this workspace's mail."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from starlette.testclient import TestClient

from cartback.app import create_app
from cartback.delivery import smtp
from cartback.settings import Settings
from cartback.testing import FrozenClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user, open_app, sign_in
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
