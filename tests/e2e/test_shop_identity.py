"""The shop's identity set from the command line reaches the mail a customer gets over SMTP and the
unsubscribe page its link opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
from e2e.test_smtp_delivery import Api, checkout, env_for, sequence, wait
from smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


def cartback(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARTBACK_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "cartback", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_workspace_update_shop_name_reaches_the_email_and_the_unsubscribe_page(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    who = "hiker@example.com"
    with SmtpSink() as sink:
        server = start_server(url, env=env_for(sink))  # the first start creates `default`
        updated = cartback(
            url,
            "workspace",
            "update",
            "default",
            "--shop-name",
            "Acme Outdoor",
            "--shop-address",
            "1 Trail Rd",
        )
        assert updated.returncode == 0, updated.stderr
        assert "Acme Outdoor" in updated.stderr
        key = cartback(url, "apikey", "create", "--workspace", "default").stdout.strip().splitlines()[-1]
        api = Api(server, key)
        flow = sequence()
        flow["steps"] = [{"type": "email", "template": "abandoned_cart"}]
        api.active_sequence(flow)
        api.post("/checkouts", checkout("chk-acme", who))
        wait(lambda: [m for m in sink.received if m.rcpt_tos == [who]], what="the message at the sink")
        [mail] = [m.message for m in sink.received if m.rcpt_tos == [who]]
        html = mail.get_body(("html",)).get_content()
        assert "Acme Outdoor" in html and "started a checkout at Acme Outdoor" in html
        assert "1 Trail Rd" in html and "default" not in html.lower().replace("defaults", "")
        unsubscribe = mail["List-Unsubscribe"].split(",")[0].strip().strip("<>")
        page = httpx.get(server.url + urlparse(unsubscribe).path)
        assert page.status_code == 200 and "Stop emails from Acme Outdoor" in page.text
        api.http.close()

    # Only the options given change; an empty one goes back to the workspace's name.
    kept = cartback(url, "workspace", "update", "default", "--shop-address", "2 Summit Way")
    assert kept.returncode == 0 and "'Acme Outdoor', 2 Summit Way" in kept.stderr
    reset = cartback(url, "workspace", "update", "default", "--shop-name", "")
    assert reset.returncode == 0 and "signed 'default'" in reset.stderr
    assert cartback(url, "workspace", "update", "nosuch", "--shop-name", "x").returncode == 1
