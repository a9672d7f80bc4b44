"""Settings > Store connectors: add (the platform's secret, or one made and shown once), list with the
webhook URL and the last webhook applied, rotate with a grace period, remove; CSRF-checked and scoped to
the viewer's workspace. Webhooks are sent to the same app, signed as the platforms sign."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cartback.core import connectors
from cartback.store import connectors as store
from cartback.testing import FrozenClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from connector_hooks import payload, raw, shopify_headers, woo_headers
from dashboard_client import make_user, open_app, sign_in

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SHOPIFY_SECRET = "shpss_" + "a1" * 16


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def shop(db, db_url, make_workspace, clock):
    tenant = make_workspace()
    with open_app(db_url, clock) as client:
        token = sign_in(client, make_user(db, tenant.name))
        yield client, tenant, token


def _add(client, token, platform, secret="", name=""):
    return client.post(
        "/app/settings/connectors",
        data={"platform": platform, "secret": secret, "name": name, "csrf_token": token},
    )


def _made(page: str) -> str:
    found = re.search(r'data-connector-made="(con_[^"]+)"', page)
    assert found, "no connector made"
    return found.group(1)


def _checkout(client, connector_id, secret, webhook_id=None):
    body = raw(payload("shopify", "checkouts_create"))
    return client.post(
        f"/hooks/shopify/{connector_id}",
        content=body,
        headers=shopify_headers(body, secret, "checkouts/create", webhook_id),
    )


def _row(page: str, connector_id: str) -> str:
    found = re.search(rf'<tr data-connector="{connector_id}">.*?</tr>', page, re.S)
    assert found, f"{connector_id} is not listed"
    return found.group(0)


def test_dashboard_connector_with_the_platforms_secret_lists_its_url_and_last_webhook(shop, db, clock):
    client, tenant, token = shop
    # Shopify signs with a secret of its own: one made here could never match.
    refused = _add(client, token, "shopify")
    assert refused.status_code == 400 and "paste the one it shows" in refused.text
    assert _add(client, token, "magento", "s").status_code == 400
    assert db.read_sync(lambda tx: store.list_for(tx, tenant.id)) == []

    made = _add(client, token, "shopify", SHOPIFY_SECRET, "Main store")
    assert made.status_code == 200
    connector_id = _made(made.text)
    # Under CARTBACK_PUBLIC_URL (the settings' default here), as the CLI prints it.
    url = f"http://127.0.0.1:8000/hooks/shopify/{connector_id}"
    assert f"data-connector-url>{url}<" in made.text
    # The shop's own secret is never echoed, and is stored encrypted.
    assert SHOPIFY_SECRET not in made.text and "data-connector-secret" not in made.text
    [stored] = db.read_sync(lambda tx: store.list_for(tx, tenant.id))
    assert SHOPIFY_SECRET not in stored.secret

    row = _row(client.get("/app/settings").text, connector_id)
    assert "<td>shopify</td><td>Main store</td>" in row and url in row and "none yet" in row

    clock.advance(minutes=5)
    sent = _checkout(client, connector_id, SHOPIFY_SECRET)
    assert sent.status_code == 200 and sent.json()["applied"] is True
    row = _row(client.get("/app/settings").text, connector_id)
    assert "none yet" not in row
    last = re.search(r"<td data-last-webhook>([^<]+)</td>", row)
    assert last and last.group(1).strip() != ""


def test_dashboard_connector_secret_made_for_woocommerce_is_shown_once_and_verifies(shop, db):
    client, _tenant, token = shop
    made = _add(client, token, "woocommerce")
    assert made.status_code == 200
    connector_id = _made(made.text)
    secret = re.search(r"data-connector-secret>([^<]+)<", made.text).group(1)
    assert secret not in client.get("/app/settings").text

    body = raw(payload("woocommerce", "order_pending"))
    forged = client.post(
        f"/hooks/woocommerce/{connector_id}",
        content=body,
        headers=woo_headers(body, "other", "order.created"),
    )
    assert forged.status_code == 401
    sent = client.post(
        f"/hooks/woocommerce/{connector_id}", content=body, headers=woo_headers(body, secret, "order.created")
    )
    assert sent.status_code == 200 and sent.json()["applied"] is True


def test_dashboard_rotation_keeps_the_previous_secret_for_the_grace_period(shop, clock):
    client, _tenant, token = shop
    connector_id = _made(_add(client, token, "shopify", SHOPIFY_SECRET).text)
    rotate = f"/app/settings/connectors/{connector_id}/rotate"
    assert client.post(rotate, data={"secret": "", "csrf_token": token}).status_code == 400
    assert (
        client.post(rotate, data={"secret": "n", "grace_hours": "-1", "csrf_token": token}).status_code == 400
    )

    rotated = client.post(rotate, data={"secret": "new-secret", "grace_hours": "2", "csrf_token": token})
    assert rotated.status_code == 200 and "the previous one stays valid until" in rotated.text
    assert "new-secret" not in rotated.text
    assert _checkout(client, connector_id, SHOPIFY_SECRET).status_code == 200
    assert _checkout(client, connector_id, "new-secret").status_code == 200
    clock.advance(hours=2, seconds=1)
    assert _checkout(client, connector_id, SHOPIFY_SECRET).status_code == 401
    assert _checkout(client, connector_id, "new-secret").status_code == 200

    # No grace: the previous secret is refused at once.
    client.post(rotate, data={"secret": "newer", "grace_hours": "0", "csrf_token": token})
    assert _checkout(client, connector_id, "new-secret").status_code == 401
    assert _checkout(client, connector_id, "newer").status_code == 200


def test_dashboard_rotation_makes_a_secret_where_the_shop_pastes_ours(shop):
    client, _tenant, token = shop
    connector_id = _made(_add(client, token, "woocommerce").text)
    rotated = client.post(
        f"/app/settings/connectors/{connector_id}/rotate", data={"secret": "", "csrf_token": token}
    )
    assert rotated.status_code == 200
    secret = re.search(r"data-connector-secret>([^<]+)<", rotated.text).group(1)
    body = raw(payload("woocommerce", "order_pending"))
    sent = client.post(
        f"/hooks/woocommerce/{connector_id}", content=body, headers=woo_headers(body, secret, "order.created")
    )
    assert sent.status_code == 200


def test_dashboard_removed_connector_refuses_its_webhooks(shop, db):
    client, _tenant, token = shop
    connector_id = _made(_add(client, token, "shopify", SHOPIFY_SECRET).text)
    assert _checkout(client, connector_id, SHOPIFY_SECRET).status_code == 200
    removed = client.post(
        f"/app/settings/connectors/{connector_id}/remove", data={"csrf_token": token}, follow_redirects=False
    )
    assert removed.status_code == 303 and removed.headers["location"].endswith("#connectors")
    page = client.get(removed.headers["location"]).text
    assert "Connector removed" in page and f'data-connector="{connector_id}"' not in page
    assert _checkout(client, connector_id, SHOPIFY_SECRET).status_code == 404
    assert db.read_sync(lambda tx: store.count_applied(tx, connector_id)) == 0
    again = client.post(f"/app/settings/connectors/{connector_id}/remove", data={"csrf_token": token})
    assert again.status_code == 404


def test_dashboard_connector_forms_need_the_csrf_token_and_stay_in_the_workspace(
    shop, db, make_workspace, clock
):
    client, _tenant, token = shop
    other = make_workspace()
    sealer = connectors.Sealer("a server secret")
    theirs = db.write_sync(
        lambda tx: connectors.add(tx, sealer, other.name, "shopify", "their-secret", "", clock.now())
    )
    assert client.post("/app/settings/connectors", data={"platform": "woocommerce"}).status_code == 403
    ours = _made(_add(client, token, "shopify", SHOPIFY_SECRET).text)
    for path in (f"/app/settings/connectors/{ours}/rotate", f"/app/settings/connectors/{ours}/remove"):
        assert client.post(path, data={"secret": "x"}).status_code == 403
    assert _checkout(client, ours, SHOPIFY_SECRET).status_code == 200

    # Another workspace's connector is not there to see, rotate or remove.
    assert theirs.id not in client.get("/app/settings").text
    for path, data in (
        (f"/app/settings/connectors/{theirs.id}/rotate", {"secret": "mine", "csrf_token": token}),
        (f"/app/settings/connectors/{theirs.id}/remove", {"csrf_token": token}),
    ):
        assert client.post(path, data=data).status_code == 404
    kept = db.read_sync(lambda tx: store.get(tx, theirs.id))
    assert kept is not None and kept.previous_secret is None
    assert sealer.open(kept.id, kept.secret) == "their-secret"
