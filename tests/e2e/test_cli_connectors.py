"""`cartback connector add|list|rotate|remove`: the printed webhook URL works against a running server."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from tests.connector_hooks import payload, raw, shopify_headers


def cartback(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CARTBACK_DATABASE_URL": db_url,
        "CARTBACK_PUBLIC_URL": "https://cartback.example.com/",
    }
    return subprocess.run(
        [sys.executable, "-m", "cartback", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_connector_add_prints_a_webhook_url_that_takes_signed_webhooks(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    added = cartback(url, "connector", "add", "shopify", "--workspace", "shop", "--secret", "shpss_cli")
    assert added.returncode == 0, added.stderr
    hook = added.stdout.strip().splitlines()[-1]
    assert hook.startswith("https://cartback.example.com/hooks/shopify/con_")
    connector_id = hook.rsplit("/", 1)[1]
    listed = cartback(url, "connector", "list", "--workspace", "shop")
    assert listed.stdout.split("\t")[:2] == [connector_id, "shopify"] and hook in listed.stdout

    server = start_server(url)
    body = raw(payload("shopify", "customers_create"))
    path = f"{server.url}/hooks/shopify/{connector_id}"
    assert httpx.post(
        path, content=body, headers=shopify_headers(body, "shpss_cli", "customers/create")
    ).is_success
    # The secret is not in the database in clear.
    assert b"shpss_cli" not in (tmp_path / "cli.db").read_bytes()

    rotated = cartback(
        url, "connector", "rotate", connector_id, "--workspace", "shop", "--secret", "shpss_new"
    )
    assert rotated.returncode == 0 and "valid until" in rotated.stderr
    for secret in ("shpss_cli", "shpss_new"):
        res = httpx.post(path, content=body, headers=shopify_headers(body, secret, "customers/create"))
        assert res.status_code == 200, secret

    removed = cartback(url, "connector", "remove", connector_id, "--workspace", "shop")
    assert removed.returncode == 0, removed.stderr
    assert (
        httpx.post(
            path, content=body, headers=shopify_headers(body, "shpss_new", "customers/create")
        ).status_code
        == 404
    )
    assert cartback(url, "connector", "list", "--workspace", "shop").stdout == ""


def test_cli_connector_add_generates_a_secret_when_none_given(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    added = cartback(url, "connector", "add", "woocommerce", "--workspace", "shop", "--name", "Woo")
    assert added.returncode == 0, added.stderr
    secret, hook = added.stdout.strip().splitlines()[-2:]
    assert len(secret) >= 32 and "/hooks/woocommerce/con_" in hook
    bad = cartback(url, "connector", "add", "magento", "--workspace", "shop", "--secret", "x")
    assert bad.returncode == 1 and "platform must be one of" in bad.stderr
