"""What the dashboard's pages read, each one use case `fn(tx, workspace_id, input, now)`: a page parses
its query, calls one of these and renders the result. Figures come from core/analytics, the read model
the API's reports use too (docs/analytics.md), so a page never counts on its own; lists and logs come
from store/reports and the other stores, scoped to the workspace."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cartback import errors
from cartback.core import analytics
from cartback.store import deliveries
from cartback.store import reports as store
from cartback.store.db import Tx
from cartback.store.deliveries import OutboxItem as OutboxItem
from cartback.store.events import Event as Event
from cartback.store.reports import Funnel as Funnel


@dataclass(frozen=True)
class Period:
    """[start, end), cut into intervals of `interval` (hour, day, week)."""

    start: datetime
    end: datetime
    interval: str


@dataclass(frozen=True)
class Overview:
    report: analytics.Report
    abandoned: int
    funnel: Funnel


def overview(tx: Tx, workspace_id: str, period: Period, now: datetime) -> Overview:
    """The overview's figures: the recovery report (the one behind GET /api/v1/analytics/recovery), the
    checkouts still abandoned and the funnel checkout -> email -> click."""
    return Overview(
        report=analytics.report(tx, workspace_id, period.start, period.end, interval=period.interval),
        abandoned=store.abandoned(tx, workspace_id, period.start, period.end),
        funnel=store.funnel(tx, workspace_id, period.start, period.end),
    )


@dataclass(frozen=True)
class OutboxQuery:
    status: str | None
    email: str | None
    limit: int
    offset: int


def outbox(tx: Tx, workspace_id: str, query: OutboxQuery, now: datetime) -> tuple[list[OutboxItem], int]:
    """A page of the workspace's messages, newest first, and how many match."""
    return deliveries.outbox(
        tx, workspace_id, status=query.status, email=query.email, limit=query.limit, offset=query.offset
    )


def message_item(tx: Tx, workspace_id: str, message_id: str, now: datetime) -> OutboxItem:
    """One message of the workspace with its delivery state; a 404 for any other id."""
    item = deliveries.outbox_item(tx, workspace_id, message_id)
    if item is None:
        raise errors.NotFound(f"No message {message_id!r} in this workspace.")
    return item


@dataclass(frozen=True)
class MessageView:
    item: OutboxItem
    attempts: list[dict[str, Any]]
    # The email.* events (sent, opened, clicked, ...) that name the message, oldest first.
    tracking: list[Event]


def message(tx: Tx, workspace_id: str, message_id: str, now: datetime) -> MessageView:
    item = message_item(tx, workspace_id, message_id, now)
    return MessageView(
        item=item,
        attempts=deliveries.attempts_of(tx, item.message.id),
        tracking=store.message_events(tx, workspace_id, item.message.subscriber_id, message_id),
    )
