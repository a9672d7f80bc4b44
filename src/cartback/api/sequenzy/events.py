"""POST /subscribers/events and /subscribers/events/bulk: custom events for one subscriber.

`eventId` is a strict idempotency key: a replay answers `duplicate: true` with the original event's id
and applies nothing again. An event that happened more than an hour ago is stored as history
(`historical: true`) and starts no flow.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import Field

from cartback.api import deps, scopes
from cartback.api.sequenzy import models, principal
from cartback.core import subscribers

router = APIRouter(tags=["events"])

Who = deps.Principal
Svc = deps.Services

EventName = models.NonEmpty


class TriggerEventRequest(models.IdentityBody):
    event: EventName
    event_id: models.NonEmpty | None = None
    occurred_at: models.UtcDateTime | None = None
    properties: dict[str, Any] | None = None
    # Accounts are not a cartback feature; the field is accepted and reported as ignored.
    account: str | dict[str, Any] | None = None


def _subscriber(result: subscribers.TriggerResult) -> dict[str, Any]:
    sub = result.subscriber
    return {"id": sub.id, "email": sub.email, "created": result.created}


@router.post("/subscribers/events", **scopes.requires(scopes.EVENTS_WRITE))
async def trigger_event(
    body: TriggerEventRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Record one event for a subscriber, created if new."""
    item = subscribers.EventInput(
        name=body.event,
        event_id=body.event_id,
        occurred_at=body.occurred_at,
        properties=body.properties or {},
    )
    identity, now = body.identity(), svc.clock.now()
    models.check_time(body.occurred_at, now, "occurredAt")
    result = await svc.db.write(lambda tx: subscribers.trigger(tx, who.workspace_id, identity, [item], now))
    done = result.events[0]
    answer: dict[str, Any] = {
        "success": True,
        "event": {"id": done.event.id, "name": done.event.name, "definitionCreated": done.definition_created},
        "subscriber": _subscriber(result),
        "duplicate": done.duplicate,
        "historical": done.event.historical,
        "optIn": models.OPT_IN,
    }
    if body.account is not None:
        answer["accountIgnored"] = {
            "reason": "accounts_not_enabled",
            "message": "cartback has no accounts; the field was ignored",
        }
    return answer


class BulkEventItem(models.WireModel):
    name: EventName
    event_id: models.NonEmpty | None = None
    occurred_at: models.UtcDateTime | None = None
    properties: dict[str, Any] | None = None


class TriggerBulkRequest(models.IdentityBody):
    events: list[BulkEventItem] = Field(min_length=1, max_length=subscribers.EVENTS_PER_REQUEST)


@router.post("/subscribers/events/bulk", **scopes.requires(scopes.EVENTS_WRITE))
async def trigger_events_bulk(
    body: TriggerBulkRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Up to 100 events for one subscriber, in one transaction."""
    items = [
        subscribers.EventInput(
            name=e.name, event_id=e.event_id, occurred_at=e.occurred_at, properties=e.properties or {}
        )
        for e in body.events
    ]
    identity, now = body.identity(), svc.clock.now()
    for i, e in enumerate(body.events):
        models.check_time(e.occurred_at, now, f"events.{i}.occurredAt")
    result = await svc.db.write(lambda tx: subscribers.trigger(tx, who.workspace_id, identity, items, now))
    duplicates = sum(e.duplicate for e in result.events)
    return {
        "success": True,
        "subscriber": _subscriber(result),
        "events": [
            {
                "id": e.event.id,
                "name": e.event.name,
                "duplicate": e.duplicate,
                "historical": e.event.historical,
                "definitionCreated": e.definition_created,
            }
            for e in result.events
        ],
        "inserted": len(result.events) - duplicates,
        "duplicates": duplicates,
        "optIn": models.OPT_IN,
    }
