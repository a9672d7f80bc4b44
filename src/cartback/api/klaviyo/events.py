"""POST /api/events (create_event, 202 with no body) and GET /api/events (get_events, get_event).

The metric names of CONTRACT.md's event model become canonical events through the same core paths as
Sequenzy's: "Started Checkout" is a checkout (`core.checkouts`, snapshot and one
ecommerce.checkout_started), "Placed/Cancelled/Refunded/Fulfilled Order" are order statuses
(`core.orders`). Any other metric is a custom event of that name. A 202 means the event is committed.

`unique_id` is the idempotency key, per profile and metric as Klaviyo has it; without one Klaviyo uses
the event time to the second, and so does cartback. A checkout is identified by its `checkout_id` or
`cart_id` property, else the unique_id; an order by its `order_id` / `OrderId` property, else the
unique_id.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field, model_validator
from starlette.responses import Response

from cartback.api import deps, scopes
from cartback.api.klaviyo import ecommerce, filters, jsonapi, limits, models, principal
from cartback.core import checkouts, events, identities, metrics, orders, profiles
from cartback.core.subscribers import Identity
from cartback.store import events as event_store
from cartback.store import orders as order_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx

router = APIRouter(tags=["klaviyo events"])

SOURCE = "klaviyo"
_ATTRS = "/data/attributes"
_ORDER_STATUSES = {name: status for status, name in events.ORDER_EVENTS.items()}


class MetricAttributes(models.Model):
    name: str = Field(min_length=1, max_length=255)
    service: str | None = None


class MetricData(models.Model):
    type: Literal["metric"]
    attributes: MetricAttributes


class MetricRef(models.Model):
    data: MetricData


class EventProfileRef(models.Model):
    data: models.ProfileData


def _wrap(value: Any, kind: str) -> Any:
    """Accept the flat `{"metric": {"name": ...}}` / `{"profile": {"email": ...}}` form that widely
    copied guides show, by wrapping it into the JSON:API relationship form."""
    if isinstance(value, dict) and "data" not in value:
        return {"data": {"type": kind, "attributes": value}}
    return value


class EventAttributes(models.Model):
    properties: dict[str, Any]
    time: models.UtcDateTime | None = None
    value: float | None = Field(None, allow_inf_nan=False)
    value_currency: str | None = Field(None, max_length=10)
    unique_id: str | None = Field(None, min_length=1, max_length=1000)
    metric: MetricRef
    profile: EventProfileRef

    @model_validator(mode="before")
    @classmethod
    def _flat_forms(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "metric" in data:
                data["metric"] = _wrap(data["metric"], "metric")
            if "profile" in data:
                data["profile"] = _wrap(data["profile"], "profile")
        return data


class EventData(models.Model):
    type: Literal["event"]
    attributes: EventAttributes


class EventCreateBody(models.Model):
    data: EventData


@router.post(
    "/events",
    status_code=202,
    response_class=Response,
    responses={202: {"description": "Accepted: the event is stored (the body is empty)"}},
    **scopes.requires(scopes.EVENTS_WRITE),
)
async def create_event(
    body: EventCreateBody,
    request: Request,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> Response:
    """Create an event for a profile, creating or updating the profile. Idempotent per profile, metric
    and unique_id."""
    limits.check_payload_size(request.headers.get("content-length"))
    attrs = body.data.attributes
    profile = attrs.profile.data
    limits.check_properties(attrs.properties, f"{_ATTRS}/properties")
    if profile.attributes.properties:
        limits.check_properties(profile.attributes.properties, f"{_ATTRS}/profile/data/attributes/properties")
    if not profile.id and not profile.attributes.names_someone():
        raise jsonapi.Problem(
            400,
            "A profile identifier is required: email, phone_number, external_id, anonymous_id or id.",
            pointer=f"{_ATTRS}/profile/data/attributes",
        )
    now = svc.clock.now()
    if attrs.time is not None:
        limits.check_time(attrs.time, now, f"{_ATTRS}/time")
    plan = _plan(attrs, now)
    await svc.db.write(lambda tx: plan.record(tx, who.workspace_id, now))
    return Response(status_code=202)


class _Plan:
    """What one accepted event will do, decided before the transaction (pure), run inside it."""

    def __init__(self, attrs: EventAttributes, now: datetime) -> None:
        self.attrs = attrs
        self.profile = attrs.profile.data
        self.identity = self.profile.attributes.identity()
        self.name = events.canonical_name(attrs.metric.data.attributes.name.strip())
        self.occurred_at = attrs.time
        when = attrs.time or now
        self.unique_id = attrs.unique_id or when.astimezone(UTC).replace(microsecond=0).isoformat()
        self.props = dict(attrs.properties)
        self.currency = ecommerce.currency_of(attrs.value_currency, self.props, _ATTRS)
        self.value = ecommerce.value_of(attrs.value, self.props)
        commerce = self.name == events.CHECKOUT_STARTED or self.name in _ORDER_STATUSES
        try:
            self.total_cents = ecommerce.to_cents(self.value, self.currency, f"{_ATTRS}/value")
            self.items = ecommerce.items(self.props, self.currency, f"{_ATTRS}/properties")
        except jsonapi.Problem:
            # A checkout or order needs amounts it can store; a custom event may carry any number (a
            # negative value, say), and simply gets no normalised amount then.
            if commerce:
                raise
            self.total_cents = None
            self.items = ecommerce.items(self.props, None, f"{_ATTRS}/properties", prices=False)

    def _identity(self, tx: Tx, workspace_id: str, now: datetime) -> Identity:
        identity = profiles.complete(tx, workspace_id, self.identity, self.profile.id)
        # An anonymous profile now named with an email or external_id becomes that person, as in Klaviyo.
        return identities.link(tx, workspace_id, identity, now)

    def _auto_id(self) -> str:
        ident = self.identity
        who = [self.profile.id, ident.email and ident.email.lower(), ident.external_id, ident.phone]
        return ecommerce.auto_id([*who, ident.anonymous_id, self.name, self.unique_id])

    def record(self, tx: Tx, workspace_id: str, now: datetime) -> None:
        if self.name == events.CHECKOUT_STARTED:
            self._checkout(tx, workspace_id, now)
        elif self.name in _ORDER_STATUSES:
            self._order(tx, workspace_id, now)
        else:
            self._custom(tx, workspace_id, now)

    def _checkout(self, tx: Tx, workspace_id: str, now: datetime) -> None:
        props = {k: v for k, v in self.props.items() if k not in ("items", "Items")}
        if self.attrs.value is not None:
            props["$value"] = self.attrs.value
        checkout_id = (
            ecommerce.checkout_id(self.props)
            or self.attrs.unique_id
            or ecommerce.first(self.props, ("$event_id",))
            or self._auto_id()
        )
        data = checkouts.CheckoutInput(
            checkout_id=str(checkout_id)[:255],
            customer=self._identity(tx, workspace_id, now),
            currency=self.currency,
            total_cents=self.total_cents,
            checkout_url=ecommerce.checkout_url(self.props),
            items=self.items,
            properties=props,
            source=SOURCE,
            occurred_at=self.occurred_at,
        )
        checkouts.record_checkout(tx, workspace_id, data, now)

    def _order(self, tx: Tx, workspace_id: str, now: datetime) -> None:
        status = _ORDER_STATUSES[self.name]
        order_id = str(ecommerce.order_id(self.props) or self.attrs.unique_id or self._auto_id())[:255]
        existing = order_store.find(tx, workspace_id, order_id)
        total, refund = self.total_cents, None
        if existing is not None:
            if status == "refunded":
                # Klaviyo's Refunded Order carries the amount refunded; the order keeps its total.
                total = existing.total_cents
                if self.total_cents is not None and self.total_cents < existing.total_cents:
                    refund = self.total_cents
            elif total is None:
                total = existing.total_cents
        currency = self.currency or (existing.currency if existing is not None else None) or "USD"
        props = {k: v for k, v in self.props.items() if k not in ("items", "Items")}
        checkout = ecommerce.checkout_id(self.props)
        if checkout is not None:
            props["checkoutId"] = checkout
        if self.attrs.value is not None:
            props["$value"] = self.attrs.value
        data = orders.OrderInput(
            order_id=order_id,
            customer=self._identity(tx, workspace_id, now),
            currency=currency,
            total_cents=total or 0,
            status=status,
            items=self.items,
            properties=props,
            ordered_at=self.occurred_at if status == "placed" else None,
            refund_amount_cents=refund,
            source=SOURCE,
        )
        orders.record_order(tx, workspace_id, data, now)

    def _custom(self, tx: Tx, workspace_id: str, now: datetime) -> None:
        props = dict(self.props)
        if self.attrs.value is not None:
            props["$value"] = self.attrs.value
            props.setdefault("value", self.attrs.value)
        if self.attrs.value_currency:
            props["$value_currency"] = self.currency
        if self.items and isinstance(props.get("items"), list):
            props["items"] = self.items
        if self.total_cents is not None:
            props.setdefault("totalCents", self.total_cents)
        if self.currency is not None:
            props.setdefault("currency", self.currency)
        url = ecommerce.checkout_url(self.props)
        if url is not None:
            props.setdefault("checkoutUrl", url)
        checkout = ecommerce.checkout_id(self.props)
        if checkout is not None:
            props.setdefault("checkoutId", checkout)
        profiles.record_event(
            tx,
            workspace_id,
            self._identity(tx, workspace_id, now),
            name=self.name,
            properties=props,
            unique_id=self.unique_id,
            occurred_at=self.occurred_at,
            now=now,
            source=SOURCE,
        )


def _plan(attrs: EventAttributes, now: datetime) -> _Plan:
    return _Plan(attrs, now)


# -- reading events --------------------------------------------------------------------------------

_EVENT_SORTS = ("datetime", "-datetime", "timestamp", "-timestamp")
_INCLUDES = ("metric", "profile")
_ONE_MICROSECOND = timedelta(microseconds=1)


def event_resource(request: Request, event: event_store.Event) -> dict[str, Any]:
    base = jsonapi.base_url(request)
    relationships = {
        "metric": jsonapi.relationship("metric", metrics.metric_id(event.workspace_id, event.name))
    }
    if event.subscriber_id is not None:
        relationships["profile"] = jsonapi.relationship("profile", event.subscriber_id)
    attributes = {
        "timestamp": int(event.occurred_at.timestamp()),
        "event_properties": event.properties,
        "datetime": jsonapi.iso(event.occurred_at),
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cartback:event:{event.id}")),
    }
    return jsonapi.resource("event", event.id, attributes, f"{base}/api/events/{event.id}", relationships)


def _window(tx: Tx, workspace_id: str, text: str | None) -> event_store.Window:
    """`filter` as an event window: metric_id and profile_id equals, datetime and timestamp bounds."""
    names: tuple[str, ...] | None = None
    subscriber_id = None
    since = until = None
    try:
        for cond in filters.conditions(text) if text else []:
            if cond.op == "has" and cond.field in ("profile", "metric"):
                continue
            if cond.op == "equals" and cond.field in ("metric_id", "profile_id"):
                if not isinstance(cond.value, str):
                    raise filters.FilterError(f"{cond.field} takes a string")
                if cond.field == "metric_id":
                    name = metrics.event_name_of(tx, workspace_id, cond.value)
                    names = (name,) if name is not None and names in (None, (name,)) else ()
                else:
                    subscriber_id = cond.value if subscriber_id in (None, cond.value) else "\x00none"
                continue
            if cond.field in ("datetime", "timestamp") and cond.op in _BOUNDS:
                moment = filters.as_datetime(cond.value)
                if cond.op in ("greater-or-equal", "greater-than"):
                    low = moment + _ONE_MICROSECOND if cond.op == "greater-than" else moment
                    since = low if since is None else max(since, low)
                else:
                    high = moment + _ONE_MICROSECOND if cond.op == "less-or-equal" else moment
                    until = high if until is None else min(until, high)
                continue
            raise filters.FilterError(f"filter {cond.op}({cond.field},...) is not supported on events")
    except filters.FilterError as exc:
        raise jsonapi.Problem(400, f"Invalid filter: {exc}", parameter="filter") from exc
    return event_store.Window(names=names, subscriber_id=subscriber_id, since=since, until=until)


_BOUNDS = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")


def _includes(include: str | None) -> list[str]:
    wanted = [part.strip() for part in (include or "").split(",") if part.strip()]
    unknown = [w for w in wanted if w not in _INCLUDES]
    if unknown:
        raise jsonapi.Problem(
            400, f"Invalid include {', '.join(unknown)}: use {', '.join(_INCLUDES)}", parameter="include"
        )
    return wanted


def _included(
    tx: Tx, request: Request, workspace_id: str, found: list[event_store.Event], wanted: list[str]
) -> list[dict[str, Any]]:
    from cartback.api.klaviyo import metrics as metric_routes
    from cartback.api.klaviyo import profiles as profile_routes

    out: list[dict[str, Any]] = []
    if "metric" in wanted:
        for name in sorted({e.name for e in found}):
            metric = metrics.find(tx, workspace_id, metrics.metric_id(workspace_id, name))
            if metric is not None:
                out.append(metric_routes.metric_resource(request, metric))
    if "profile" in wanted:
        ids = sorted({e.subscriber_id for e in found if e.subscriber_id})
        subs = [s for s in (subscriber_store.find_by_id(tx, workspace_id, i) for i in ids) if s is not None]
        out.extend(profile_routes.resources(tx, request, workspace_id, subs))
    return out


@router.get("/events")
async def get_events(
    request: Request,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    filter: str | None = Query(None, max_length=10_000),
    sort: str | None = Query(None, max_length=50),
    include: str | None = Query(None, max_length=200),
    page_size: int = Query(200, alias="page[size]", ge=1, le=1000),
    page_cursor: str | None = Query(None, alias="page[cursor]", max_length=4000),
    fields_event: str | None = Query(None, alias="fields[event]", max_length=2000),
    fields_metric: str | None = Query(None, alias="fields[metric]", max_length=2000),
    fields_profile: str | None = Query(None, alias="fields[profile]", max_length=2000),
) -> dict[str, Any]:
    """Events of every surface, oldest first (`sort=-datetime`: newest first), `filter` by metric_id,
    profile_id, datetime and timestamp, `page[size]` per page with a `links.next` cursor."""
    if sort is not None and sort not in _EVENT_SORTS:
        raise jsonapi.Problem(400, f"Invalid sort {sort!r}: use {', '.join(_EVENT_SORTS)}", parameter="sort")
    descending = bool(sort and sort.startswith("-"))
    wanted = _includes(include)
    token = jsonapi.page_cursor(page_cursor)
    after = None
    if token is not None:
        at, last_id = jsonapi.decode_cursor(token, 2)
        try:
            after = (filters.as_datetime(at), str(last_id))
        except filters.FilterError as exc:
            raise jsonapi.Problem(
                400, "page[cursor] is not a valid cursor", parameter="page[cursor]"
            ) from exc

    def read(tx: Tx) -> dict[str, Any]:
        window = replace(_window(tx, who.workspace_id, filter), after=after, descending=descending)
        found = event_store.page(tx, who.workspace_id, window, page_size + 1)
        more = len(found) > page_size
        found = found[:page_size]
        cursor = None
        if more and found:
            cursor = jsonapi.encode_cursor([jsonapi.iso(found[-1].occurred_at), found[-1].id])
        included = _included(tx, request, who.workspace_id, found, wanted) if wanted else None
        return jsonapi.collection([event_resource(request, e) for e in found], request, cursor, included)

    return await svc.db.read(read)


@router.get("/events/{event_id}")
async def get_event(
    event_id: str,
    request: Request,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    include: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    wanted = _includes(include)

    def read(tx: Tx) -> dict[str, Any] | None:
        event = event_store.find_by_id(tx, who.workspace_id, event_id)
        if event is None:
            return None
        included = _included(tx, request, who.workspace_id, [event], wanted) if wanted else None
        return jsonapi.document(event_resource(request, event), request, included=included)

    found = await svc.db.read(read)
    if found is None:
        raise jsonapi.Problem(404, f"No event with id {event_id!r}.", parameter="id")
    return found
