"""The official `segment-analytics-python` client against a real `cartback serve`: a batch of identify,
Checkout Started and Order Completed is stored as a subscriber, a checkout and its order; the same batch
sent again changes nothing; gzip bodies and the client's error handling."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from segment.analytics import Client
from segment.analytics.request import APIError

from cartback.store.db import Database
from cartback.store.tables import checkouts, events, orders, subscribers

PRODUCTS = [
    {
        "product_id": "prod_tee",
        "sku": "TEE-M",
        "name": "Logo tee",
        "variant": "M",
        "price": 25.0,
        "quantity": 2,
        "url": "https://shop.example.com/p/tee",
    },
    {"product_id": "prod_mug", "sku": "MUG", "name": "Mug", "price": 14.5, "quantity": 1},
]


def stored(database_url: str, workspace_id: str) -> dict[str, list[Any]]:
    """What the workspace holds that a Segment call can change."""
    db = Database(database_url)
    try:

        def read(tx: Any) -> dict[str, list[Any]]:
            out = {}
            for table in (subscribers, events, checkouts, orders):
                rows = tx.execute(
                    sa.select(table).where(table.c.workspace_id == workspace_id).order_by(table.c.id)
                ).all()
                # The server's own worker marks events dispatched whenever it gets to them.
                out[table.name] = [
                    {k: v for k, v in row._asdict().items() if k != "dispatched_at"} for row in rows
                ]
            return out

        return db.read_sync(read)
    finally:
        db.close()


def send_checkout_batch(client: Client, suffix: str, ids: dict[str, str]) -> None:
    checkout_id = f"chk_{suffix}"
    client.identify(
        "cust_1001",
        {"email": "jane.doe@example.com", "firstName": "Jane", "lastName": "Doe", "plan": "gold"},
        message_id=ids["identify"],
    )
    client.track(
        "cust_1001",
        "Checkout Started",
        {
            "checkout_id": checkout_id,
            "value": 64.5,
            "revenue": 64.5,
            "currency": "USD",
            "products": PRODUCTS,
            "checkout_url": f"https://shop.example.com/checkout/{checkout_id}",
        },
        context={"traits": {"email": "jane.doe@example.com"}},
        message_id=ids["checkout"],
    )
    client.track(
        "cust_1001",
        "Order Completed",
        {
            "checkout_id": checkout_id,
            "order_id": f"ord_{suffix}",
            "total": 64.5,
            "revenue": 64.5,
            "currency": "USD",
            "products": PRODUCTS,
        },
        context={"traits": {"email": "jane.doe@example.com"}},
        message_id=ids["order"],
    )


@pytest.fixture
def segment_client(server, make_workspace) -> Callable[..., tuple[Client, list[Exception]]]:
    tenant = make_workspace()
    made: list[Client] = []

    def make(*, key: str | None = None, gzip: bool = True) -> tuple[Client, list[Exception]]:
        failures: list[Exception] = []
        client = Client(
            key or tenant.key,
            host=server.url,
            gzip=gzip,
            on_error=lambda exc, batch: failures.append(exc),
            max_retries=0,
            upload_interval=0.05,
        )
        made.append(client)
        return client, failures

    make.tenant = tenant  # type: ignore[attr-defined]
    yield make
    for client in made:
        client.shutdown()


def test_sdk_batch_is_stored_and_a_replay_changes_nothing(segment_client, server):
    client, failures = segment_client()
    suffix = uuid.uuid4().hex[:8]
    ids = {name: str(uuid.uuid4()) for name in ("identify", "checkout", "order")}
    send_checkout_batch(client, suffix, ids)
    client.flush()
    assert failures == []

    tenant = segment_client.tenant
    first = stored(server.database_url, tenant.id)
    [jane] = first["subscribers"]
    assert (jane["email"], jane["external_id"], jane["first_name"], jane["last_name"]) == (
        "jane.doe@example.com",
        "cust_1001",
        "Jane",
        "Doe",
    )
    assert jane["attributes"]["plan"] == "gold"
    [checkout] = first["checkouts"]
    assert checkout["checkout_id"] == f"chk_{suffix}"
    assert (checkout["total_cents"], checkout["currency"]) == (6450, "USD")
    assert checkout["checkout_url"] == f"https://shop.example.com/checkout/chk_{suffix}"
    assert checkout["items"][0] == {
        "productId": "prod_tee",
        "title": "Logo tee",
        "quantity": 2,
        "priceCents": 2500,
        "url": "https://shop.example.com/p/tee",
        "sku": "TEE-M",
        "variantTitle": "M",
    }
    assert checkout["order_id"] == f"ord_{suffix}"
    [order] = first["orders"]
    assert (order["order_id"], order["status"], order["total_cents"]) == (f"ord_{suffix}", "placed", 6450)
    assert order["checkout_id"] == f"chk_{suffix}"
    names = sorted(e["name"] for e in first["events"] if e["source"] == "segment")
    assert names == ["ecommerce.checkout_started", "ecommerce.order_placed"]

    # A later identify renames Jane; then the original batch arrives again (a retry after a lost reply).
    client.identify("cust_1001", {"firstName": "Janet"})
    client.flush()
    renamed = stored(server.database_url, tenant.id)
    assert renamed["subscribers"][0]["first_name"] == "Janet"

    replay, replay_failures = segment_client()
    send_checkout_batch(replay, suffix, ids)
    replay.flush()
    assert replay_failures == []
    assert stored(server.database_url, tenant.id) == renamed


def test_sdk_sync_mode_without_gzip_and_a_wrong_key(segment_client, server):
    client = Client(segment_client.tenant.key, host=server.url, sync_mode=True)
    client.track("cust_7", "Product Viewed", {"product_id": "p1"}, context={"traits": {"email": "a@b.co"}})
    [event] = [
        e for e in stored(server.database_url, segment_client.tenant.id)["events"] if e["source"] == "segment"
    ]
    assert (event["name"], event["properties"]["product_id"]) == ("Product Viewed", "p1")

    wrong = Client("not-a-key", host=server.url, sync_mode=True)
    with pytest.raises(APIError) as caught:
        wrong.identify("cust_7", {"email": "a@b.co"})
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_sdk_async_error_is_reported_once_not_retried(segment_client, server):
    client, failures = segment_client(key="wrong-key")
    client.identify("cust_8", {"email": "c@d.co"})
    client.flush()
    assert len(failures) == 1
    assert isinstance(failures[0], APIError) and failures[0].status == 401


def test_sdk_anonymous_checkout_is_merged_into_the_identified_customer(segment_client, server):
    client, failures = segment_client()
    client.identify("cust_2002", {"email": "sam@example.com", "firstName": "Sam"})
    client.flush()
    client.track(
        event="Checkout Started",
        properties={"cart_id": "cart_anon", "value": 14.5, "products": PRODUCTS[1:]},
        anonymous_id="anon-browser-1",
    )
    client.flush()
    before = stored(server.database_url, segment_client.tenant.id)
    assert len(before["subscribers"]) == 2

    client.identify("cust_2002", {"email": "sam@example.com"}, anonymous_id="anon-browser-1")
    client.flush()
    assert failures == []
    after = stored(server.database_url, segment_client.tenant.id)
    [sam] = after["subscribers"]
    assert (sam["email"], sam["external_id"], sam["anonymous_id"]) == (
        "sam@example.com",
        "cust_2002",
        "anon-browser-1",
    )
    [cart] = after["checkouts"]
    assert (cart["checkout_id"], cart["subscriber_id"], cart["total_cents"]) == ("cart_anon", sam["id"], 1450)
    assert {e["subscriber_id"] for e in after["events"]} == {sam["id"]}
