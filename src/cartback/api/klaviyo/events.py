"""POST /api/events (create_event, 202 with no body) and GET /api/events (get_events, get_event).

The metric names of CONTRACT.md's event model become canonical events through the same core paths as
Sequenzy's: "Started Checkout" is a checkout (`core.checkouts`, snapshot and one
ecommerce.checkout_started), "Placed/Cancelled/Refunded/Fulfilled Order" are order statuses
(`core.orders`). Any other metric is a custom event of that name. The event becomes one core action
(`core.ingest`), applied as Segment's calls are. A 202 means the event is committed.

`unique_id` is the idempotency key, per profile and metric as Klaviyo has it; without one Klaviyo uses
the event time to the second, and so does cartback. A checkout is identified by its `checkout_id` or
`cart_id` property, else the unique_id; an order by its `order_id` / `OrderId` property, else the
unique_id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field, model_validator
from starlette.responses import Response

from cartback.api import deps, lean, scopes
from cartback.api.klaviyo import AUTH_SCHEMES, ecommerce, filters, jsonapi, limits, models, principal
from cartback.api.klaviyo import attributions as attribution_routes
from cartback.core import attribution, checkouts, event_pages, events, ingest, metrics, orders

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
    now = svc.clock.now()
    message = _accepted(body, request.headers.get("content-length"), now)
    return await _store(who, message, now, svc)


def _accepted(body: EventCreateBody, content_length: str | None, now: datetime) -> ingest.Message:
    """What the event does, once every check before the write passed (else a Problem to answer)."""
    limits.check_payload_size(content_length)
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
    if attrs.time is not None:
        limits.check_time(attrs.time, now, f"{_ATTRS}/time")
    return ingest.Message(to_action(attrs, now))


async def _store(who: deps.Principal, message: ingest.Message, now: datetime, svc: deps.Services) -> Response:
    await svc.db.write_each(ingest.apply_many, ingest.Request(who.workspace_id, [message], now))
    return Response(status_code=202)


# The `revision` header as the route's dependency accepts it (klaviyo.REVISION_PATTERN), in ASCII digits.
_REVISION = re.compile(rb"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:\.pre)?")


async def _lean_create(
    who: deps.Principal, payload: dict[str, Any], svc: deps.Services, headers: lean.Headers
) -> Response | None:
    """create_event without FastAPI's request handling (api/lean.py): the same model, the same checks,
    the same write and answer. Whatever a check refuses is answered by the FastAPI route."""
    revision = lean.header(headers, b"revision")
    if revision is None or _REVISION.fullmatch(revision) is None:
        return None
    content_length = lean.header(headers, b"content-length")
    now = svc.clock.now()
    try:
        body = EventCreateBody.model_validate(payload)
        message = _accepted(body, None if content_length is None else content_length.decode("latin-1"), now)
    except Exception:  # a 400 or anything unforeseen: the FastAPI route answers it, as it would have
        return None
    return await _store(who, message, now, svc)


def lean_routes(prefix: str) -> list[lean.LeanRoute]:
    return [
        lean.LeanRoute(
            prefix + "/events",
            "POST",
            scopes.EVENTS_WRITE,
            _lean_create,
            schemes=AUTH_SCHEMES,
            media_types=(b"application/json", jsonapi.MEDIA_TYPE.encode()),
        )
    ]


def to_action(attrs: EventAttributes, now: datetime) -> ingest.Action:
    """What one accepted event does, decided before the transaction: a checkout, an order status change
    or a custom event (core/ingest.py applies it)."""
    profile = attrs.profile.data
    identity = profile.attributes.identity()
    name = events.canonical_name(attrs.metric.data.attributes.name.strip())
    when = attrs.time or now
    unique_id = attrs.unique_id or when.astimezone(UTC).replace(microsecond=0).isoformat()
    props = dict(attrs.properties)
    currency = ecommerce.currency_of(attrs.value_currency, props, _ATTRS)
    value = ecommerce.value_of(attrs.value, props)
    checkout_url = ecommerce.checkout_url(props, f"{_ATTRS}/properties")
    commerce = name == events.CHECKOUT_STARTED or name in _ORDER_STATUSES
    try:
        total_cents = ecommerce.to_cents(value, currency, f"{_ATTRS}/value")
        items = ecommerce.items(props, currency, f"{_ATTRS}/properties")
    except jsonapi.Problem:
        # A checkout or order needs amounts it can store; a custom event may carry any number (a
        # negative value, say), and simply gets no normalised amount then.
        if commerce:
            raise
        total_cents = None
        items = ecommerce.items(props, None, f"{_ATTRS}/properties", prices=False)

    def auto_id() -> str:
        who = [profile.id, identity.email and identity.email.lower(), identity.external_id, identity.phone]
        return ecommerce.auto_id([*who, identity.anonymous_id, name, unique_id])

    if name == events.CHECKOUT_STARTED:
        kept = {k: v for k, v in props.items() if k not in ("items", "Items")}
        if attrs.value is not None:
            kept["$value"] = attrs.value
        checkout_id = (
            ecommerce.checkout_id(props)
            or attrs.unique_id
            or ecommerce.first(props, ("$event_id",))
            or auto_id()
        )
        started = checkouts.CheckoutInput(
            checkout_id=str(checkout_id)[:255],
            customer=identity,
            currency=currency,
            total_cents=total_cents,
            checkout_url=checkout_url,
            items=items,
            properties=kept,
            source=SOURCE,
            occurred_at=attrs.time,
        )
        return ingest.CheckoutStarted(started, profile_id=profile.id)

    if name in _ORDER_STATUSES:
        status = _ORDER_STATUSES[name]
        kept = {k: v for k, v in props.items() if k not in ("items", "Items")}
        order_checkout = ecommerce.checkout_id(props)
        if order_checkout is not None:
            kept["checkoutId"] = order_checkout
        if attrs.value is not None:
            kept["$value"] = attrs.value
        order = orders.OrderInput(
            order_id=str(ecommerce.order_id(props) or attrs.unique_id or auto_id())[:255],
            customer=identity,
            currency=currency,
            # A placed order states its total; any other status carries an amount: Refunded Order's is
            # the amount refunded (core/orders.py).
            total_cents=total_cents if status == "placed" else None,
            amount_cents=None if status == "placed" else total_cents,
            status=status,
            items=items,
            properties=kept,
            event_id=unique_id,
            occurred_at=attrs.time,
            source=SOURCE,
        )
        return ingest.OrderStatusChange(order, profile_id=profile.id)

    custom = dict(props)
    if attrs.value is not None:
        custom["$value"] = attrs.value
        custom.setdefault("value", attrs.value)
    if attrs.value_currency:
        custom["$value_currency"] = currency
    if items and isinstance(custom.get("items"), list):
        custom["items"] = items
    if total_cents is not None:
        custom.setdefault("totalCents", total_cents)
    if currency is not None:
        custom.setdefault("currency", currency)
    url = checkout_url
    if url is not None:
        custom.setdefault("checkoutUrl", url)
    checkout = ecommerce.checkout_id(props)
    if checkout is not None:
        custom.setdefault("checkoutId", checkout)
    return ingest.CustomEvent(
        identity=identity,
        name=name,
        properties=custom,
        occurred_at=attrs.time,
        unique_id=unique_id,
        source=SOURCE,
        profile_id=profile.id,
    )


# -- reading events --------------------------------------------------------------------------------

_EVENT_SORTS = ("datetime", "-datetime", "timestamp", "-timestamp")
# What Klaviyo's spec lists for GET /api/events and /api/events/{id}.
_INCLUDES = ("attributions", "metric", "profile")
_ONE_MICROSECOND = timedelta(microseconds=1)


def event_resource(
    request: Request, event: event_pages.Event, credits: list[attribution.Credit] | None = None
) -> dict[str, Any]:
    """`credits`: the event's attributions, when they were asked for (`include=attributions`)."""
    base = jsonapi.base_url(request)
    relationships = {
        "metric": jsonapi.relationship("metric", metrics.metric_id(event.workspace_id, event.name))
    }
    if event.subscriber_id is not None:
        relationships["profile"] = jsonapi.relationship("profile", event.subscriber_id)
    if credits is not None:
        relationships["attributions"] = jsonapi.to_many("attribution", [c.attribution.id for c in credits])
    attributes = {
        "timestamp": int(event.occurred_at.timestamp()),
        "event_properties": event.properties,
        "datetime": jsonapi.iso(event.occurred_at),
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cartback:event:{event.id}")),
    }
    return jsonapi.resource("event", event.id, attributes, f"{base}/api/events/{event.id}", relationships)


def _window(text: str | None) -> tuple[event_pages.Window, tuple[str, ...]]:
    """`filter` as an event window (profile_id equals, datetime and timestamp bounds) and the metric ids
    that metric_id equals names."""
    metric_ids: list[str] = []
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
                    metric_ids.append(cond.value)
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
    window = event_pages.Window(subscriber_id=subscriber_id, since=since, until=until)
    return window, tuple(metric_ids)


_BOUNDS = ("greater-or-equal", "greater-than", "less-or-equal", "less-than")


def _resources(
    request: Request, page: event_pages.EventPage, wanted: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The events as resources, and what `include` asked for beside them (None: nothing was)."""
    from cartback.api.klaviyo import metrics as metric_routes
    from cartback.api.klaviyo import profiles as profile_routes

    credits = page.credits
    data = [
        event_resource(request, e, None if credits is None else credits.get(e.id, [])) for e in page.events
    ]
    if not wanted:
        return data, None
    included = [metric_routes.metric_resource(request, m) for m in page.metrics]
    included.extend(profile_routes.resources(request, page.profiles))
    for event_credits in (credits or {}).values():
        included.extend(attribution_routes.resource(request, c) for c in event_credits)
    return data, included


def _includes(wanted: list[str]) -> event_pages.Includes:
    return event_pages.Includes(
        attributions="attributions" in wanted, metrics="metric" in wanted, profiles="profile" in wanted
    )


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
    profile_id, datetime and timestamp, `page[size]` per page with `links.next` and `links.prev` cursors;
    `include` any of attributions, metric, profile."""
    if sort is not None and sort not in _EVENT_SORTS:
        raise jsonapi.Problem(400, f"Invalid sort {sort!r}: use {', '.join(_EVENT_SORTS)}", parameter="sort")
    descending = bool(sort and sort.startswith("-"))
    wanted = jsonapi.includes(include, _INCLUDES)
    cursor = jsonapi.read_cursor(page_cursor, 2)
    after = None
    if cursor is not None:
        at, last_id = cursor.key
        try:
            after = (filters.as_datetime(at), str(last_id))
        except filters.FilterError as exc:
            raise jsonapi.Problem(
                400, "page[cursor] is not a valid cursor", parameter="page[cursor]"
            ) from exc
    # A prev cursor reads the rows before it in the opposite order; paginate turns them back.
    backward = cursor is not None and cursor.backward

    window, metric_ids = _window(filter)
    window = replace(window, after=after, descending=descending != backward)
    page = await svc.db.read(
        lambda tx: event_pages.read_page(
            tx, who.workspace_id, window, metric_ids, page_size, _includes(wanted)
        )
    )
    found, following, prev = jsonapi.paginate(
        page.events, page.more, cursor, lambda e: [jsonapi.iso(e.occurred_at), e.id]
    )
    data, included = _resources(request, replace(page, events=found), wanted)
    return jsonapi.collection(data, request, following, included, prev)


@router.get("/events/{event_id}")
async def get_event(
    event_id: str,
    request: Request,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    include: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    wanted = jsonapi.includes(include, _INCLUDES)

    page = await svc.db.read(
        lambda tx: event_pages.read_event(tx, who.workspace_id, event_id, _includes(wanted))
    )
    if page is None:
        raise jsonapi.Problem(404, f"No event with id {event_id!r}.", parameter="id")
    [data], included = _resources(request, page, wanted)
    return jsonapi.document(data, request, included=included)
