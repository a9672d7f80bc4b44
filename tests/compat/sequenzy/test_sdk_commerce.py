"""The official `sequenzy` SDK against a real `cartback serve`: checkout tracking and order push."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from sequenzy import Sequenzy
from sequenzy.errors import BadRequestError, UnauthorizedError
from sequenzy.types import CommerceCustomer, CommerceOrderItem

CUSTOMER = CommerceCustomer(
    email="jane.doe@example.com", first_name="Jane", last_name="Doe", external_id="cust_1"
)
ITEMS = [
    CommerceOrderItem(
        product_id="prod_tee",
        variant_id="var_tee_m",
        title="Logo tee",
        variant_title="M",
        sku="TEE-M",
        quantity=2,
        price_cents=2500,
    ),
    CommerceOrderItem(product_id="prod_mug", title="Mug", quantity=1, price_cents=1450),
]


@pytest.fixture
def client(server, make_workspace) -> Iterator[Sequenzy]:
    with httpx.Client(timeout=10) as http:
        yield Sequenzy(api_key=make_workspace().key, base_url=server.api, max_retries=0, httpx_client=http)


def test_sdk_track_checkout_started_returns_stable_ids(client):
    kwargs = dict(
        checkout_id="chk_sdk_1",
        customer=CUSTOMER,
        checkout_url="https://shop.example.com/checkout/chk_sdk_1",
        currency="USD",
        items=ITEMS,
        total_cents=6450,
        properties={"source": "smoke"},
    )
    first = client.orders.track_checkout_started(**kwargs)
    assert first.success is True
    assert first.checkout_id == "chk_sdk_1"
    assert first.subscriber_id.startswith("sub_")
    assert first.event_id.startswith("evt_")
    again = client.orders.track_checkout_started(**kwargs)
    assert (again.subscriber_id, again.event_id) == (first.subscriber_id, first.event_id)


def test_sdk_push_order_through_its_statuses(client):
    checkout = client.orders.track_checkout_started(
        checkout_id="chk_sdk_2", customer=CUSTOMER, total_cents=6450
    )
    placed = client.orders.push(
        order_id="ord_sdk_1",
        order_number="1001",
        currency="USD",
        total_cents=6450,
        customer=CUSTOMER,
        items=ITEMS,
        status="placed",
        properties={"checkoutId": "chk_sdk_2"},
        ordered_at=dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC),
    )
    assert placed.success is True
    assert placed.order_id == "ord_sdk_1"
    extra = placed.model_extra or {}
    assert extra["subscriberId"] == checkout.subscriber_id
    assert extra["orderStatus"] == "placed"

    refunded = client.orders.push(
        order_id="ord_sdk_1",
        currency="USD",
        total_cents=6450,
        customer=CUSTOMER,
        status="refunded",
        refund_amount_cents=1450,
    )
    assert refunded.success is True
    assert (refunded.model_extra or {})["orderStatus"] == "refunded"


def test_sdk_bad_order_raises_typed_bad_request(client):
    with pytest.raises(BadRequestError) as info:
        client.orders.push(order_id="ord_bad", currency="DOLLARS", total_cents=1, customer=CUSTOMER)
    assert info.value.body["success"] is False
    assert "currency" in info.value.body["error"]


def test_sdk_wrong_key_raises_typed_unauthorized(server):
    with httpx.Client() as http:
        client = Sequenzy(api_key="cb_not_a_key", base_url=server.api, max_retries=0, httpx_client=http)
        with pytest.raises(UnauthorizedError):
            client.orders.track_checkout_started(checkout_id="x", customer=CUSTOMER)
