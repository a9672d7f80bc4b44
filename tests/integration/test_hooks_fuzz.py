"""Schemathesis fuzzes the store connector routes (/hooks/{platform}/{connector_id}) of the in-process app:
as generated (unknown connectors, wrong platforms), unsigned at a real connector (a 401, nothing read),
and again with the generated fields laid over each documented payload, sent to a real connector of the
platform, signed as the platform signs, under each topic cartback maps, so the parsers see arbitrary JSON
past the signature check. Never a 5xx; every error is `{"error", "code"}`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from tests import fuzzing
from tests.connector_hooks import payload, shopify_headers, stripe_headers, woo_headers, woo_order

from cartback.core import connectors
from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database

SERVER_SECRET = "hooks-fuzz-server-secret"
SECRET = "hooks-fuzz-shop-secret"
TOPICS = {
    "shopify": [
        "checkouts/create",
        "orders/create",
        "orders/cancelled",
        "refunds/create",
        "customers/update",
    ],
    "woocommerce": ["order.created", "order.updated", "customer.created"],
    "stripe": ["checkout.session.expired", "checkout.session.completed", "charge.refunded"],
    "bigcommerce": ["store/order/statusUpdated", "store/cart/abandoned"],
}

BASES = {
    "shopify": [
        payload("shopify", name)
        for name in (
            "checkouts_create",
            "orders_create",
            "orders_create",
            "refunds_create",
            "customers_create",
        )
    ],
    "woocommerce": [woo_order("pending"), woo_order("processing"), payload("woocommerce", "customer")],
    "stripe": [
        payload("stripe", name)
        for name in ("checkout_session_expired", "checkout_session_completed", "charge_refunded")
    ],
    "bigcommerce": [payload("bigcommerce", "order_status_updated"), payload("bigcommerce", "cart_abandoned")],
}


def _document() -> dict[str, Any]:
    from cartback.app import create_app
    from cartback.settings import Settings

    app = create_app(Settings(database_url="sqlite://"), migrate=False)
    try:
        return app.openapi()
    finally:
        app.state.services.db.close()


schema = schemathesis.openapi.from_dict(_document()).include(path_regex="^/hooks/")
schema.config.phases.coverage.enabled = False
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def hooks_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.settings import Settings

    url = f"sqlite:///{tmp_path_factory.mktemp('hooks') / 'cartback.db'}"
    db = Database(url)
    db.migrate()
    sealer = connectors.Sealer(SERVER_SECRET)

    def create(tx: workspaces.Tx) -> dict[str, str]:
        ws = workspaces.create_workspace(tx, "hooks-fuzz", system_clock.now())
        return {p: connectors.add(tx, sealer, ws.name, p, SECRET, "", system_clock.now()).id for p in TOPICS}

    made = db.write_sync(create)
    db.close()
    settings_ = Settings(
        database_url=url,
        secret_key=SERVER_SECRET,
        sqlite_synchronous="NORMAL",
        rate_limit_burst=0,
        rate_limit_steady=0,
    )
    with TestClient(create_app(settings_, run_worker=False), raise_server_exceptions=False) as client:
        yield client, made


def _signed(platform: str, body: bytes, topic: str) -> dict[str, str]:
    if platform == "shopify":
        return shopify_headers(body, SECRET, topic)
    if platform == "woocommerce":
        return woo_headers(body, SECRET, topic)
    if platform == "bigcommerce":
        return {"Content-Type": "application/json", "X-Cartback-Secret": SECRET}
    return stripe_headers(body, SECRET)


def _expect(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and body["error"].strip() and body["code"], body


@schema.parametrize()
@settings(
    max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
def test_hooks_fuzz_no_server_error(case: Any, hooks_api: Any) -> None:
    api, made = hooks_api
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    if isinstance(kwargs.get("data"), str | bytes):
        kwargs["content"] = kwargs.pop("data")
    response = fuzzing.request(api, **kwargs)
    case.validate_response(response, checks=CHECKS)
    _expect(response)

    platform = case.path_parameters.get("platform")
    if platform not in made:
        return
    # The generated request unsigned at a real connector of its platform: refused before its body is read.
    unsigned = fuzzing.request(
        api, **{**kwargs, "url": f"http://testserver/hooks/{platform}/{made[platform]}"}
    )
    assert unsigned.status_code == 401, unsigned.text
    _expect(unsigned)
    data = case.body if isinstance(case.body, dict) else {}
    for topic, base in zip(TOPICS[platform], BASES[platform], strict=True):
        # The documented payload with the generated fields over it: the parsers get past the first field.
        if platform == "stripe":
            shaped = {**base, "type": topic, "data": {"object": {**base["data"]["object"], **data}}}
        else:
            shaped = {**base, **data}
        body = json.dumps(shaped).encode()
        res = api.post(
            f"/hooks/{platform}/{made[platform]}", content=body, headers=_signed(platform, body, topic)
        )
        _expect(res)
