"""Recovered revenue through the official SDK against a real `cartback serve` that sends to a real SMTP
sink: two carts in two currencies get their email, both shoppers click it and order;
`sequences.get_stats`, `analytics.get_sequence_metrics` and `analytics.get_metrics_breakdown` parse into
the SDK's models and carry the real figures."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
from sequenzy import Sequenzy
from sequenzy.types import CommerceCustomer, SequenceDelayInput, SequenceStepInput
from tests.smtp_sink import SmtpSink

from cartback.store.tables import message_bodies, messages

EMAIL = SequenceStepInput(
    type="email",
    delay=SequenceDelayInput(minutes=0.01),
    subject="Your cart is waiting",
    html="<p><a href='{{ event.checkoutUrl }}'>Back to your cart</a></p>",
)
CARTS = {"ana": ("USD", 5400), "ben": ("EUR", 3100)}


@pytest.fixture
def server(start_server, db_url):  # type: ignore[no-untyped-def]
    """Sent and delivered are figures of mail a server took: without one the outbox keeps it (`kept`)."""
    with SmtpSink() as sink:
        yield start_server(db_url, env={"CARTBACK_SMTP_URL": sink.url})


@pytest.fixture
def sdk(server, make_workspace) -> Iterator[tuple[Sequenzy, str]]:
    tenant = make_workspace()
    with httpx.Client(timeout=10) as http:
        yield Sequenzy(api_key=tenant.key, base_url=server.api, max_retries=0, httpx_client=http), tenant.id


def eventually(what: str, check, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_sdk_stats_and_metrics_report_recovered_revenue_per_currency(sdk, server, db):
    client, workspace_id = sdk
    seq_id = client.sequences.create(
        name="Abandoned checkout",
        trigger="event_received",
        event_name="ecommerce.checkout_started",
        enrollment_mode="matching_field",
        enrollment_field_path="checkoutId",
        steps=[EMAIL],
    ).sequence.id
    client.sequences.enable(sequence_id=seq_id)
    for who, (currency, cents) in CARTS.items():
        client.orders.track_checkout_started(
            checkout_id=f"chk-{who}",
            customer=CommerceCustomer(email=f"{who}@example.com"),
            currency=currency,
            total_cents=cents,
            checkout_url=f"https://shop.example.com/cart/{who}",
        )

    def sent() -> list:
        return db.read_sync(
            lambda tx: tx.execute(
                sa.select(messages.c.to_email, message_bodies.c.html)
                .join_from(messages, message_bodies)
                .where(messages.c.workspace_id == workspace_id, messages.c.status == "sent")
            ).all()
        )

    for email in eventually("both emails sent", lambda: len(sent()) == 2 and sent()):
        link = re.search(r"href=['\"]([^'\"]*/t/c/[^'\"]+)['\"]", email.html)
        assert link is not None
        clicked = httpx.get(server.url + urlsplit(link.group(1)).path, follow_redirects=False)
        assert clicked.status_code == 302
    for who, (currency, cents) in CARTS.items():
        client.orders.push(
            order_id=f"ord-{who}",
            currency=currency,
            total_cents=cents,
            customer=CommerceCustomer(email=f"{who}@example.com"),
            properties={"checkoutId": f"chk-{who}"},
        )

    stats = eventually(
        "both orders attributed",
        lambda: (s := client.sequences.get_stats(sequence_id=seq_id)).stats.conversions == 2 and s,
    )
    assert (stats.stats.sent, stats.stats.delivered, stats.stats.clicked) == (2, 2, 2)
    assert stats.stats.click_rate == 1.0
    assert stats.stats.revenue_cents is None  # two currencies: never one sum
    by_currency = {r["currency"]: r["revenueCents"] for r in stats.stats.model_extra["revenueByCurrency"]}
    assert by_currency == {"USD": 5400, "EUR": 3100}
    (step,) = [s for s in stats.steps if s.stats and s.stats.sent]
    assert (step.stats.sent, step.stats.clicked, step.stats.conversions) == (2, 2, 2)
    assert stats.enrollment_counts.total == 2

    metrics = client.analytics.get_sequence_metrics(sequence_id=seq_id, period="7d")
    assert metrics.period == "7d"
    assert (metrics.stats.sent, metrics.stats.conversions) == (2, 2)

    breakdown = client.analytics.get_metrics_breakdown(by="sequence", period="24h")
    (row,) = breakdown.rows
    assert (row.key, row.label, row.sent, row.clicked, row.conversions) == (
        seq_id,
        "Abandoned checkout",
        2,
        2,
        2,
    )
    assert breakdown.start < breakdown.end
    steps = client.analytics.get_metrics_breakdown(by="email").rows
    assert [(r.sent, r.label) for r in steps] == [(2, "Abandoned checkout: Your cart is waiting")]
