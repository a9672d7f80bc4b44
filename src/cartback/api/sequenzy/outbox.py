"""The outbox: every message handed to delivery, whichever the transport, with its delivery status.

`GET /outbox` lists them newest first (filters `status`, `email`, `sequenceId`); `GET /outbox/{id}` adds
the HTML and the full MIME message as sent (or as the outbox transport stored it) and the attempts.
Status is one of queued, sending, deferred, sent, kept (stored by the outbox transport: no mail server is
set, nothing was delivered), failed, suppressed, unknown (the process stopped during the SMTP exchange, so
the message may or may not have been delivered; it is never resent).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from cartback import errors
from cartback.api import deps
from cartback.api.sequenzy import models, principal
from cartback.core import reports

router = APIRouter(tags=["outbox"])

Who = deps.Principal
Svc = deps.Services
Status = Literal["queued", "sending", "deferred", "sent", "kept", "failed", "suppressed", "unknown"]


def item_json(item: reports.OutboxItem, *, full: bool = False) -> dict[str, Any]:
    m = item.message
    body: dict[str, Any] = {
        "id": m.id,
        "messageId": item.rfc_message_id,
        "to": m.to_email,
        "from": m.from_email,
        "subject": m.subject,
        "status": m.status,
        "kind": m.kind,
        "transport": item.transport,
        "sequenceId": m.sequence_id,
        "enrollmentId": m.enrollment_id,
        "nodeId": m.node_id,
        "attempts": item.attempts,
        "createdAt": models.iso(m.created_at),
        "sentAt": models.iso(m.sent_at),
        "lastError": m.error if m.status not in ("sent", "kept") else None,
    }
    if full:
        body["html"] = m.html
        body["text"] = m.text
        body["mime"] = item.mime
    return body


@router.get("/outbox")
async def list_outbox(
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    status: Status | None = None,
    email: str | None = Query(None, max_length=320),
    sequence_id: str | None = Query(None, alias="sequenceId", max_length=100),
    page: int = Query(1, ge=1, le=1_000_000),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    """Newest first, without bodies."""
    offset = (page - 1) * limit
    query = reports.OutboxQuery(status, email, limit, offset, sequence_id)
    now = svc.clock.now()
    items, total = await svc.db.read(lambda tx: reports.outbox(tx, who.workspace_id, query, now))
    return {
        "success": True,
        "messages": [item_json(i) for i in items],
        "pagination": {
            "page": page,
            "limit": limit,
            "total": total,
            "totalPages": (total + limit - 1) // limit,
            "hasMore": offset + len(items) < total,
        },
    }


@router.get("/outbox/{message_id}")
async def get_outbox_message(
    message_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """One message with its HTML, text, MIME and every delivery attempt."""
    now = svc.clock.now()
    found = await svc.db.read(lambda tx: reports.delivery(tx, who.workspace_id, message_id, now))
    if found is None:
        raise errors.NotFound("message not found")
    body = item_json(found.item, full=True)
    body["deliveryAttempts"] = [
        {
            "attempt": a["attempt"],
            "outcome": a["outcome"],
            "smtpCode": a["smtp_code"],
            "detail": a["detail"],
            "startedAt": models.iso(a["started_at"]),
            "finishedAt": models.iso(a["finished_at"]),
        }
        for a in found.attempts
    ]
    return {"success": True, "message": body}
