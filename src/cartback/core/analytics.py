"""Recovery analytics per workspace, sequence and step, in total and over time: what the emails did
(sent, delivered, kept in the outbox, opened, clicked, unsubscribed) and what they earned (checkouts
recovered, revenue per currency, recovery rate). docs/analytics.md defines every figure;
cartback.statuses names the message statuses each email figure counts. This is the one read model of
these figures: the API and the dashboard format what `report` gives and count nothing themselves.

Emails count in the period they were created, and their opens, clicks and unsubscribes count with them
(a cohort, so rates never pass 1); orders count in the period they were placed, at what they are worth
now (refunds and cancellations already taken off); checkouts count when started.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cartback import errors, money, values
from cartback.core import orders
from cartback.store import analytics as store
from cartback.store.db import Tx

INTERVALS = ("hour", "day", "week", "month")
# What each overview figure counts, shown as the dashboard's tooltips: the same words as the table in
# docs/analytics.md (a unit test keeps them together).
DEFINITIONS = {
    "checkouts_started": "Checkouts started in the range, counted by their own time (the time sent "
    "with them).",
    "abandoned": "Checkouts started in the range that no order completed on its own: no order yet, or an "
    "order an email won back (Shopify's abandoned checkouts).",
    "recovered": "Orders placed in the range that were attributed to a recovery email and are still worth "
    "something; the rate is recovered / abandoned, as Shopify's.",
    "sent": "Sequence emails created in the range and handed to the mail server.",
    "kept": "Sequence emails created in the range and kept in the outbox because no mail server is set: "
    "never delivered, so not in sent, and no rate counts them.",
    "opened": "Of those, the emails opened at least once; the rate is of the emails delivered.",
    "clicked": "Of those, the emails clicked at least once; the rate is of the emails delivered. The same "
    "figure in the cards, the chart, the funnel and the table.",
    "funnel": "Emails sent, then those clicked, then those clicked emails an order was attributed to: each "
    "stage a part of the one before.",
}
# "All time": before any data cartback can hold.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MAIL_FIGURES = ("sent", "delivered", "kept", "opened", "clicked", "bounced", "complained", "unsubscribed")
# Events that name the email they came from, and the figure each counts in.
_SUPPRESSION_FIGURES = {
    "email.unsubscribed": "unsubscribed",
    "email.bounced": "bounced",
    "email.complained": "complained",
}
# Each bucket of a time series costs work; past this many, ask for a coarser interval.
MAX_BUCKETS = 2000


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise errors.InvalidInput(f"unknown timezone {name!r}") from exc


def _floor(local: datetime, interval: str) -> datetime:
    """The start of the hour/day/week (Monday)/month holding this naive local time."""
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(local: datetime, interval: str) -> datetime:
    if interval == "day":
        return local + timedelta(days=1)
    if interval == "week":
        return local + timedelta(days=7)
    return local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1)


@dataclass(frozen=True)
class Bucket:
    """[start, end) in UTC; `label` is the local start of the interval it belongs to."""

    start: datetime
    end: datetime
    label: datetime


def buckets(start: datetime, end: datetime, interval: str, tz: ZoneInfo) -> list[Bucket]:
    """Cut [start, end) at the local hour/day/week/month boundaries of `tz` (days and months follow the
    zone's daylight-saving changes). The first bucket starts at `start` itself, labelled with the
    boundary before it."""
    if interval not in INTERVALS:
        raise errors.InvalidInput(f"interval must be one of {', '.join(INTERVALS)}")
    if end <= start:
        raise errors.InvalidInput("the end must be after the start")
    try:
        return _buckets(start, end, interval, tz)
    except (OverflowError, ValueError) as exc:
        raise errors.InvalidInput("the period is out of range") from exc


def _buckets(start: datetime, end: datetime, interval: str, tz: ZoneInfo) -> list[Bucket]:
    cuts: list[tuple[datetime, datetime]] = []  # (utc start, local label)
    first_local = _floor(start.astimezone(tz).replace(tzinfo=None), interval)
    if interval == "hour":
        moment = first_local.replace(tzinfo=tz).astimezone(UTC)
        while moment < end:
            cuts.append((moment, moment.astimezone(tz)))
            moment += timedelta(hours=1)
            if len(cuts) > MAX_BUCKETS:
                break
    else:
        local = first_local
        while True:
            moment = local.replace(tzinfo=tz).astimezone(UTC)
            if moment >= end or len(cuts) > MAX_BUCKETS:
                break
            cuts.append((moment, local.replace(tzinfo=tz)))
            local = _next(local, interval)
    if len(cuts) > MAX_BUCKETS:
        raise errors.InvalidInput(f"more than {MAX_BUCKETS} {interval} intervals; use a coarser interval")
    out = []
    for i, (moment, label) in enumerate(cuts):
        nxt = cuts[i + 1][0] if i + 1 < len(cuts) else end
        out.append(Bucket(max(moment, start), nxt, label))
    return out


def net_cents(fact: store.RecoveredOrder) -> int:
    return orders.net_of(fact.status, fact.total_cents, fact.refund_amount_cents)


@dataclass
class Tally:
    """The figures of one slice (workspace, sequence, step, or one interval of one of these)."""

    sent: int = 0
    delivered: int = 0
    kept: int = 0
    bounced: int = 0
    complained: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    checkouts_started: int = 0
    # Checkouts left without an order, or won back by an email (Shopify's "abandoned checkouts"): the
    # recovery rate's denominator. A sequence's are its runs, a step's its emails.
    abandoned: int = 0
    recovered: int = 0
    # currency -> [orders, net cents]
    revenue: dict[str, list[int]] = field(default_factory=dict)

    def add_mail(self, other: Tally) -> None:
        for name in _MAIL_FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def add_order(self, currency: str, cents: int) -> None:
        slot = self.revenue.setdefault(currency, [0, 0])
        slot[0] += 1
        slot[1] += cents
        self.recovered += 1

    def revenue_json(self) -> list[dict[str, Any]]:
        return [
            {
                "currency": currency,
                "orders": n,
                "revenueCents": cents,
                "revenue": money.to_major(cents, currency),
            }
            for currency, (n, cents) in sorted(self.revenue.items())
        ]

    def json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "kept": self.kept,
            "bounced": self.bounced,
            "opened": self.opened,
            "clicked": self.clicked,
            "unsubscribed": self.unsubscribed,
            "checkoutsStarted": self.checkouts_started,
            "checkoutsAbandoned": self.abandoned,
            "checkoutsRecovered": self.recovered,
            "recoveryRate": rate(self.recovered, self.abandoned),
            "openRate": rate(self.opened, self.delivered),
            "clickRate": rate(self.clicked, self.delivered),
            "revenue": self.revenue_json(),
        }


def rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


@dataclass
class Slice:
    """A tally in total and per interval."""

    total: Tally = field(default_factory=Tally)
    series: list[Tally] = field(default_factory=list)

    def at(self, index: int | None) -> list[Tally]:
        return [self.total] if index is None else [self.total, self.series[index]]


@dataclass
class Report:
    start: datetime
    end: datetime
    interval: str | None
    buckets: list[Bucket]
    workspace: Slice
    sequences: dict[str, Slice]
    # (sequence id, node id) -> slice
    steps: dict[tuple[str, str | None], Slice]
    names: dict[str, tuple[str, dict[str, Any]]]


def report(
    tx: Tx,
    workspace_id: str,
    start: datetime,
    end: datetime,
    *,
    interval: str | None = None,
    tz: ZoneInfo | None = None,
    sequence_id: str | None = None,
) -> Report:
    """Every figure of the period, for the workspace (or one sequence), its sequences and their steps.

    The one read model: the Sequenzy API (sequence stats, metrics and breakdown, the recovery report) and
    the dashboard (overview, sequence list and page) read their figures here. The database
    counts emails, checkouts and runs per interval and step, so a report over a million events reads a few
    hundred rows; only attributed orders are read one by one."""
    if end <= start:
        raise errors.InvalidInput("the end must be after the start")
    cuts = buckets(start, end, interval, tz or ZoneInfo("UTC")) if interval else []
    starts = [b.start for b in cuts]

    def new_slice() -> Slice:
        return Slice(Tally(), [Tally() for _ in cuts])

    workspace = new_slice()
    per_sequence: dict[str, Slice] = defaultdict(new_slice)
    per_step: dict[tuple[str, str | None], Slice] = defaultdict(new_slice)

    def tallies(sequence: str, node: str | None, bucket: int | None) -> list[Tally]:
        return [
            *workspace.at(bucket),
            *per_sequence[sequence].at(bucket),
            *per_step[(sequence, node)].at(bucket),
        ]

    def at(bucket: int) -> int | None:  # the database puts every row in bucket 0 when there are none
        return bucket if cuts else None

    for (bucket, seq, node), mail in step_mail(
        tx, workspace_id, start, end, starts=starts, sequence_id=sequence_id
    ).items():
        for t in tallies(seq, node, at(bucket)):
            t.add_mail(mail)

    # Checkouts started: the workspace's checkouts; a sequence's are the runs it started.
    if sequence_id is None:
        for bucket, count in store.checkouts_per_interval(tx, workspace_id, start, end, starts).items():
            for t in workspace.at(at(bucket)):
                t.checkouts_started += count
        for bucket, count in store.checkouts_per_interval(
            tx, workspace_id, start, end, starts, abandoned=True
        ).items():
            for t in workspace.at(at(bucket)):
                t.abandoned += count
    for bucket, seq, count in store.runs_per_interval(tx, workspace_id, start, end, starts, sequence_id):
        i = at(bucket)
        targets = per_sequence[seq].at(i) + (workspace.at(i) if sequence_id is not None else [])
        for t in targets:
            t.checkouts_started += count
            t.abandoned += count  # a run is a checkout the sequence took on to win back

    for order in store.recovered_orders(tx, workspace_id, start, end, sequence_id):
        cents = net_cents(order)
        if cents <= 0:
            continue  # cancelled or fully refunded: nothing was recovered
        i = bisect.bisect_right(starts, order.ordered_at) - 1 if cuts else None
        for t in tallies(order.sequence_id, order.node_id, i):
            t.add_order(order.currency, cents)

    # A step's "checkouts started" is the emails it sent: its rate is orders per email.
    for step in per_step.values():
        for t in [step.total, *step.series]:
            t.checkouts_started = t.abandoned = t.sent

    return Report(
        start=start,
        end=end,
        interval=interval,
        buckets=cuts,
        workspace=workspace,
        sequences=dict(per_sequence),
        steps=dict(per_step),
        names=store.sequence_names(tx, workspace_id),
    )


@dataclass(frozen=True)
class Funnel:
    """The overview's funnel, each stage a part of the one before (docs/analytics.md)."""

    sent: int
    clicked: int
    ordered: int

    def stages(self) -> list[tuple[str, int]]:
        return [("Emails sent", self.sent), ("Clicked", self.clicked), ("Ordered", self.ordered)]


def funnel(tx: Tx, workspace_id: str, figures: Report) -> Funnel:
    """Emails sent, those clicked (the report's `clicked`, the same figure the page shows elsewhere), and
    of those the ones an order was attributed to."""
    total = figures.workspace.total
    ordered = store.clicked_emails_with_orders(tx, workspace_id, figures.start, figures.end)
    return Funnel(total.sent, total.clicked, ordered)


def step_mail(
    tx: Tx,
    workspace_id: str,
    start: datetime,
    end: datetime,
    *,
    starts: list[datetime] | None = None,
    sequence_id: str | None = None,
) -> dict[tuple[int, str, str | None], Tally]:
    """The email figures (sent, delivered, kept, opened, clicked, bounced, complained, unsubscribed) of the
    sequence emails created in [start, end), per (interval, sequence, step): the part of `report` that a
    page showing only emails needs. Without `starts`, everything is in interval 0."""
    out: dict[tuple[int, str, str | None], Tally] = defaultdict(Tally)
    cuts = starts or []
    for mail in store.mail_per_step(tx, workspace_id, start, end, cuts, sequence_id):
        t = out[(mail.bucket, mail.sequence_id, mail.node_id)]
        t.sent += mail.sent
        t.delivered += mail.delivered
        t.kept += mail.kept
        t.opened += mail.opened
        t.clicked += mail.clicked
    for bucket, seq, node, name, count in store.message_events_per_step(
        tx, workspace_id, list(_SUPPRESSION_FIGURES), start, end, cuts, sequence_id
    ):
        t = out[(bucket, seq, node)]
        figure = _SUPPRESSION_FIGURES[name]
        setattr(t, figure, getattr(t, figure) + count)
    return dict(out)


def steps_all_time(
    tx: Tx, workspace_id: str, now: datetime, *, sequence_id: str | None = None
) -> dict[tuple[str, str | None], Tally]:
    """(sequence id, node id) -> the email figures of all time: what a page without a period shows, the
    same as the API's sequence stats without a period."""
    found = step_mail(tx, workspace_id, EPOCH, now + timedelta(seconds=1), sequence_id=sequence_id)
    return {(seq, node): t for (_, seq, node), t in found.items()}


def step_order(definition: dict[str, Any]) -> list[tuple[int, str, str | None]]:
    """(step number, node id, subject) of each email node, in the definition's order. Email steps are
    numbered 1, 2, ... among themselves (Sequenzy's `stepNumber`; waits and other nodes are not
    counted), as the dashboard numbers them."""
    emails = [node for node in definition.get("nodes") or [] if node.get("type") == "email"]
    return [
        (number, str(node.get("id")), (node.get("config") or {}).get("subject"))
        for number, node in enumerate(emails, start=1)
    ]


@dataclass(frozen=True)
class Recovery:
    """An order an email won back, as the figures count it: attributed and still worth something, at
    what it is worth now; with the email and its step (numbered as `step_order` numbers them)."""

    order_id: str
    ordered_at: datetime
    currency: str
    cents: int
    kind: str
    sequence_id: str
    sequence_name: str
    message_id: str
    enrollment_id: str | None
    step: int | None


def recoveries(
    tx: Tx,
    workspace_id: str,
    now: datetime,
    *,
    subscriber_id: str | None = None,
    message_id: str | None = None,
    order_ids: list[str] | None = None,
) -> list[Recovery]:
    """The recovered orders of all time (a person's, an email's, or the named ones), the orders `report`
    counts as recovered and adds to the revenue, newest first."""
    found = store.recovered_orders(
        tx,
        workspace_id,
        EPOCH,
        now + values.LATEST_AHEAD,
        subscriber_id=subscriber_id,
        message_id=message_id,
        order_ids=order_ids,
    )
    names = store.sequence_names(tx, workspace_id) if found else {}
    out = []
    for order in found:
        cents = net_cents(order)
        if cents <= 0:
            continue  # cancelled or fully refunded: nothing was recovered
        name, definition = names.get(order.sequence_id, (order.sequence_id, {}))
        numbers = {node_id: number for number, node_id, _ in step_order(definition)}
        out.append(
            Recovery(
                order_id=order.order_id,
                ordered_at=order.ordered_at,
                currency=order.currency,
                cents=cents,
                kind=order.kind,
                sequence_id=order.sequence_id,
                sequence_name=name,
                message_id=order.message_id,
                enrollment_id=order.enrollment_id,
                step=numbers.get(order.node_id or ""),
            )
        )
    return sorted(out, key=lambda r: (r.ordered_at, r.order_id), reverse=True)


@dataclass(frozen=True)
class AbandonedCheckout:
    checkout: store.AbandonedCheckout
    # The order an email won back from it, if one did.
    recovery: Recovery | None


def abandoned_checkouts(
    tx: Tx, workspace_id: str, now: datetime, *, limit: int, offset: int
) -> tuple[list[AbandonedCheckout], int]:
    """A page of the workspace's abandoned checkouts of all time (those the overview's "Abandoned"
    counts), newest first, each with the recovery that won it back; and how many there are."""
    found, total = store.abandoned_checkouts(tx, workspace_id, limit=limit, offset=offset)
    ordered = [c.order_id for c in found if c.order_id]
    won = {r.order_id: r for r in recoveries(tx, workspace_id, now, order_ids=ordered)} if ordered else {}
    return [AbandonedCheckout(c, won.get(c.order_id or "")) for c in found], total
