"""POST /checkouts and POST /orders: the e-commerce events that abandoned-checkout flows run on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.responses import Response

from cartback.api import deps, lean, scopes
from cartback.api.sequenzy import models, principal
from cartback.core import checkouts, orders

router = APIRouter(tags=["commerce"])


class TrackCheckoutRequest(models.WireModel):
    checkout_id: models.NonEmpty
    customer: models.CommerceCustomer
    total_cents: models.Cents | None = None
    currency: models.Currency | None = None
    checkout_url: models.WebUrl | None = None
    items: list[models.CommerceOrderItem] | None = Field(None, max_length=1000)
    properties: dict[str, Any] | None = None


class TrackCheckoutResponse(BaseModel):
    success: bool = True
    checkoutId: str
    subscriberId: str
    eventId: str


@router.post("/checkouts", response_model=TrackCheckoutResponse, **scopes.requires(scopes.EVENTS_WRITE))
async def track_checkout_started(
    body: TrackCheckoutRequest,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> TrackCheckoutResponse:
    """Track a started checkout. The same checkoutId again returns the same ids and appends no event; a
    changed cart replaces the stored snapshot."""
    return await _record_checkout(body, who, svc)


async def _record_checkout(
    body: TrackCheckoutRequest, who: deps.Principal, svc: deps.Services
) -> TrackCheckoutResponse:
    data = checkouts.CheckoutInput(
        checkout_id=body.checkout_id,
        customer=body.customer.identity(),
        currency=body.currency,
        total_cents=body.total_cents,
        checkout_url=body.checkout_url,
        items=[item.as_event_item() for item in body.items or []],
        properties=body.properties or {},
    )
    request = checkouts.CheckoutRequest(who.workspace_id, data, svc.clock.now())
    result = await svc.db.write_each(checkouts.record_checkouts, request)
    return TrackCheckoutResponse(
        checkoutId=result.checkout_id, subscriberId=result.subscriber_id, eventId=result.event_id
    )


_CHECKOUT_ANSWER = pydantic.TypeAdapter(TrackCheckoutResponse)


async def _lean_checkout(
    who: deps.Principal, payload: dict[str, Any], svc: deps.Services, headers: lean.Headers
) -> Response | None:
    """track_checkout_started without FastAPI's request handling (api/lean.py): the same model, the same
    write, the same bytes back."""
    try:
        body = TrackCheckoutRequest.model_validate(payload)
    except pydantic.ValidationError:
        return None  # the FastAPI route answers with its 400
    answer = await _record_checkout(body, who, svc)
    return Response(_CHECKOUT_ANSWER.dump_json(answer), media_type="application/json")


def lean_routes(prefix: str) -> list[lean.LeanRoute]:
    return [lean.LeanRoute(prefix + "/checkouts", "POST", scopes.EVENTS_WRITE, _lean_checkout)]


class CustomerTotalsBody(models.WireModel):
    orders_count: Annotated[int, Field(ge=0)] | None = None
    total_spent_cents: models.Cents | None = None


class PushOrderRequest(models.WireModel):
    order_id: models.NonEmpty
    currency: models.Currency
    total_cents: models.Cents
    customer: models.CommerceCustomer
    status: Literal["placed", "cancelled", "fulfilled", "refunded"] | None = None
    order_number: str | None = Field(None, max_length=255)
    items: list[models.CommerceOrderItem] | None = Field(None, max_length=1000)
    ordered_at: datetime | None = None
    refund_amount_cents: models.Cents | None = None
    customer_totals: CustomerTotalsBody | None = None
    properties: dict[str, Any] | None = None


class PushOrderResponse(BaseModel):
    success: bool = True
    # Processed before the reply, not queued: the events are in the log when the 2xx arrives.
    queued: bool = False
    status: str = "processed"
    orderId: str
    orderStatus: str
    subscriberId: str
    eventIds: list[str]
    duplicate: bool


@router.post("/orders", response_model=PushOrderResponse, **scopes.requires(scopes.EVENTS_WRITE))
async def push_order(
    body: PushOrderRequest,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> PushOrderResponse:
    """Create or update an order, idempotent by orderId. Each status reached appends its event once."""
    totals = body.customer_totals
    data = orders.OrderInput(
        order_id=body.order_id,
        customer=body.customer.identity(),
        currency=body.currency,
        total_cents=body.total_cents,
        status=body.status or "placed",
        order_number=body.order_number,
        items=[item.as_event_item() for item in body.items or []],
        properties=body.properties or {},
        ordered_at=body.ordered_at,
        refund_amount_cents=body.refund_amount_cents,
        customer_totals=orders.CustomerTotals(totals.orders_count, totals.total_spent_cents)
        if totals
        else None,
    )
    if data.ordered_at is not None and data.ordered_at.tzinfo is None:
        data = replace(data, ordered_at=data.ordered_at.replace(tzinfo=UTC))
    now = svc.clock.now()
    models.check_time(data.ordered_at, now, "orderedAt")
    result = await svc.db.write(lambda tx: orders.record_order(tx, who.workspace_id, data, now))
    return PushOrderResponse(
        orderId=result.order_id,
        orderStatus=result.status,
        subscriberId=result.subscriber_id,
        eventIds=result.event_ids,
        duplicate=result.duplicate,
    )
