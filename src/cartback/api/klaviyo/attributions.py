"""Klaviyo's attribution resources (`GET /api/events?include=attributions`): which email earned an
order. An attributed `Placed Order` event has one; other events have none.

An attribution names the order `event`, the `attributed-event` (the `email.sent` event of the email that
got the credit), the `flow` (the sequence) and the `flow-message` (the message sent: its id is the one
the outbox and the dashboard show)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from cartback.api.klaviyo import jsonapi
from cartback.core import attribution


def resource(request: Request, credit: attribution.Credit) -> dict[str, Any]:
    row = credit.attribution
    relationships = {
        "event": jsonapi.relationship("event", row.order_event_id),
        "flow": jsonapi.relationship("flow", row.sequence_id),
        "flow-message": jsonapi.relationship("flow-message", row.message_id),
    }
    if credit.sent_event_id is not None:
        relationships["attributed-event"] = jsonapi.relationship("event", credit.sent_event_id)
    # Klaviyo's attribution resource has no attributes (its spec lists none); the SDK needs the key.
    body = jsonapi.resource(
        "attribution", row.id, {}, f"{jsonapi.base_url(request)}/api/attributions/{row.id}", relationships
    )
    return body
