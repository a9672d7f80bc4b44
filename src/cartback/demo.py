"""`cartback demo`: a workspace that shows the whole loop at once.

It creates a `demo` workspace with a dashboard user and an API key, the abandoned-checkout sequence built
from the shipped template, and a week of shop traffic: a few hundred checkouts, the orders of those who
bought at once, the recovery emails of those who did not, their opens, clicks, unsubscribes and
bounces, and the orders that followed. Nothing is faked past the inputs: the week is replayed through
the real engine on a clock that walks from a week ago to now (the dispatcher, the scheduler's delays,
the sender, the attribution of orders to emails), so every figure on the dashboard is one the engine
computed. The only stand-in is the mail server: the demo's shoppers open and click their emails, so the
sender hands them to a pretend server that accepts everything (status `sent`, transport `demo`), where
`serve` without SMTP would keep them in the outbox.
"""

from __future__ import annotations

import asyncio
import functools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cartback import errors, testing
from cartback.core import attribution, checkouts, events, orders, sequences, subscribers, suppressions, users
from cartback.core.clock import FrozenClock
from cartback.delivery import transport
from cartback.scheduler import duty, mail_sender
from cartback.settings import Settings
from cartback.store import deliveries, workspaces
from cartback.store import enrollments as enrollment_store
from cartback.store import messages as message_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Database, Tx

WORKSPACE = "demo"
DAYS = 7

FIRST_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Finn", "Grace", "Hugo", "Ines", "Jonas", "Kira",
               "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Uma", "Viktor",
               "Wen", "Yara", "Zoe")  # fmt: skip
LAST_NAMES = ("Berg", "Costa", "Diaz", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
              "Khan", "Lopez", "Meyer", "Novak", "Okafor", "Park", "Rossi", "Silva", "Tanaka", "Weber",
              "Young")  # fmt: skip
PRODUCTS = (
    ("Merino beanie", 3400),
    ("Trail socks (2 pairs)", 1900),
    ("Rain shell jacket", 18900),
    ("Insulated bottle", 2900),
    ("Canvas tote", 2400),
    ("Wool scarf", 4500),
    ("Hiking daypack", 8900),
    ("Camp mug", 1500),
    ("Fleece gloves", 2700),
    ("Headlamp", 3900),
)

SEQUENCE: dict[str, Any] = {
    "name": "Abandoned checkout",
    "description": "Two reminders for carts left without an order; stops when that checkout's order comes.",
    "trigger": "event_received",
    "eventName": events.CHECKOUT_STARTED,
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": events.ORDER_PLACED,
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "steps": [
        {"type": "email", "template": "abandoned_cart", "delay": {"hours": 1}},
        {
            "type": "email",
            "template": "abandoned_cart",
            "subject": "{{ subscriber.firstName | default: 'Hi' }}, your cart is still waiting",
            "delay": {"hours": 23},
        },
    ],
}


@dataclass(frozen=True)
class Result:
    workspace: str
    email: str
    password: str
    api_key: str
    checkouts: int
    orders: int
    emails: int


@dataclass(order=True)
class _Action:
    at: datetime
    order: int
    run: Callable[[Tx, datetime], None] = field(compare=False)


class _Shop:
    """The week's traffic, as timed actions against the engine."""

    def __init__(self, workspace_id: str, start: datetime, end: datetime, rng: random.Random) -> None:
        self.workspace_id, self.start, self.end, self.rng = workspace_id, start, end, rng
        self.actions: list[_Action] = []
        self.placed = 0

    def _add(self, at: datetime, run: Callable[[Tx, datetime], None]) -> None:
        if at < self.end:
            self.actions.append(_Action(at, len(self.actions), run))

    def _identity(self, i: int) -> subscribers.Identity:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        return subscribers.Identity(
            email=f"{first}.{last}{i % 97}@example.com".lower(), first_name=first, last_name=last
        )

    def plan(self, count: int) -> None:
        span = (self.end - timedelta(minutes=20) - self.start).total_seconds()
        for i in range(count):
            at = self.start + timedelta(seconds=self.rng.random() * span)
            who = self._identity(i)
            currency = "EUR" if self.rng.random() < 0.25 else "USD"
            picks = self.rng.sample(PRODUCTS, self.rng.choice((1, 1, 2, 2, 3)))
            items: list[dict[str, Any]] = [
                {
                    "productId": f"SKU-{PRODUCTS.index(p) + 100}",
                    "title": p[0],
                    "quantity": q,
                    "priceCents": p[1],
                }
                for p, q in ((p, self.rng.choice((1, 1, 1, 2))) for p in picks)
            ]
            total = sum(item["priceCents"] * item["quantity"] for item in items)
            checkout = checkouts.CheckoutInput(
                checkout_id=f"demo-{i:04d}-{secrets.token_hex(3)}",
                customer=who,
                currency=currency,
                total_cents=total,
                checkout_url=f"https://shop.example.com/checkout/demo-{i:04d}",
                items=items,
            )
            self._add(at, functools.partial(self._checkout, data=checkout))
            if self.rng.random() < 0.3:
                # Bought at once, before the first reminder.
                self._add(at + timedelta(minutes=self.rng.uniform(3, 45)), self._order_of(checkout))
                continue
            # Each reminder, as the sequence sends it: 1 h after the checkout, then 23 h later.
            for step, (sent_at, open_rate) in enumerate(
                ((at + timedelta(hours=1, minutes=1), 0.5), (at + timedelta(hours=24, minutes=2), 0.35))
            ):
                if not self._react(checkout, step, sent_at, open_rate):
                    break
        self.actions.sort()

    def _react(self, data: checkouts.CheckoutInput, step: int, sent_at: datetime, open_rate: float) -> bool:
        """What the shopper does with the reminder of this step; False when no later reminder will come
        (they ordered, unsubscribed, or the address bounced)."""
        roll = self.rng.random()
        if roll < 0.02:
            self._add(
                sent_at + timedelta(minutes=self.rng.uniform(1, 5)), self._suppress_of(data, step, "bounced")
            )
            return False
        if roll < 0.06:
            opened = sent_at + timedelta(minutes=self.rng.uniform(5, 240))
            self._add(opened, self._track_of(data, step, "opened_at", "email.opened"))
            self._add(opened + timedelta(minutes=1), self._suppress_of(data, step, "unsubscribed"))
            return False
        if self.rng.random() >= open_rate:
            return True
        opened = sent_at + timedelta(minutes=self.rng.uniform(5, 240))
        self._add(opened, self._track_of(data, step, "opened_at", "email.opened"))
        if self.rng.random() < 0.45:
            clicked = opened + timedelta(minutes=self.rng.uniform(1, 30))
            self._add(clicked, self._track_of(data, step, "clicked_at", "email.clicked"))
            if self.rng.random() < 0.55:
                self._add(clicked + timedelta(minutes=self.rng.uniform(2, 50)), self._order_of(data))
                return False
        elif self.rng.random() < 0.12:
            self._add(opened + timedelta(hours=self.rng.uniform(1, 20)), self._order_of(data))
            return False
        return True

    def _checkout(self, tx: Tx, now: datetime, *, data: checkouts.CheckoutInput) -> None:
        checkouts.record_checkout(tx, self.workspace_id, data, now)

    def _order_of(self, data: checkouts.CheckoutInput) -> Callable[[Tx, datetime], None]:
        def place(tx: Tx, now: datetime) -> None:
            orders.record_order(
                tx,
                self.workspace_id,
                orders.OrderInput(
                    order_id=f"order-{data.checkout_id}",
                    customer=data.customer,
                    currency=data.currency or "USD",
                    total_cents=data.total_cents or 0,
                    items=data.items,
                    properties={"checkoutId": data.checkout_id},
                ),
                now,
            )
            self.placed += 1

        return place

    def _track_of(
        self, data: checkouts.CheckoutInput, step: int, column: str, name: str
    ) -> Callable[[Tx, datetime], None]:
        """An open or click of this step's email of this checkout's run, as the tracking pages record it."""

        def track(tx: Tx, now: datetime) -> None:
            sent = self._email(tx, data, step)
            if sent is None:
                return  # the run stopped or was not emailed yet: nothing to open
            events.record(
                tx,
                self.workspace_id,
                name=name,
                source=events.SOURCE_CARTBACK,
                subscriber_id=sent.subscriber_id,
                properties=_naming(sent),
                now=now,
            )
            deliveries.stamp(tx, sent.id, column, now)

        return track

    def _suppress_of(
        self, data: checkouts.CheckoutInput, step: int, reason: str
    ) -> Callable[[Tx, datetime], None]:
        """An unsubscribe through this step's email's link, or the mail server's hard bounce of it."""

        def suppress(tx: Tx, now: datetime) -> None:
            sent = self._email(tx, data, step)
            if sent is None:
                return
            if reason == "bounced":
                source = "webhook:generic"
                detail = suppressions.bounce_detail("Permanent", "General", "550 5.1.1 mailbox unavailable")
            else:
                source, detail = "link", f"message {sent.id}"
            suppressions.suppress(
                tx,
                self.workspace_id,
                sent.to_email,
                reason,
                source,
                now,
                detail=detail,
                properties=_naming(sent),
            )

        return suppress

    def _email(self, tx: Tx, data: checkouts.CheckoutInput, step: int) -> message_store.Message | None:
        """The email of this step (0 for the first) the run of this checkout sent, if it did."""
        person = subscriber_store.find_by_email(tx, self.workspace_id, data.customer.email or "")
        if person is None:
            return None
        sent, _ = message_store.listing(tx, self.workspace_id, subscriber_id=person.id, limit=50)
        run = [
            message
            for message in reversed(sent)
            if (found := enrollment_store.get(tx, self.workspace_id, message.enrollment_id or "")) is not None
            and (found.context.get("event") or {}).get("checkoutId") == data.checkout_id
        ]
        return run[step] if step < len(run) else None


def _naming(message: message_store.Message) -> dict[str, Any]:
    """The properties by which an engagement event names its email."""
    return {"messageId": message.id, "sequenceId": message.sequence_id, "nodeId": message.node_id}


def _apply(tx: Tx, *, action: _Action, now: datetime) -> None:
    action.run(tx, now)


def _setup(db: Database, now: datetime, made: datetime, email: str, password: str) -> tuple[str, str]:
    """The workspace and its sequence as of `now`, the start of the replayed week; the key and the
    user as of `made`, when the command ran, so that Settings shows them created today."""

    def create(tx: Tx) -> tuple[str, str]:
        used = workspaces.holding_data(tx)
        if used:
            raise errors.Conflict(
                f"{db.display_url} already holds data (workspace {', '.join(map(repr, used))}): the demo "
                "adds fake checkouts, a user and a key, so it runs only on a fresh database; point "
                "CARTBACK_DATABASE_URL at a new one "
                "(e.g. CARTBACK_DATABASE_URL=sqlite:///./demo.db cartback demo)"
            )
        ws = workspaces.create_workspace(tx, WORKSPACE, now)
        _, key = workspaces.create_api_key(tx, ws.id, made, name="demo")
        users.create_user(tx, WORKSPACE, email, password, made)
        sequences.create(tx, ws.id, SEQUENCE, now, status="active")
        return ws.id, key

    return db.write_sync(create)


class PretendMailServer:
    """The demo's mail server: accepts every message and sends it nowhere. The demo's figures (opens,
    clicks, orders attributed to emails) are those of mail that was delivered, so its messages are `sent`
    through this, not `kept` by the outbox."""

    name = "demo"
    atomic = False
    concurrency = 64

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> transport.Result:
        return transport.Result.sent(
            250, "accepted by the demo's pretend mail server (nothing leaves the machine)"
        )

    async def close(self) -> None:
        return None


def run(
    settings: Settings,
    *,
    checkouts_count: int = 300,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    now: datetime | None = None,
) -> Result:
    """Seed the demo workspace; `progress(done, total)` is called as the week is replayed."""
    end = now or datetime.now().astimezone()
    start = end - timedelta(days=DAYS)
    rng = random.Random(seed)
    email, password = "demo@example.com", secrets.token_urlsafe(9)
    db = Database(settings.database_url, sqlite_synchronous="NORMAL")
    db.migrate()
    clock = FrozenClock(start - timedelta(minutes=5))
    workspace_id, key = _setup(db, clock.now(), end, email, password)
    shop = _Shop(workspace_id, start, end, rng)
    shop.plan(checkouts_count)
    outbox = mail_sender.Sender(PretendMailServer(), public_url=settings.public_url)

    async def replay() -> int:
        sent = 0

        async def send(worker: duty.Runner) -> int:
            nonlocal sent
            batch = await outbox.duty(worker)
            sent += batch
            return batch

        # The scheduler's own worker, on the walking clock, with the sender as its duty as in `serve`.
        worker = testing.worker(db, clock, owner="cartback-demo", hooks=[attribution.hook()])
        worker.duties.append(send)
        await db.start()
        try:
            total = len(shop.actions) + 1
            for done, action in enumerate([*shop.actions, None], start=1):
                clock.set(action.at if action else end)
                # What was due by now runs first: delays end, emails are written and sent.
                await testing.until_idle(worker)
                if action is not None:
                    db.write_sync(functools.partial(_apply, action=action, now=clock.now()))
                    await testing.until_idle(worker)
                if progress is not None:
                    progress(done, total)
        finally:
            await db.stop()
        return sent

    sent = asyncio.run(replay())
    return Result(WORKSPACE, email, password, key, checkouts_count, shop.placed, sent)
