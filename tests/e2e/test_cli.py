"""The documented CLI: workspace and key creation, and the first start of `serve` on an empty database."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

SEED_BODY = {
    "checkoutId": "checkout-abc123",
    "totalCents": 8850,
    "currency": "USD",
    "checkoutUrl": "https://store.example.com/checkout/abc123",
    "customer": {"email": "buyer@example.com"},
    "items": [{"productId": "SKU-PROTEIN-1KG", "title": "Protein Powder", "quantity": 1, "priceCents": 8850}],
}


def cartback(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARTBACK_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "cartback", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_workspace_and_apikey_create_a_working_key(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    created = cartback(url, "workspace", "create", "shop")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("ws_")
    duplicate = cartback(url, "workspace", "create", "shop")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    key = cartback(url, "apikey", "create", "--workspace", "shop", "--scope", "events:write")
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip().splitlines()[-1]
    assert secret.startswith("cb_")

    server = start_server(url)
    ok = httpx.post(server.api + "/checkouts", json=SEED_BODY, headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    # The server never saw the secret in clear in its database: only a hash is stored.
    assert secret.encode() not in (tmp_path / "cli.db").read_bytes()


def test_cli_apikey_for_unknown_workspace_fails(tmp_path):
    result = cartback(f"sqlite:///{tmp_path / 'x.db'}", "apikey", "create", "--workspace", "nope")
    assert result.returncode == 1
    assert "no workspace named 'nope'" in result.stderr


@pytest.mark.slow
def test_cli_serve_first_start_prints_a_key_that_answers_the_seed_example(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'first.db'}"
    server = start_server(url)
    assert server.log is not None
    lines = [line for line in server.log.read_text().splitlines() if "API key (shown only this once)" in line]
    assert len(lines) == 1
    key = lines[0].rsplit(" ", 1)[-1]
    res = httpx.post(
        server.api + "/checkouts",
        json=SEED_BODY,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert res.status_code == 200
    body = res.json()
    assert body["success"] is True and body["checkoutId"] == "checkout-abc123"
    assert body["subscriberId"].startswith("sub_") and body["eventId"].startswith("evt_")

    # A restart does not create a second default workspace or print another key.
    server.stop()
    server.start()
    again = [line for line in server.log.read_text().splitlines() if "shown only this once" in line]
    assert len(again) == 1


def test_cli_explain_names_the_failing_filter(tmp_path):
    from cartback.core import checkouts, sequences, subscribers
    from cartback.core.clock import system_clock
    from cartback.store import workspaces
    from cartback.store.db import Database
    from cartback.testing import run_until_idle

    url = f"sqlite:///{tmp_path / 'explain.db'}"
    db = Database(url)
    db.migrate()
    now = system_clock.now()
    ws = db.write_sync(lambda tx: workspaces.create_workspace(tx, "shop", now))
    body = {
        "name": "big",
        "trigger": "event_received",
        "eventName": "Started Checkout",
        "propertyFilters": [{"path": "value", "operator": "greater_than", "value": 100}],
        "steps": [{"type": "email", "subject": "x", "text": "y"}],
    }
    seq = db.write_sync(lambda tx: sequences.create(tx, ws.id, body, now, status="active"))
    data = checkouts.CheckoutInput(
        checkout_id="c1",
        customer=subscribers.Identity(email="e@example.com"),
        total_cents=2500,
        currency="USD",
    )
    db.write_sync(lambda tx: checkouts.record_checkout(tx, ws.id, data, system_clock.now()))
    run_until_idle(db, system_clock)
    db.close()

    result = cartback(url, "explain", "--workspace", "shop", "--sequence", seq.id, "--email", "e@example.com")
    assert result.returncode == 0, result.stderr
    assert "not enrolled" in result.stdout
    assert "trigger filter failed: value greater_than 100 failed: found [25.0]" in result.stdout.replace(
        "\n", " "
    )
