"""The automation engine on real SQLite and PostgreSQL, driven by hand with a frozen clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cartback.core import checkouts, orders, sequences, subscribers
from cartback.core import events as core_events
from cartback.store import sequences as sequence_store
from cartback.store.db import Database
from cartback.store.messages import MESSAGE_COLUMNS, WITH_BODY
from cartback.store.sequences import Sequence
from cartback.store.tables import enrollments, messages
from cartback.testing import FrozenClock, run_until_idle

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

ABANDONED = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": "ecommerce.order_placed",
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "steps": [
        {
            "type": "email",
            "delay": {"hours": 1},
            "subject": "You left {{ event.items[0].title }}",
            "html": "<p>Hi {{ subscriber.firstName | default: 'there' }}</p>"
            "<a href='{{ event.checkoutUrl }}'>back</a>",
        },
        {
            "type": "email",
            "delay": {"days": 1},
            "subject": "Still thinking?",
            "html": "<p>{{ event.checkoutUrl }}</p>",
        },
    ],
}


def tracked_urls(html: str) -> list[str]:
    """The destinations of the click-tracking links in a rendered email."""
    import base64
    import json
    import re

    out = []
    for token in re.findall(r"/t/c/([A-Za-z0-9_\-]+)\.", html):
        payload = token + "=" * (-len(token) % 4)
        out.append(json.loads(base64.urlsafe_b64decode(payload))["u"])
    return out


@dataclass
class Engine:
    db: Database
    clock: FrozenClock
    workspace_id: str

    def sequence(self, body: dict[str, Any], *, status: str = "active") -> Sequence:
        return self.db.write_sync(
            lambda tx: sequences.create(tx, self.workspace_id, body, self.clock.now(), status=status)
        )

    def checkout(
        self,
        checkout_id: str,
        email: str = "jane@example.com",
        total: int = 6450,
        titles: tuple[str, ...] = ("Logo tee",),
    ) -> checkouts.CheckoutRecorded:
        data = checkouts.CheckoutInput(
            checkout_id=checkout_id,
            customer=subscribers.Identity(email=email, first_name="Jane"),
            currency="USD",
            total_cents=total,
            checkout_url=f"https://shop.example.com/c/{checkout_id}",
            items=[{"productId": t, "title": t, "quantity": 1, "priceCents": total} for t in titles],
        )
        return self.db.write_sync(
            lambda tx: checkouts.record_checkout(tx, self.workspace_id, data, self.clock.now())
        )

    def order(self, order_id: str, checkout_id: str | None, email: str = "jane@example.com") -> None:
        data = orders.OrderInput(
            order_id=order_id,
            customer=subscribers.Identity(email=email),
            currency="USD",
            total_cents=6450,
            properties={"checkoutId": checkout_id} if checkout_id else {},
        )
        self.db.write_sync(lambda tx: orders.record_order(tx, self.workspace_id, data, self.clock.now()))

    def run(self, **advance: float) -> None:
        if advance:
            self.clock.advance(**advance)
        run_until_idle(self.db, self.clock)

    def messages(self) -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(*MESSAGE_COLUMNS)
                .select_from(WITH_BODY)
                .where(messages.c.workspace_id == self.workspace_id)
                .order_by(messages.c.created_at)
            ).all()
        )

    def enrollments(self) -> list[Any]:
        return self.db.read_sync(
            lambda tx: tx.execute(
                sa.select(enrollments)
                .where(enrollments.c.workspace_id == self.workspace_id)
                .order_by(enrollments.c.created_at, enrollments.c.id)
            ).all()
        )


@pytest.fixture
def engine(db, make_workspace) -> Engine:
    return Engine(db, FrozenClock(T0), make_workspace().id)


def test_abandoned_checkout_emails_only_carts_without_their_order(engine):
    engine.sequence(ABANDONED)
    engine.checkout("A")
    engine.checkout("B", email="bob@example.com")
    engine.checkout("C", email="carol@example.com")
    engine.run()
    engine.order("ord-B", "B", email="bob@example.com")  # B's own order, within the delay
    engine.order("ord-X", "other-cart", email="carol@example.com")  # C ordered something else
    engine.run(minutes=30)
    assert engine.messages() == []
    engine.run(minutes=31)
    first = engine.messages()
    assert sorted(m.to_email for m in first) == ["carol@example.com", "jane@example.com"]
    jane = next(m for m in first if m.to_email == "jane@example.com")
    assert jane.subject == "You left Logo tee"
    assert "https://shop.example.com/c/A" in tracked_urls(jane.html) and "Hi Jane" in jane.html
    by_status = {
        e.dedupe_key.split(":")[-1] if e.dedupe_key else e.id: e.status for e in engine.enrollments()
    }
    run_b = next(e for e in engine.enrollments() if e.context["event"]["checkoutId"] == "B")
    assert run_b.stop_reason.startswith("stop condition: ecommerce.order_placed")
    engine.run(days=1)
    assert len(engine.messages()) == 4
    statuses = sorted(e.status for e in engine.enrollments())
    assert statuses == ["completed", "completed", "stopped"], by_status


def test_order_arriving_before_dispatch_still_wins(engine):
    """The order is in the log before the dispatcher has even enrolled the checkout: the step-time
    re-check against the log must stop it."""
    engine.sequence(ABANDONED)
    engine.checkout("A")
    engine.order("ord-A", "A")
    engine.run(hours=2)
    assert engine.messages() == []
    assert [e.status for e in engine.enrollments()] == ["stopped"]


def test_step_runs_at_most_once_when_rerun(engine):
    engine.sequence(ABANDONED)
    engine.checkout("A")
    engine.run(hours=2)
    engine.run(hours=2)
    engine.run()
    assert len(engine.messages()) == 1


@pytest.mark.parametrize(
    ("filters", "admitted", "refused"),
    [
        ([{"path": "value", "operator": "greater_than_or_equal", "value": 50}], [5000, 7500], [4999]),
        ([{"path": "items[].title", "operator": "contains", "value": "Jeans"}], ["Slim Jeans"], ["Shirt"]),
    ],
    ids=["value>=50", "items-title-contains-jeans"],
)
def test_trigger_filters_admit_and_refuse(engine, filters, admitted, refused):
    engine.sequence({**ABANDONED, "enrollmentMode": "unlimited", "propertyFilters": filters})
    for i, sample in enumerate([*admitted, *refused]):
        if isinstance(sample, int):
            engine.checkout(f"k{i}", email=f"u{i}@example.com", total=sample)
        else:
            engine.checkout(f"k{i}", email=f"u{i}@example.com", titles=("Hat", sample))
    engine.run()
    assert len(engine.enrollments()) == len(admitted)


def test_enrollment_modes_count(engine):
    once = engine.sequence({**ABANDONED, "name": "once", "enrollmentMode": "one_time"})
    per_cart = engine.sequence({**ABANDONED, "name": "per cart"})
    unlimited = engine.sequence({**ABANDONED, "name": "every time", "enrollmentMode": "unlimited"})
    engine.checkout("A")
    engine.checkout("A")  # the same cart again: no new event at all
    engine.checkout("B")
    engine.run()
    counts: dict[str, int] = {}
    for e in engine.enrollments():
        counts[e.sequence_id] = counts.get(e.sequence_id, 0) + 1
    assert (counts[once.id], counts[per_cart.id], counts[unlimited.id]) == (1, 2, 2)


def test_historical_events_never_trigger(engine):
    engine.sequence(
        {**ABANDONED, "trigger": "event_received", "eventName": "viewed", "enrollmentMode": "unlimited"}
    )
    sub, _ = engine.db.write_sync(
        lambda tx: subscribers.upsert(
            tx, engine.workspace_id, subscribers.Identity(email="h@example.com"), engine.clock.now()
        )
    )
    engine.db.write_sync(
        lambda tx: core_events.record(
            tx,
            engine.workspace_id,
            name="viewed",
            source="sequenzy",
            subscriber_id=sub.id,
            properties={},
            now=engine.clock.now(),
            occurred_at=engine.clock.now() - timedelta(hours=3),
        )
    )
    engine.run()
    assert engine.enrollments() == []


def test_sending_window_holds_email_until_it_opens(engine):
    engine.sequence(
        {
            **ABANDONED,
            "sendingWindow": {
                "enabled": True,
                "startTime": "09:00",
                "endTime": "18:00",
                "timezone": "Europe/Berlin",
            },
        }
    )
    engine.clock.set(datetime(2026, 11, 23, 20, 0, tzinfo=UTC))  # 21:00 in Berlin
    engine.checkout("A")
    engine.run(hours=2)  # due at 22:00 Berlin: outside
    assert engine.messages() == []
    engine.run(hours=10)  # 09:00 Berlin the next day is 08:00 UTC
    assert len(engine.messages()) == 1
    assert engine.messages()[0].created_at == datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_unsubscribed_subscriber_is_stopped_before_the_step(engine):
    engine.sequence(ABANDONED)
    engine.checkout("A")
    engine.run()
    engine.db.write_sync(
        lambda tx: tx.execute(
            sa.text("UPDATE subscribers SET status='unsubscribed' WHERE workspace_id=:w"),
            {"w": engine.workspace_id},
        )
    )
    engine.run(hours=2)
    assert engine.messages() == []
    assert engine.enrollments()[0].stop_reason == "subscriber unsubscribed"


def test_frequency_cap_skips_second_marketing_email(engine):
    engine.db.write_sync(
        lambda tx: sequence_store.put_frequency_cap(
            tx, engine.workspace_id, 1, 16, "skip", engine.clock.now()
        )
    )
    engine.sequence({**ABANDONED, "frequencyCapEnabled": True, "enrollmentMode": "unlimited"})
    engine.checkout("A")
    engine.checkout("B")
    engine.run()
    engine.run(hours=2)
    assert len(engine.messages()) == 1


def _subscriber(engine: Engine, email: str):
    sub, _ = engine.db.write_sync(
        lambda tx: subscribers.upsert(
            tx, engine.workspace_id, subscribers.Identity(email=email), engine.clock.now()
        )
    )
    return sub


def test_contact_tag_and_list_triggers(engine):
    from cartback.core import lists

    welcome = engine.sequence(
        {
            "name": "welcome",
            "trigger": "contact_added",
            "steps": [{"type": "email", "subject": "Welcome", "text": "hi"}],
        }
    )
    vip = engine.sequence(
        {
            "name": "vip",
            "trigger": "tag_added",
            "tagName": "vip",
            "steps": [{"type": "email", "subject": "VIP", "text": "hi"}],
        }
    )
    listed = engine.sequence(
        {
            "name": "newsletter",
            "trigger": "contact_added",
            "listIds": ["news"],
            "steps": [{"type": "email", "subject": "News", "text": "hi"}],
        }
    )
    sub = _subscriber(engine, "t@example.com")
    engine.db.write_sync(lambda tx: subscribers.tag(tx, sub, ["other", "vip"], engine.clock.now()))

    def join(tx):
        item, _ = lists.create(tx, engine.workspace_id, lists.ListInput(name="news"), engine.clock.now())
        lists.join(tx, engine.workspace_id, sub.id, item, engine.clock.now())

    engine.db.write_sync(join)
    engine.run()
    by_sequence = {e.sequence_id for e in engine.enrollments()}
    assert by_sequence == {welcome.id, vip.id, listed.id}
    assert sorted(m.subject for m in engine.messages()) == ["News", "VIP", "Welcome"]


def test_wait_for_event_takes_the_event_exit_or_the_timeout_exit(engine):
    engine.sequence(
        {
            "name": "review",
            "trigger": "event_received",
            "eventName": "ecommerce.order_placed",
            "steps": [
                {
                    "nodeType": "logic_wait_for_event",
                    "config": {"eventName": "review.left", "timeoutDays": 2, "timeoutAction": "exit"},
                },
                {"type": "email", "subject": "Thanks for the review", "text": "thanks"},
            ],
        }
    )
    engine.order("o1", None, email="fast@example.com")
    engine.order("o2", None, email="slow@example.com")
    engine.run()
    fast = _subscriber(engine, "fast@example.com")
    engine.db.write_sync(
        lambda tx: core_events.record(
            tx,
            engine.workspace_id,
            name="review.left",
            source="sequenzy",
            subscriber_id=fast.id,
            properties={},
            now=engine.clock.now(),
        )
    )
    engine.run(hours=1)
    assert [m.to_email for m in engine.messages()] == ["fast@example.com"]
    engine.run(days=3)
    assert [m.to_email for m in engine.messages()] == ["fast@example.com"]
    statuses = sorted((e.status, e.stop_reason or "") for e in engine.enrollments())
    assert statuses == [("completed", ""), ("stopped", "no review.left before the timeout")]


def test_condition_gate_and_subscriber_update(engine):
    engine.sequence(
        {
            "name": "gate",
            "trigger": "event_received",
            "eventName": "ecommerce.checkout_started",
            "steps": [
                {
                    "nodeType": "action_update_attributes",
                    "config": {
                        "customAttributeUpdates": [
                            {"name": "abandoned", "value": "true", "valueType": "boolean"}
                        ]
                    },
                },
                {
                    "nodeType": "logic_condition",
                    "config": {
                        "conditionType": "field_greater_than",
                        "fieldName": "event.totalCents",
                        "fieldValue": "5000",
                    },
                },
                {"nodeType": "action_add_tag", "config": {"tagName": "big-cart"}},
                {"type": "email", "subject": "Big cart", "text": "x"},
            ],
        }
    )
    engine.checkout("small", email="s@example.com", total=1000)
    engine.checkout("big", email="b@example.com", total=9000)
    engine.run()
    assert [m.to_email for m in engine.messages()] == ["b@example.com"]
    big = engine.db.read_sync(
        lambda tx: subscribers.find(tx, engine.workspace_id, subscribers.Identity(email="b@example.com"))
    )
    assert big.attributes["abandoned"] is True
    from cartback.store import subscribers as subscriber_store

    tags = engine.db.read_sync(lambda tx: subscriber_store.tag_names(tx, engine.workspace_id, [big.id]))
    assert tags[big.id] == ("big-cart",)


def test_branch_sends_vip_path_or_continues_the_flow(engine):
    seq = engine.sequence(
        {
            "name": "b",
            "trigger": "event_received",
            "eventName": "ecommerce.checkout_started",
            "enrollmentMode": "unlimited",
            "steps": [
                {"type": "email", "subject": "First", "text": "1"},
                {"type": "email", "subject": "Regular", "text": "2"},
            ],
        }
    )
    definition = sequences.parse(
        {
            "branch": {
                "afterNodeId": "node_1",
                "branches": [
                    {
                        "conditionType": "has_tag",
                        "tagName": "vip",
                        "steps": [{"type": "email", "subject": "VIP", "text": "v"}],
                    }
                ],
            }
        },
        previous=sequences.Definition(seq.definition),
    )
    engine.db.write_sync(
        lambda tx: sequence_store.save(tx, Sequence(**{**seq.__dict__, "definition": definition.data}))
    )
    vip = _subscriber(engine, "vip@example.com")
    engine.db.write_sync(lambda tx: subscribers.tag(tx, vip, ["vip"], engine.clock.now()))
    engine.checkout("v1", email="vip@example.com")
    engine.checkout("r1", email="reg@example.com")
    engine.run()
    got = sorted((m.to_email, m.subject) for m in engine.messages())
    assert got == [
        ("reg@example.com", "First"),
        ("reg@example.com", "Regular"),
        ("vip@example.com", "First"),
        ("vip@example.com", "VIP"),
    ]


@pytest.mark.parametrize(
    ("due_utc", "expected_utc"),
    [
        # 23:00 in Berlin (CET) on the eve of the spring-forward night -> 09:00 CEST = 07:00 UTC.
        (datetime(2026, 3, 28, 22, 0, tzinfo=UTC), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
        # 23:00 in Berlin (CEST) on the eve of the fall-back night -> 09:00 CET = 08:00 UTC.
        (datetime(2026, 10, 24, 21, 0, tzinfo=UTC), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_step_due_at_23_in_berlin_window_is_sent_at_next_9_across_dst(engine, due_utc, expected_utc):
    engine.sequence(
        {
            **ABANDONED,
            "steps": [{"type": "email", "subject": "Cart", "html": "<p>x</p>"}],
            "sendingWindow": {
                "enabled": True,
                "startTime": "09:00",
                "endTime": "18:00",
                "timezone": "Europe/Berlin",
            },
        }
    )
    engine.clock.set(due_utc)
    engine.checkout("A")
    engine.run()
    assert engine.messages() == []
    engine.clock.set(expected_utc - timedelta(seconds=1))
    engine.run()
    assert engine.messages() == []
    engine.clock.set(expected_utc)
    engine.run()
    assert [m.created_at for m in engine.messages()] == [expected_utc]
