"""Settings: sender identity (used by the engine), API keys shown once and revocable, webhooks,
suppressions with reasons; and none of it reaches another workspace."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cartback.core import sequences
from cartback.core import suppressions as core_suppressions
from cartback.delivery import smtp
from cartback.store import workspaces
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, make_user, open_app, sign_in
from delivering import deliver
from smtp_sink import SmtpSink

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def shop(db, db_url, make_workspace, clock):
    tenant = make_workspace()
    with open_app(db_url, clock) as client:
        token = sign_in(client, make_user(db, tenant.name))
        yield client, tenant, token


def test_dashboard_shop_identity_is_saved_and_shown(shop, db):
    client, tenant, token = shop
    page = client.get("/app/settings").text
    assert (
        f"<strong data-shop>{tenant.name}</strong>" in page
        and "the workspace\N{RIGHT SINGLE QUOTATION MARK}s name" in page
    )
    bad = client.post(
        "/app/settings/shop", data={"shop_name": "A\nB", "shop_address": "", "csrf_token": token}
    )
    assert bad.status_code == 400 and "shop name" in bad.text
    saved = client.post(
        "/app/settings/shop",
        data={"shop_name": " Acme Outdoor ", "shop_address": "1 Trail Rd", "csrf_token": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert "<strong data-shop>Acme Outdoor</strong>." in client.get("/app/settings").text
    ws = db.read_sync(lambda tx: workspaces.get_workspace(tx, tenant.id))
    assert (ws.shop_name, ws.shop_address, ws.display_name) == ("Acme Outdoor", "1 Trail Rd", "Acme Outdoor")
    assert client.post("/app/settings/shop", data={"shop_name": "x"}).status_code == 403


def test_dashboard_sender_identity_is_what_sequences_send_from(shop, db, clock):
    client, tenant, token = shop
    bad = client.post(
        "/app/settings/sender", data={"from_name": "Shop", "from_email": "nope", "csrf_token": token}
    )
    assert bad.status_code == 400 and "not an email address" in bad.text
    saved = client.post(
        "/app/settings/sender",
        data={"from_name": "Fern & Co", "from_email": "hello@fern.example", "csrf_token": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert "Fern &amp; Co &lt;hello@fern.example&gt;" in client.get("/app/settings").text
    ws = db.read_sync(lambda tx: workspaces.get_workspace(tx, tenant.id))
    assert ws.from_address == "Fern & Co <hello@fern.example>"

    db.write_sync(lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active"))
    clock.advance(seconds=1)
    client.post(
        "/api/v1/checkouts", json=checkout_body("c1"), headers={"Authorization": f"Bearer {tenant.key}"}
    )
    run_until_idle(db, clock)
    clock.advance(hours=2)
    run_until_idle(db, clock)
    outbox = client.get("/api/v1/outbox", headers={"Authorization": f"Bearer {tenant.key}"}).json()
    froms = {m.get("from") or m.get("fromEmail") for m in outbox.get("messages", outbox.get("items", []))}
    assert froms == {"Fern & Co <hello@fern.example>"}, outbox


def test_dashboard_sender_applies_to_transactional_sends_that_name_no_from(shop, db, clock):
    """One composer for every email: the workspace's sender, set here, is what a transactional send that
    names no `from` is sent from (it was CARTBACK_FROM); a `from` the send names still wins. Checked in the
    mail an SMTP server received."""
    client, tenant, token = shop
    saved = client.post(
        "/app/settings/sender",
        data={"from_name": "Fern & Co", "from_email": "hello@fern.example", "csrf_token": token},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    auth = {"Authorization": f"Bearer {tenant.key}"}
    ann, bob = (f"{name}-{tenant.id.lower()}@example.com" for name in ("ann", "bob"))
    sends = [
        {"to": ann, "subject": "Your receipt", "body": "<p>Thanks</p>"},
        {"to": bob, "subject": "Your receipt", "body": "<p>Thanks</p>", "from": "news@shop.example"},
    ]
    for body in sends:
        reply = client.post("/api/v1/transactional/send", json=body, headers=auth)
        assert reply.status_code == 200, reply.text
    with SmtpSink() as sink:
        # The database may hold other tests' queued mail, which goes to the sink too.
        assert deliver(db.url, clock, smtp.SmtpTransport.from_url(sink.url)) >= 2
        got = {r.rcpt_tos[0]: r for r in sink.wait_for(2)}
    assert got[ann].message["From"] == "Fern & Co <hello@fern.example>"
    assert got[ann].mail_from == "hello@fern.example"
    assert got[bob].message["From"] == "news@shop.example"


def test_dashboard_api_key_is_shown_once_works_and_can_be_revoked(shop):
    client, _, token = shop
    created = client.post(
        "/app/settings/keys", data={"name": "storefront", "scopes": ["read"], "csrf_token": token}
    )
    assert created.status_code == 200
    secret = re.search(r"data-new-key>([^<]+)<", created.text).group(1)
    assert client.get("/api/v1/sequences", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    page = client.get("/app/settings").text
    assert "storefront" in page and secret not in page
    key_id = re.search(r'data-key="(key_[^"]+)">\s*<td>storefront', page).group(1)
    revoked = client.post(
        f"/app/settings/keys/{key_id}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert revoked.status_code == 303
    assert client.get("/api/v1/sequences", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert "revoked" in client.get("/app/settings").text
    # A scope the server does not know is refused, not stored.
    odd = client.post("/app/settings/keys", data={"name": "x", "scopes": ["root"], "csrf_token": token})
    assert odd.status_code == 400 and "unknown scope" in odd.text


def test_dashboard_new_api_key_defaults_to_the_least_scope(shop):
    """The form offers events:write alone, and a key made without choosing can only send events."""
    client, _, token = shop
    form = client.get("/app/settings").text
    checked = re.findall(r'name="scopes" value="([^"]+)" checked', form)
    assert checked == ["events:write"]
    made = client.post("/app/settings/keys", data={"name": "plain", "csrf_token": token})
    secret = re.search(r"data-new-key>([^<]+)<", made.text).group(1)
    page = client.get("/app/settings").text
    assert re.search(r"<td>plain</td><td[^>]*>[^<]*</td><td>events:write</td>", page)
    assert client.get("/api/v1/sequences", headers={"Authorization": f"Bearer {secret}"}).status_code == 403


def test_dashboard_webhooks_create_disable_enable_delete(shop):
    client, tenant, token = shop
    bad = client.post("/app/settings/webhooks", data={"name": "x", "url": "ftp://x", "csrf_token": token})
    assert bad.status_code == 400 and "http" in bad.text
    made = client.post(
        "/app/settings/webhooks",
        data={
            "name": "CRM",
            "url": "https://crm.example/hook",
            "events": ["email.sent"],
            "csrf_token": token,
        },
    )
    assert made.status_code == 200 and "whsec_" in made.text
    endpoint = re.search(r'data-webhook="(wh_[^"]+)"', made.text).group(1)
    listed = client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {tenant.key}"}).text
    assert endpoint in listed
    for action, shown in (("disabled", ">disabled<"), ("enabled", ">enabled<")):
        client.post(f"/app/settings/webhooks/{endpoint}", data={"action": action, "csrf_token": token})
        assert shown in client.get("/app/settings").text
    client.post(f"/app/settings/webhooks/{endpoint}", data={"action": "delete", "csrf_token": token})
    assert endpoint not in client.get("/app/settings").text


def test_dashboard_suppressions_add_and_lift_with_reason(shop, db):
    client, tenant, token = shop
    bad = client.post(
        "/app/settings/suppressions", data={"email": "x", "reason": "bounced", "csrf_token": token}
    )
    assert bad.status_code == 400
    client.post(
        "/app/settings/suppressions",
        data={
            "email": "Pat@Example.com",
            "reason": "complained",
            "detail": "asked by phone",
            "csrf_token": token,
        },
    )
    page = client.get("/app/settings", params={"q": "pat"}).text
    # Kept in the normal form: the domain lowercased.
    assert "Pat@example.com" in page and "asked by phone" in page and ">complained<" in page
    blocked = db.read_sync(
        lambda tx: core_suppressions.blocking_reason(tx, tenant.id, "pat@example.com", "transactional")
    )
    assert blocked == "address complained (dashboard)"
    lifted = client.post(
        "/app/settings/suppressions/lift",
        data={"email": "Pat@Example.com", "reason": "complained", "csrf_token": token},
        follow_redirects=False,
    )
    assert lifted.status_code == 303
    assert (
        db.read_sync(
            lambda tx: core_suppressions.blocking_reason(tx, tenant.id, "pat@example.com", "marketing")
        )
        is None
    )
    again = client.post(
        "/app/settings/suppressions/lift",
        data={"email": "pat@example.com", "reason": "complained", "csrf_token": token},
    )
    assert again.status_code == 404


# Distinct enough that no generated address in the page can contain it.
THEIR_ADDRESS = "suppressed-in-workspace-b@example.org"


def test_dashboard_settings_never_touch_another_workspace(shop, db, make_workspace, clock):
    client, _, token = shop
    other = make_workspace()
    their_key = db.read_sync(lambda tx: workspaces.list_api_keys(tx, other.id))[0]
    hook = client.post(
        "/api/v1/webhooks",
        json={"name": "theirs", "url": "https://b.example/hook"},
        headers={"Authorization": f"Bearer {other.key}"},
    )
    assert hook.status_code in (200, 201), hook.text
    hook_id = re.search(r'"(wh_[A-Za-z0-9]+)"', hook.text).group(1)
    db.write_sync(
        lambda tx: core_suppressions.suppress(tx, other.id, THEIR_ADDRESS, "bounced", "api", clock.now())
    )

    page = client.get("/app/settings").text
    assert their_key.id not in page and hook_id not in page and THEIR_ADDRESS not in page
    assert (
        client.post(f"/app/settings/keys/{their_key.id}/revoke", data={"csrf_token": token}).status_code
        == 404
    )
    assert (
        client.get("/api/v1/sequences", headers={"Authorization": f"Bearer {other.key}"}).status_code == 200
    )
    for action in ("disabled", "delete"):
        reply = client.post(f"/app/settings/webhooks/{hook_id}", data={"action": action, "csrf_token": token})
        assert reply.status_code == 404
    theirs = client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {other.key}"})
    assert theirs.status_code == 200 and hook_id in theirs.text and '"disabled"' not in theirs.text
    lift = client.post(
        "/app/settings/suppressions/lift",
        data={"email": THEIR_ADDRESS, "reason": "bounced", "csrf_token": token},
    )
    assert lift.status_code == 404
    assert db.read_sync(
        lambda tx: core_suppressions.blocking_reason(tx, other.id, THEIR_ADDRESS, "marketing")
    )
    # And every settings form refuses a post without the CSRF token.
    for url, data in (
        ("/app/settings/sender", {"from_email": "x@example.com"}),
        ("/app/settings/keys", {"name": "x"}),
        ("/app/settings/webhooks", {"name": "x", "url": "https://x.example"}),
        ("/app/settings/suppressions", {"email": "x@example.com", "reason": "bounced"}),
    ):
        assert client.post(url, data=data).status_code == 403, url
    assert "x@example.com" not in client.get("/app/settings").text
