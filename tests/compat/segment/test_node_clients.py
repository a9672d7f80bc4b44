"""Segment-protocol Node clients nobody here wrote, against a real `cartback serve`: Segment's
`@segment/analytics-node` and RudderStack's `@rudderstack/rudder-sdk-node` (which gzips its JSON and lets
its HTTP library label it form-urlencoded). Each sends identify, Checkout Started, page and group; all of
it is read back from the database. The packages come from tests/compat/segment/node's lock file
(conftest.node_clients)."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
from tests.compat.segment.test_sdk_batch import stored


@pytest.mark.parametrize("client", ["segment", "rudderstack"])
def test_node_client_calls_are_stored_exactly(node_clients, server, make_workspace, client):
    tenant = make_workspace()
    suffix = uuid.uuid4().hex[:8]
    sent = subprocess.run(
        ["node", "send.mjs", client, server.url, tenant.key, suffix],
        cwd=node_clients,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr

    user = f"node_{client}_{suffix}"
    data, by_key = the_journey_as_stored(server.database_url, tenant.id, user)
    [person] = data["subscribers"]
    assert {k: e["name"] for k, e in by_key.items()} == {
        f"segment:{user}_page": "page.viewed",
        f"segment:{user}_group": "group.joined",
    }
    assert by_key[f"segment:{user}_page"]["properties"] == {
        "path": "/pricing",
        "name": "Pricing",
        "category": "Docs",
    }
    assert by_key[f"segment:{user}_group"]["properties"] == {"groupId": "acme", "traits": {"name": "Acme"}}
    started = [e for e in data["events"] if e["name"] == "ecommerce.checkout_started"]
    assert [e["subscriber_id"] for e in started] == [person["id"]]


def the_journey_as_stored(
    database_url: str, workspace_id: str, user: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What every client's identify and Checkout Started must leave (the person with the traits not
    named by Segment's spec kept as attributes, the checkout with its cart); gives the data and the
    client's segment events by idempotency key for the caller's own checks."""
    data = stored(database_url, workspace_id)
    [person] = data["subscribers"]
    assert (person["email"], person["external_id"], person["first_name"]) == (
        f"{user}@example.com",
        user,
        "Noor",
    )
    assert person["attributes"] == {"plan": "pro", "groupId": "acme"}
    [checkout] = data["checkouts"]
    assert (checkout["checkout_id"], checkout["total_cents"], checkout["currency"]) == (
        f"chk_{user}",
        6450,
        "EUR",
    )
    assert checkout["checkout_url"] == f"https://shop.example.com/checkout/{user}"
    assert [(i["productId"], i["priceCents"], i["quantity"]) for i in checkout["items"]] == [
        ("tee", 2500, 2),
        ("mug", 1450, 1),
    ]
    by_key = {
        e["idempotency_key"]: e for e in data["events"] if (e["idempotency_key"] or "").startswith("segment:")
    }
    return data, by_key
