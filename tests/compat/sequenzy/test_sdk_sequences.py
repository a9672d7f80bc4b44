"""Issue acceptance through the official SDK: an abandoned-checkout sequence defined with `sequences.create`
against a real `cartback serve` (engine in-process, tick 50 ms), run in real time with a 0.02-minute delay."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sequenzy import Sequenzy
from sequenzy.types import (
    CommerceCustomer,
    CommerceOrderItem,
    SequenceDelayInput,
    SequenceStepInput,
    SequenceStopCondition,
    SequenceTriggerPropertyFilter,
)
from sequenzy.types.sequence_stop_condition_match_config import SequenceStopConditionMatchConfig_EventProperty
from sequenzy.types.sequence_stop_condition_match_config_event_property_rules_item import (
    SequenceStopConditionMatchConfigEventPropertyRulesItem,
)

from cartback.store.tables import message_bodies, messages

STOP_ON_ITS_ORDER = SequenceStopCondition(
    type="event_received",
    value="ecommerce.order_placed",
    match_config=SequenceStopConditionMatchConfig_EventProperty(
        mode="event_property",
        rules=[
            SequenceStopConditionMatchConfigEventPropertyRulesItem(
                entry_field_path="checkoutId", event_field_path="checkoutId"
            )
        ],
    ),
)
EMAIL = SequenceStepInput(
    type="email",
    delay=SequenceDelayInput(minutes=0.02),
    subject="You left {{ event.items[0].title }} behind",
    html="<p>Your cart: <a href='{{ event.checkoutUrl }}'>{{ event.checkoutUrl }}</a></p>",
)


@pytest.fixture
def sdk(server, make_workspace) -> Iterator[tuple[Sequenzy, str, str]]:
    tenant = make_workspace()
    with httpx.Client(timeout=10) as http:
        client = Sequenzy(api_key=tenant.key, base_url=server.api, max_retries=0, httpx_client=http)
        yield client, tenant.id, tenant.key


def customer(name: str) -> CommerceCustomer:
    return CommerceCustomer(email=f"{name}@example.com", first_name=name.title())


def checkout(client: Sequenzy, checkout_id: str, who: str) -> None:
    client.orders.track_checkout_started(
        checkout_id=checkout_id,
        customer=customer(who),
        currency="USD",
        total_cents=5400,
        checkout_url=f"https://shop.example.com/checkout/{checkout_id}",
        items=[CommerceOrderItem(product_id="p1", title="Slim Jeans", quantity=1, price_cents=5400)],
    )


def wait_until_settled(client: Sequenzy, sequence_id: str, expected: int, timeout: float = 20) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = client.sequences.list_enrollments(sequence_id=sequence_id).enrollments or []
        if len(items) == expected and all(e.status not in ("active", "waiting") for e in items):
            return items
        time.sleep(0.2)
    raise AssertionError(f"enrollments did not settle: {items}")


def test_sdk_abandoned_checkout_sequence_sends_only_for_unordered_carts(sdk, db):
    client, workspace_id, _ = sdk
    created = client.sequences.create(
        name="Abandoned checkout",
        trigger="event_received",
        event_name="ecommerce.checkout_started",
        enrollment_mode="matching_field",
        enrollment_field_path="checkoutId",
        steps=[EMAIL],
        stop_condition=STOP_ON_ITS_ORDER,
        property_filters=[
            SequenceTriggerPropertyFilter(path="items[].title", operator="contains", value="Jeans")
        ],
    )
    seq_id = created.sequence.id
    assert created.sequence.status == "draft"
    assert client.sequences.enable(sequence_id=seq_id).status == "active"

    checkout(client, "chk-A", "alice")
    checkout(client, "chk-B", "bob")
    client.orders.push(
        order_id="ord-B",
        currency="USD",
        total_cents=5400,
        customer=customer("bob"),
        properties={"checkoutId": "chk-B"},
    )
    checkout(client, "chk-C", "carol")
    client.orders.push(
        order_id="ord-X",
        currency="USD",
        total_cents=900,
        customer=customer("carol"),
        properties={"checkoutId": "some-other-cart"},
    )

    settled = wait_until_settled(client, seq_id, 3)
    by_email = {e.email: e for e in settled}
    assert by_email["alice@example.com"].status == "completed"
    assert by_email["bob@example.com"].status == "stopped"
    assert by_email["carol@example.com"].status == "completed"

    sent = db.read_sync(
        lambda tx: tx.execute(
            sa.select(messages.c.to_email, messages.c.subject, message_bodies.c.html)
            .join_from(messages, message_bodies)
            .where(messages.c.workspace_id == workspace_id)
            .order_by(messages.c.to_email)
        ).all()
    )
    assert [m.to_email for m in sent] == ["alice@example.com", "carol@example.com"]
    assert sent[0].subject == "You left Slim Jeans behind"
    assert "https://shop.example.com/checkout/chk-A" in sent[0].html

    details = client.sequences.get(sequence_id=seq_id).sequence
    assert details.stop_condition.match_config.mode == "event_property"
    assert [n.node_type for n in details.nodes] == ["logic_delay", "action_email"]
    stats = client.sequences.get_stats(sequence_id=seq_id)
    assert stats.enrollment_counts.total == 3
    assert (stats.model_extra or {})["stoppedByReason"] == {
        "stop condition: ecommerce.order_placed received (event_property)": 1
    }
    enrollment = client.sequences.get_enrollment(
        sequence_id=seq_id, enrollment_id=by_email["bob@example.com"].enrollment_id
    )
    assert enrollment.enrollment.status == "stopped"


def test_sdk_simulate_and_explain_name_the_failing_filter(sdk, server):
    client, _, key = sdk
    created = client.sequences.create(
        name="Big carts",
        trigger="event_received",
        event_name="ecommerce.checkout_started",
        steps=[EMAIL],
        property_filters=[SequenceTriggerPropertyFilter(path="value", operator="greater_than", value=100)],
    )
    seq_id = created.sequence.id
    client.sequences.enable(sequence_id=seq_id)
    checkout(client, "chk-small", "dora")
    sim = client.sequences.simulate(sequence_id=seq_id, email="dora@example.com")
    assert sim.success is True and sim.sends_mail is False
    assert "value greater_than 100" in sim.enrollment["reason"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        res = httpx.get(
            f"{server.api}/sequences/{seq_id}/explain",
            params={"email": "dora@example.com"},
            headers={"Authorization": f"Bearer {key}"},
        )
        body = res.json()
        if body["events"][0]["reason"] != "not dispatched yet":
            break
        time.sleep(0.1)
    assert res.status_code == 200
    assert body["events"][0]["enrolled"] is False
    assert body["events"][0]["reason"].startswith("trigger filter failed: value greater_than 100")
