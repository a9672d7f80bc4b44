"""The logs of a real `cartback serve` that ingests, looks subscribers up by address, refuses a bad key and
sends mail: every line a JSON object, one access line per request with its request id, and nowhere the
API key, the secret key, an Authorization header or a full email address."""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
from smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

FLOW = {
    "name": "abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "steps": [{"type": "email", "subject": "Your cart", "html": "<p>{{ event.checkoutUrl }}</p>"}],
}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_logs_are_json_with_request_ids_and_no_secrets(start_server, db_url, make_workspace):
    tenant = make_workspace()
    secret_key = "sk-" + secrets.token_urlsafe(32)
    email = f"jane.{secrets.token_hex(4)}@example.com"
    with SmtpSink() as sink:
        server = start_server(
            db_url,
            env={
                "CARTBACK_LOG_FORMAT": "json",
                "CARTBACK_SECRET_KEY": secret_key,
                "CARTBACK_SMTP_URL": sink.url,
            },
        )
        auth = {"Authorization": f"Bearer {tenant.key}"}
        with httpx.Client(base_url=server.api, headers=auth, timeout=10) as api:
            seq = api.post("/sequences", json=FLOW).json()["sequence"]["id"]
            api.post(f"/sequences/{seq}/enable").raise_for_status()
            checkout = {
                "checkoutId": "c-1",
                "customer": {"email": email},
                "totalCents": 4200,
                "checkoutUrl": "https://shop.example.com/c/1",
            }
            res = api.post("/checkouts", json=checkout, headers={"X-Request-Id": "trace-checkout-1"})
            assert res.status_code == 200 and res.headers["x-request-id"] == "trace-checkout-1"
            assert api.get(f"/subscribers/{email}").status_code == 200
            assert api.post("/checkouts", json={"customer": {"email": email}}).status_code == 400
            bad = api.get("/subscribers", headers={"Authorization": "Bearer cb_wrongwrongwrongwrong"})
            assert bad.status_code == 401
            sink.wait_for(1)
        assert server.proc is not None
        server.stop()
        time.sleep(0.1)

    assert server.log is not None
    text = server.log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    for line in lines:
        assert {"event", "level", "logger", "timestamp"} <= set(line), line
    access = [line for line in lines if line["logger"] == "cartback.access"]
    assert len(access) >= 6
    for line in access:
        assert {"method", "path", "status", "duration_ms", "surface", "request_id"} <= set(line), line
    traced = [line for line in access if line["request_id"] == "trace-checkout-1"]
    assert len(traced) == 1
    assert traced[0]["path"] == "/api/v1/checkouts" and traced[0]["status"] == 200
    assert traced[0]["workspace_id"] == tenant.id and traced[0]["surface"] == "sequenzy"
    assert any(line["path"] == "/api/v1/subscribers/{email}" for line in access)
    assert any(line["status"] == 401 and line["workspace_id"] is None for line in access)
    assert any("writer:" in line["event"] for line in lines)  # the shutdown summary, in JSON too
    for secret in (tenant.key, secret_key, email, "cb_wrongwrong", "Bearer"):
        assert secret not in text, secret
