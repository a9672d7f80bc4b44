"""BigCommerce's webhooks (v3 `/hooks`): `store/cart/abandoned`, `store/order/created` and
`store/order/statusUpdated`, as far as their payloads allow.

BigCommerce signs nothing: when a webhook is created through its API (`POST /v3/hooks`) it sends back the
custom `headers` given there with every delivery. Give it `{"X-Cartback-Secret": "<the connector's
secret>"}`; that header is compared in constant time. The payload's `hash` identifies the event (the same
on a retry).

The payloads carry ids only (`{"data": {"type": "order", "id": 250}}`): no email, no items, no amounts.
So an abandoned cart cannot start a checkout nor a new order be recorded (both are accepted and store
nothing), and an order's status change (shipped or completed, cancelled, refunded) is applied only to an
order cartback already knows by that id (reported through an API with BigCommerce's order id)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from starlette.datastructures import Headers

from cartback import errors
from cartback.api.hooks import fields
from cartback.core import connectors, ingest, orders, subscribers

SOURCE = "bigcommerce"
HEADER = "X-Cartback-Secret"
# BigCommerce's order status ids (its Orders API, "order statuses") that change what cartback knows.
_STATUS_IDS = {2: "fulfilled", 10: "fulfilled", 4: "refunded", 5: "cancelled"}
_TOPICS = ("store/cart/abandoned", "store/order/created", "store/order/statusupdated")


def verify(headers: Headers, body: bytes, secrets: tuple[str, ...], now: datetime) -> None:
    given = headers.get(HEADER.lower())
    if not given:
        raise errors.Unauthorized(f"missing {HEADER}")
    for secret in secrets:
        if hmac.compare_digest(given.strip().encode(), secret.encode()):
            return
    raise errors.Unauthorized(f"{HEADER} is not this connector's secret")


def parse(headers: Headers, body: bytes) -> connectors.Webhook:
    event = fields.json_object(body)
    scope = (fields.text(event.get("scope"), "scope", 100) or "").lower()
    event_id = fields.ident(event.get("hash"), "hash") or hashlib.sha256(body).hexdigest()
    if scope not in _TOPICS:
        return connectors.Webhook(event_id, scope, None)
    data = fields.obj(event.get("data"), "data")
    order_id = fields.ident(data.get("id"), "data.id")
    if order_id is None:
        raise errors.InvalidInput("data.id is required")
    if scope != "store/order/statusupdated":
        # A cart's or a new order's id alone: nobody to write to, no amount, nothing to show.
        return connectors.Webhook(event_id, scope, [ingest.Ignored()])
    change = fields.obj(data.get("status"), "data.status")
    new_id = change.get("new_status_id")
    if isinstance(new_id, bool) or not isinstance(new_id, int):
        raise errors.InvalidInput("data.status.new_status_id must be a whole number")
    status = _STATUS_IDS.get(new_id)
    if status is None:
        return connectors.Webhook(event_id, scope, [ingest.Ignored()])
    action = ingest.OrderStatusChange(
        orders.OrderInput(
            order_id=order_id,
            customer=subscribers.Identity(),
            currency=None,
            total_cents=None,
            status=status,
            properties={"platform": SOURCE},
            source=SOURCE,
        )
    )
    return connectors.Webhook(event_id, scope, [action])
