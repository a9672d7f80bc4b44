"""Issue acceptance across surfaces: a sequence created through the Sequenzy SDK on
ecommerce.checkout_started, filtered on items[].title, fires for a Klaviyo "Started Checkout" sent by the
Klaviyo SDK, and its email (read back through GET /api/v1/outbox) carries the Klaviyo checkout_url and
an item title; a Klaviyo "Placed Order" for that checkout stops another cart's reminder."""

from __future__ import annotations

import time

import httpx
from sequenzy import Sequenzy
from sequenzy.types import (
    SequenceDelayInput,
    SequenceStepInput,
    SequenceStopCondition,
    SequenceTriggerPropertyFilter,
)
from sequenzy.types.sequence_stop_condition_match_config import SequenceStopConditionMatchConfig_EventProperty
from sequenzy.types.sequence_stop_condition_match_config_event_property_rules_item import (
    SequenceStopConditionMatchConfigEventPropertyRulesItem,
)
from tests.compat.klaviyo.test_sdk_events import SEED_PROPERTIES, event_body

EMAIL = SequenceStepInput(
    type="email",
    delay=SequenceDelayInput(minutes=0.02),
    subject="You left {{ event.items[1].title }} behind",
    html="<p><a href='{{ event.checkoutUrl }}'>{{ event.checkoutUrl }}</a> {{ event.items[0].title }}</p>",
)
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


def settled(client: Sequenzy, sequence_id: str, expected: int, timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    items: list = []
    while time.monotonic() < deadline:
        items = client.sequences.list_enrollments(sequence_id=sequence_id).enrollments or []
        if len(items) == expected and all(e.status not in ("active", "waiting") for e in items):
            return items
        time.sleep(0.2)
    raise AssertionError(f"enrollments did not settle: {items}")


def test_sdk_sequenzy_sequence_fires_for_klaviyo_started_checkout(server, tenant, klaviyo):
    with httpx.Client(base_url=server.api, timeout=10) as http:
        seq = Sequenzy(api_key=tenant.key, base_url=server.api, max_retries=0, httpx_client=http)
        created = seq.sequences.create(
            name="Abandoned checkout (Klaviyo)",
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
        seq.sequences.enable(sequence_id=seq_id)

        klaviyo.Events.create_event(
            event_body(
                "Started Checkout",
                "jane@example.com",
                SEED_PROPERTIES,
                unique_id="cart-abcd1234",
                value=129.98,
            )
        )
        ordered = {**SEED_PROPERTIES, "checkout_url": "https://store.example.com/checkout?cart=zz"}
        klaviyo.Events.create_event(
            event_body("Started Checkout", "bob@example.com", ordered, unique_id="cart-zz", value=129.98)
        )
        klaviyo.Events.create_event(
            event_body(
                "Placed Order",
                "bob@example.com",
                {"order_id": "ord-zz", "checkout_id": "cart-zz"},
                unique_id="ord-zz",
                value=129.98,
            )
        )
        by_email = {e.email: e.status for e in settled(seq, seq_id, 2)}
        assert by_email == {"jane@example.com": "completed", "bob@example.com": "stopped"}

        headers = {"Authorization": f"Bearer {tenant.key}"}
        listed = http.get("/outbox", headers=headers, params={"sequenceId": seq_id}).json()["messages"]
        assert [m["to"] for m in listed] == ["jane@example.com"]
        assert listed[0]["subject"] == "You left White Jeans - 32 behind"
        message = http.get(f"/outbox/{listed[0]['id']}", headers=headers).json()["message"]
        assert "https://store.example.com/checkout?cart=abcd1234" in message["html"].replace("&amp;", "&")
        assert "Blue Tee - M" in message["html"]
