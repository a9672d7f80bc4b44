"""The attribution rules, without a database: windows and their boundaries, last touch, the checkout's own
enrollment winning, and which orders are attributable at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cartback.core import attribution
from cartback.store.attributions import Touch
from cartback.store.events import Event

ORDER_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def touch(
    kind: str,
    before: timedelta,
    *,
    message: str = "msg_1",
    sequence: str = "seq_a",
    checkout: str | None = None,
) -> Touch:
    return Touch(
        kind=kind,
        at=ORDER_AT - before,
        message_id=message,
        sequence_id=sequence,
        enrollment_id=f"enr_{message}",
        node_id="n1",
        checkout_id=checkout,
    )


def choose(*touches: Touch, checkout: str | None = None, rules: attribution.Rules | None = None):
    return attribution.choose(touches, ORDER_AT, checkout, rules or attribution.DEFAULT_RULES)


@pytest.mark.parametrize("kind", ["click", "open"])
def test_attribution_engagement_window_is_five_days_inclusive(kind):
    assert choose(touch(kind, timedelta(days=5))).kind == kind
    assert choose(touch(kind, timedelta(days=5, seconds=1))) is None


def test_attribution_receipt_window_is_one_day_inclusive():
    assert choose(touch("receipt", timedelta(days=1))).kind == "receipt"
    assert choose(touch("receipt", timedelta(days=1, seconds=1))) is None


def test_attribution_touch_after_the_order_does_not_count():
    assert choose(touch("click", -timedelta(seconds=1))) is None
    assert choose(touch("click", timedelta(0))).kind == "click"


def test_attribution_window_is_configurable():
    rules = attribution.Rules(engagement_window=timedelta(days=2), receipt_window=timedelta(hours=6))
    assert choose(touch("click", timedelta(days=3)), rules=rules) is None
    assert choose(touch("click", timedelta(days=2)), rules=rules) is not None
    assert choose(touch("receipt", timedelta(hours=7)), rules=rules) is None


def test_attribution_last_touch_wins():
    got = choose(
        touch("click", timedelta(days=3), message="old", sequence="seq_a"),
        touch("open", timedelta(days=1), message="new", sequence="seq_b"),
    )
    assert (got.touch.message_id, got.touch.sequence_id, got.kind) == ("new", "seq_b", "open")


def test_attribution_engagement_beats_a_later_receipt():
    got = choose(
        touch("click", timedelta(days=2), message="clicked"),
        touch("receipt", timedelta(hours=1), message="received"),
    )
    assert (got.touch.message_id, got.kind) == ("clicked", "click")


def test_attribution_click_beats_open_at_the_same_instant():
    got = choose(
        touch("open", timedelta(hours=2), message="m"), touch("click", timedelta(hours=2), message="m")
    )
    assert got.kind == "click"


def test_attribution_receipt_only_when_nothing_was_engaged():
    got = choose(
        touch("receipt", timedelta(hours=20), message="first"),
        touch("receipt", timedelta(hours=3), message="second"),
        touch("click", timedelta(days=6), message="too_old"),
    )
    assert (got.touch.message_id, got.kind) == ("second", "receipt")


def test_attribution_checkout_enrollment_wins_over_a_later_touch_elsewhere():
    got = choose(
        touch("open", timedelta(days=4), message="cart", sequence="seq_cart", checkout="c1"),
        touch("click", timedelta(hours=1), message="promo", sequence="seq_promo", checkout=None),
        touch("click", timedelta(hours=2), message="other_cart", sequence="seq_cart", checkout="c2"),
        checkout="c1",
    )
    assert (got.touch.message_id, got.kind) == ("cart", "checkout")


def test_attribution_checkout_match_still_needs_a_qualifying_touch():
    got = choose(
        touch("click", timedelta(days=6), message="cart", checkout="c1"),
        touch("receipt", timedelta(hours=2), message="promo", sequence="seq_promo"),
        checkout="c1",
    )
    assert (got.touch.message_id, got.kind) == ("promo", "receipt")
    assert choose(touch("click", timedelta(days=6), checkout="c1"), checkout="c1") is None


def test_attribution_checkout_match_picks_the_last_email_of_that_enrollment():
    got = choose(
        touch("click", timedelta(days=2), message="first_email", checkout="c1"),
        touch("receipt", timedelta(hours=1), message="second_email", checkout="c1"),
        checkout="c1",
    )
    assert got.touch.message_id == "first_email"  # engaged beats received, within the same cart too
    got = choose(
        touch("open", timedelta(days=2), message="first_email", checkout="c1"),
        touch("open", timedelta(days=1), message="second_email", checkout="c1"),
        checkout="c1",
    )
    assert got.touch.message_id == "second_email"


def test_attribution_no_touch_no_attribution():
    assert choose() is None


def _event(**props: object) -> Event:
    return Event(
        id="evt_1",
        workspace_id="ws_1",
        subscriber_id="sub_1",
        name="ecommerce.order_placed",
        source="sequenzy",
        properties={"orderId": "o1", "totalCents": 1000, "currency": "eur", **props},
        occurred_at=ORDER_AT,
        received_at=ORDER_AT,
        idempotency_key="order:o1:placed",
        historical=False,
    )


def test_attribution_placed_order_keeps_its_currency_and_checkout():
    order = attribution.placed_order(_event(checkoutId="c9"))
    assert order is not None
    assert (order.order_id, order.total_cents, order.currency, order.checkout_id) == ("o1", 1000, "EUR", "c9")
    assert attribution.placed_order(_event(checkoutId="")).checkout_id is None


@pytest.mark.parametrize(
    "bad", [{"totalCents": None}, {"currency": None}, {"orderId": 7}, {"totalCents": True}]
)
def test_attribution_incomplete_order_is_not_attributable(bad):
    assert attribution.placed_order(_event(**bad)) is None
