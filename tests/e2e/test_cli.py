"""The documented CLI: workspace and key creation, and the first start of `serve` on an empty database."""

from __future__ import annotations

import os
import subprocess
import sys
import time

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
def test_cli_serve_first_start_prints_no_key_into_a_log_and_says_how_to_make_one(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'first.db'}"
    server = start_server(url)  # its output goes to a file, as under systemd or Docker
    assert server.log is not None
    log = server.log.read_text()
    assert "Created workspace 'default'. No API key is shown here" in log
    assert "cb_" not in log and "shown only this once" not in log
    key = cartback(url, "apikey", "create", "--workspace", "default").stdout.strip().splitlines()[-1]
    res = httpx.post(
        server.api + "/checkouts",
        json=SEED_BODY,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert res.status_code == 200
    body = res.json()
    assert body["success"] is True and body["checkoutId"] == "checkout-abc123"
    assert body["subscriberId"].startswith("sub_") and body["eventId"].startswith("evt_")

    # A restart does not create a second default workspace.
    server.stop()
    server.start()
    assert server.log.read_text().count("Created workspace 'default'") == 1


@pytest.mark.slow
def test_cli_serve_first_start_shows_the_key_once_on_a_terminal(tmp_path):
    """On a terminal (a pseudo-terminal here) the first key is shown once, and works."""
    import pty
    import socket

    url = f"sqlite:///{tmp_path / 'tty.db'}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    leader, follower = pty.openpty()
    env = {**os.environ, "CARTBACK_DATABASE_URL": url, "CARTBACK_LOG_FORMAT": "json"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cartback", "serve", "--port", str(port)],
        env=env,
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"shown only this once" not in seen or not seen.endswith(b"\n"):
            assert time.monotonic() < deadline, seen
            seen += os.read(leader, 4096)
        line = next(x for x in seen.decode().splitlines() if "shown only this once" in x)
        key = line.strip().rsplit(" ", 1)[-1]
        assert key.startswith("cb_")
        api = f"http://127.0.0.1:{port}/api/v1"
        while True:
            try:
                res = httpx.post(
                    api + "/checkouts", json=SEED_BODY, headers={"Authorization": f"Bearer {key}"}
                )
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert res.status_code == 200, res.text
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(leader)


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


def test_cli_apikey_scopes_expiry_list_and_revoke(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    made = cartback(url, "apikey", "create", "--workspace", "shop", "--scope", "read", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert "scopes read" in made.stderr and "expires" in made.stderr
    key_id = made.stderr.split("API key ", 1)[1].split()[0]
    assert key_id.startswith("key_")

    listed = cartback(url, "apikey", "list", "--workspace", "shop")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line.split("\t") for line in listed.stdout.splitlines()]
    assert row[0] == key_id and row[1] == secret[:10] and row[3] == "read" and row[-1] == "active"
    assert secret not in listed.stdout

    server = start_server(url)
    headers = {"Authorization": f"Bearer {secret}"}
    assert httpx.get(server.api + "/subscribers", headers=headers).status_code == 200
    forbidden = httpx.post(server.api + "/checkouts", json=SEED_BODY, headers=headers)
    assert forbidden.status_code == 403 and "'events:write' scope" in forbidden.json()["error"]

    revoked = cartback(url, "apikey", "revoke", key_id, "--workspace", "shop")
    assert revoked.returncode == 0, revoked.stderr
    # The running server caches keys for a few seconds; then the revoked key is refused.
    deadline = time.monotonic() + 10
    while (status := httpx.get(server.api + "/subscribers", headers=headers).status_code) == 200:
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.2)
    assert status == 401
    assert cartback(url, "apikey", "list", "--workspace", "shop").stdout.split("\t")[-1].startswith("revoked")


@pytest.mark.parametrize(
    ("expires", "message"),
    [("soon", "give a duration such as 30d"), ("2001-01-01", "already past")],
)
def test_cli_apikey_create_refuses_a_bad_expiry(tmp_path, expires, message):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    result = cartback(url, "apikey", "create", "--workspace", "shop", "--expires", expires)
    assert result.returncode == 1
    assert message in result.stderr


def test_cli_apikey_revoke_unknown_key_fails(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    result = cartback(url, "apikey", "revoke", "key_nope", "--workspace", "shop")
    assert result.returncode == 1 and "no API key 'key_nope'" in result.stderr
