"""RudderStack's `rudder-sdk-python` (a Segment-protocol client nobody here wrote) against a real
`cartback serve`: its identify sends every trait in `context.traits` only, and page, screen and group
calls are stored as events on the person."""

from __future__ import annotations

import pytest
from rudderstack.analytics import Client
from tests.compat.segment.test_sdk_batch import stored


@pytest.mark.parametrize("gzip", [True, False])
def test_rudderstack_python_sdk_traits_and_page_screen_group_are_kept(server, make_workspace, gzip):
    tenant = make_workspace()
    failures: list[Exception] = []
    client = Client(
        tenant.key,
        host=server.url,
        gzip=gzip,
        on_error=lambda exc, batch: failures.append(exc),
        max_retries=0,
        upload_interval=0.05,
    )
    client.identify(
        "cust_77",
        {"email": "riya@example.com", "firstName": "Riya", "plan": "pro", "seats": 4},
        message_id="m1",
    )
    client.page("cust_77", "Docs", "Pricing", {"path": "/pricing", "title": "Pricing"}, message_id="m2")
    client.screen("cust_77", "App", "Cart", {"items": 2}, message_id="m3")
    client.group("cust_77", "acme", {"name": "Acme Inc", "employees": 40}, message_id="m4")
    client.track("cust_77", "Hat Viewed", {"product_id": "hat"}, message_id="m5")
    client.flush()
    client.join()
    assert failures == []

    data = stored(server.database_url, tenant.id)
    [riya] = data["subscribers"]
    assert (riya["email"], riya["external_id"], riya["first_name"]) == ("riya@example.com", "cust_77", "Riya")
    assert riya["attributes"] == {"plan": "pro", "seats": 4, "groupId": "acme"}
    by_key = {e["idempotency_key"]: e for e in data["events"] if e["source"] == "segment"}
    assert {k: (e["name"], e["subscriber_id"]) for k, e in by_key.items()} == {
        "segment:m2": ("page.viewed", riya["id"]),
        "segment:m3": ("screen.viewed", riya["id"]),
        "segment:m4": ("group.joined", riya["id"]),
        "segment:m5": ("Hat Viewed", riya["id"]),
    }
    assert by_key["segment:m2"]["properties"] == {
        "path": "/pricing",
        "title": "Pricing",
        "name": "Pricing",
        "category": "Docs",
    }
    assert by_key["segment:m3"]["properties"] == {"items": 2, "name": "Cart", "category": "App"}
    assert by_key["segment:m4"]["properties"] == {
        "groupId": "acme",
        "traits": {"name": "Acme Inc", "employees": 40},
    }
