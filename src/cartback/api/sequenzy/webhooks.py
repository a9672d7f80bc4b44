"""The Sequenzy outbound-webhook resource: endpoints, their signing secrets, deliveries and attempts.

A signing secret is shown once, in the response that creates it (`webhook.signingSecret`); afterwards only
its id and prefix. How requests are signed is ours to define (Sequenzy does not publish it): see
docs/webhooks.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from cartback.api import deps
from cartback.api.sequenzy import models, principal
from cartback.core import webhooks
from cartback.delivery import targets

router = APIRouter(tags=["webhooks"])

Who = deps.Principal
Svc = deps.Services


def endpoint_json(view: webhooks.EndpointView, *, secret: str | None = None) -> dict[str, Any]:
    e = view.endpoint
    body: dict[str, Any] = {
        "id": e.id,
        "name": e.name,
        "url": e.url,
        "events": list(e.events),
        "status": e.status,
        "signingSecrets": [
            {"id": s.id, "prefix": s.prefix, "createdAt": models.iso(s.created_at)} for s in view.secrets
        ],
        "consecutiveFailures": e.consecutive_failures,
        "failingSince": models.iso(e.failing_since),
        # cartback has no circuit breaker beyond backoff and auto-disable; kept for the SDK's shape.
        "circuitOpenedAt": None,
        "circuitOpenUntil": None,
        "autoDisabledAt": models.iso(e.auto_disabled_at),
        "disabledReason": e.disabled_reason,
        "lastSuccessAt": models.iso(e.last_success_at),
        "lastFailureAt": models.iso(e.last_failure_at),
        "createdAt": models.iso(e.created_at),
        "updatedAt": models.iso(e.updated_at),
    }
    if secret is not None:
        body["signingSecret"] = secret
    return body


def delivery_json(d: webhooks.Delivery, now: datetime) -> dict[str, Any]:
    status = d.status
    if status == "pending" and d.lease_until is not None and d.lease_until > now:
        status = "delivering"
    return {
        "id": d.id,
        "webhookId": d.endpoint_id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "status": status,
        "attempts": d.attempts,
        "lastStatusCode": d.last_status_code,
        "lastError": d.last_error,
        "lastResponseBody": d.last_response_body,
        "queuedAt": models.iso(d.created_at),
        "lastAttemptAt": models.iso(d.last_attempt_at),
        "nextAttemptAt": models.iso(d.next_attempt_at),
        "createdAt": models.iso(d.created_at),
        "updatedAt": models.iso(d.updated_at),
    }


def attempt_json(a: webhooks.Attempt) -> dict[str, Any]:
    ok = a.status_code is not None and 200 <= a.status_code < 300
    return {
        "id": a.id,
        "attemptNumber": a.attempt,
        "status": "succeeded" if ok else "failed",
        "statusCode": a.status_code,
        "error": a.error,
        "responseBody": a.response_body,
        "durationMs": a.duration_ms,
        "createdAt": models.iso(a.at),
    }


@router.get("/webhooks")
async def list_webhooks(who: Who = Depends(principal), svc: Svc = Depends(deps.services)) -> dict[str, Any]:
    """Every endpoint of the workspace, oldest first."""
    found = await svc.db.read(lambda tx: webhooks.list_all(tx, who.workspace_id))
    return {"success": True, "webhooks": [endpoint_json(v) for v in found]}


class CreateWebhookRequest(models.WireModel):
    name: models.NonEmpty
    url: str = Field(min_length=1, max_length=2000)
    # Left out (or null): every event type.
    events: list[str] | None = Field(None, max_length=100)


@router.post("/webhooks")
async def create_webhook(
    body: CreateWebhookRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """A new enabled endpoint and its first signing secret, which this response shows once."""
    # Resolved here, before the write: a name lookup must not hold the database writer.
    await targets.check_url(body.url, allow_private=svc.settings.webhook_allow_private)
    now = svc.clock.now()
    view, secret = await svc.db.write(
        lambda tx: webhooks.create(
            tx, who.workspace_id, name=body.name, url=body.url, event_types=body.events, now=now
        )
    )
    return {"success": True, "webhook": endpoint_json(view, secret=secret)}


class UpdateWebhookRequest(models.WireModel):
    name: models.NonEmpty | None = None
    url: str | None = Field(None, min_length=1, max_length=2000)
    events: list[str] | None = Field(None, max_length=100)
    status: Literal["enabled", "disabled"] | None = None


@router.patch("/webhooks/{webhook_id}")
async def update_webhook(
    webhook_id: str,
    body: UpdateWebhookRequest,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """Change what is given (null means unchanged). Disabling cancels pending deliveries; enabling clears
    the failure state, including an automatic disable."""
    if body.url is not None:
        await targets.check_url(body.url, allow_private=svc.settings.webhook_allow_private)
    now = svc.clock.now()
    view = await svc.db.write(
        lambda tx: webhooks.update(
            tx,
            who.workspace_id,
            webhook_id,
            now=now,
            name=body.name,
            url=body.url,
            event_types=body.events,
            status=body.status,
        )
    )
    return {"success": True, "webhook": endpoint_json(view)}


@router.delete("/webhooks/{webhook_id}")
async def delete_webhook(
    webhook_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Delete the endpoint with its secrets and delivery history; nothing more is sent to it."""
    view = await svc.db.write(lambda tx: webhooks.delete(tx, who.workspace_id, webhook_id))
    return {"success": True, "webhook": endpoint_json(view)}


@router.post("/webhooks/{webhook_id}/test")
async def test_webhook(
    webhook_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Queue a `webhook.test` delivery, due at once; its outcome shows in the deliveries list."""
    now = svc.clock.now()
    delivery = await svc.db.write(lambda tx: webhooks.queue_test(tx, who.workspace_id, webhook_id, now))
    return {
        "success": True,
        "delivery": delivery_json(delivery, now),
        "eventId": delivery.event_id,
        "queuedDeliveries": 1,
    }


@router.post("/webhooks/{webhook_id}/secrets")
async def add_signing_secret(
    webhook_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Another active secret, shown once in `webhook.signingSecret`. Every request carries one signature
    per active secret until the old one is removed."""
    now = svc.clock.now()
    view, secret = await svc.db.write(lambda tx: webhooks.add_secret(tx, who.workspace_id, webhook_id, now))
    return {"success": True, "webhook": endpoint_json(view, secret=secret)}


@router.delete("/webhooks/{webhook_id}/secrets/{secret_id}")
async def remove_signing_secret(
    webhook_id: str, secret_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Stop signing with a secret. The last one cannot be removed (400): add its successor first."""
    now = svc.clock.now()
    view = await svc.db.write(
        lambda tx: webhooks.remove_secret(tx, who.workspace_id, webhook_id, secret_id, now)
    )
    return {"success": True, "webhook": endpoint_json(view)}


@router.get("/webhooks/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    limit: int | None = Query(None),
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """The endpoint's deliveries, newest first; `limit` is 1 to 100 (default 50)."""
    count = max(1, min(limit or 50, 100))
    found = await svc.db.read(lambda tx: webhooks.deliveries(tx, who.workspace_id, webhook_id, count))
    now = svc.clock.now()
    return {"success": True, "deliveries": [delivery_json(d, now) for d in found]}


@router.get("/webhooks/{webhook_id}/deliveries/{delivery_id}/attempts")
async def list_delivery_attempts(
    webhook_id: str, delivery_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Every attempt of one delivery, first first."""
    found = await svc.db.read(lambda tx: webhooks.attempts(tx, who.workspace_id, webhook_id, delivery_id))
    return {"success": True, "attempts": [attempt_json(a) for a in found]}


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/replay")
async def replay_delivery(
    webhook_id: str, delivery_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Send this delivery again now: same delivery id (`webhook-id` header), same payload, a new attempt."""
    now = svc.clock.now()
    delivery = await svc.db.write(
        lambda tx: webhooks.replay(tx, who.workspace_id, webhook_id, delivery_id, now)
    )
    return {"success": True, "delivery": delivery_json(delivery, now)}
