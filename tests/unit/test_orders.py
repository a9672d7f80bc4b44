from __future__ import annotations

from datetime import UTC, datetime

from cartback.core import orders
from cartback.store.orders import Order

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make(
    order_id: str,
    total: int,
    *,
    status: str = "placed",
    currency: str = "USD",
    refund: int = 0,
    day: int = 1,
) -> Order:
    at = T0.replace(day=day)
    return Order(
        order_id, "ws", order_id, None, "sub", None, status, currency, total, refund, [], {}, at, at, at
    )


def test_revenue_attributes_empty_history_is_empty():
    assert orders.revenue_attributes([]) == {}


def test_revenue_attributes_never_add_currencies_together():
    attrs = orders.revenue_attributes([make("a", 1000, currency="EUR", day=1), make("b", 500, day=2)])
    assert (attrs["currency"], attrs["ordersCount"], attrs["totalSpentCents"]) == ("USD", 1, 500)


def test_revenue_attributes_partial_refund_lowers_total():
    attrs = orders.revenue_attributes([make("a", 1000, status="refunded", refund=250)])
    assert (attrs["ordersCount"], attrs["totalSpent"]) == (1, 7.5)


def test_revenue_attributes_zero_decimal_currency_is_not_divided():
    attrs = orders.revenue_attributes([make("a", 5000, currency="JPY")])
    assert attrs["totalSpent"] == 5000


def test_net_cents_cancelled_counts_nothing():
    assert orders.net_cents(make("a", 1000, status="cancelled")) == 0
