"""Segment messages as core ingest actions (`core.ingest`, the path Klaviyo's events take too): the
e-commerce spec events become canonical checkouts and order status changes, `products[]` becomes the
same `items` shape every surface stores, traits become a subscriber."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cartback import addresses, errors, ids, money, urls, values
from cartback.api.segment import models
from cartback.core import checkouts, events, ingest, orders, subscribers

SOURCE = "segment"
NAME_MAX = 255
# Traits that become the subscriber's own fields rather than attributes.
_PROFILE_TRAITS = ("email", "firstName", "first_name", "lastName", "last_name")
_STATUS_OF = {name: status for status, name in events.ORDER_EVENTS.items()}
_VIEWED = {"page": events.PAGE_VIEWED, "screen": events.SCREEN_VIEWED}


def to_message(msg: models.Message, where: str, *, sent_at: datetime | None, now: datetime) -> ingest.Message:
    """`where` names the message in errors (`batch[3]`), so a refused batch says which one was wrong."""
    message_id = msg.messageId or ids.new_id("seg")  # no messageId: nothing to deduplicate by
    if msg.type == "identify":
        action: ingest.Action = ingest.ProfileChange(identity(msg, where))
    elif msg.type == "track":
        action = _track(msg, where, message_id, occurred_at(msg, where, sent_at=sent_at, now=now))
    elif msg.type == "alias" and msg.previousId and msg.userId:
        action = ingest.Alias(previous_id=msg.previousId, user_id=msg.userId)
    elif msg.type in _VIEWED:
        # What was viewed: the call's name and category beside its properties (path, url, title ...).
        named = {k: v for k, v in (("name", msg.name), ("category", msg.category)) if v is not None}
        props = {**(msg.properties or {}), **named}
        occurred = occurred_at(msg, where, sent_at=sent_at, now=now)
        action = _custom(identity(msg, where), _VIEWED[msg.type], props, occurred, message_id)
    elif msg.type == "group" and msg.groupId:
        # The traits describe the group, so they stay on the event; the person learns their groupId.
        who = identity(msg, where)
        who = replace(who, attributes={**who.attributes, "groupId": msg.groupId})
        props = {"groupId": msg.groupId, "traits": dict(msg.traits or {})}
        occurred = occurred_at(msg, where, sent_at=sent_at, now=now)
        action = _custom(who, events.GROUP_JOINED, props, occurred, message_id)
    else:
        action = ingest.Ignored()
    return ingest.Message(action, message_id=message_id, type=msg.type)


def occurred_at(msg: models.Message, where: str, *, sent_at: datetime | None, now: datetime) -> datetime:
    """When it happened, as Segment computes it: `timestamp` when given; else `originalTimestamp`
    corrected for the sender's clock skew by `sentAt`; else now. Never later than now: a clock running
    ahead is not a reason to refuse an event."""
    if msg.timestamp is not None:
        moment, field = msg.timestamp, "timestamp"
    elif msg.originalTimestamp is not None:
        sent = msg.sentAt or sent_at
        field = "originalTimestamp"
        try:
            moment = now - (sent - msg.originalTimestamp) if sent is not None else msg.originalTimestamp
        except OverflowError as exc:
            raise errors.InvalidInput(f"{where}: sentAt and originalTimestamp are too far apart") from exc
    else:
        return now
    moment = min(moment, now)
    try:
        values.check_time(moment, now)
    except ValueError as exc:
        raise errors.InvalidInput(f"{where}.{field}: {exc}") from exc
    return moment


def identity(msg: models.Message, where: str) -> subscribers.Identity:
    """userId is the externalId, anonymousId the anonymous id; the email and names come from the traits
    (identify) or `context.traits` (any call); every other trait becomes an attribute. Both places hold the
    person's traits (RudderStack's SDKs send identify traits only in `context.traits`); where both name a
    trait, the identify's own `traits` win."""
    traits = dict(msg.traits or {}) if msg.type == "identify" else {}
    context_traits = (msg.context or {}).get("traits")
    known = {**(context_traits if isinstance(context_traits, dict) else {}), **traits}
    first = _text(known.get("firstName") or known.get("first_name"), f"{where}.traits.firstName")
    last = _text(known.get("lastName") or known.get("last_name"), f"{where}.traits.lastName")
    full = _text(known.get("name"), f"{where}.traits.name")
    if full and not first and not last:
        first, _, rest = full.strip().partition(" ")
        last = rest.strip() or None
    return subscribers.Identity(
        email=_email(known.get("email"), f"{where}.traits.email"),
        external_id=msg.userId,
        anonymous_id=msg.anonymousId,
        first_name=first or None,
        last_name=last or None,
        attributes={k: v for k, v in known.items() if k not in _PROFILE_TRAITS},
    )


def _track(msg: models.Message, where: str, message_id: str, occurred: datetime) -> ingest.Action:
    name = events.canonical_name((msg.event or "").strip())
    props = dict(msg.properties or {})
    who = identity(msg, where)
    currency = _currency(props.get("currency"), f"{where}.properties.currency")
    unit = currency or "USD"
    products = props.get("products")
    if products is not None and not isinstance(products, list):
        raise errors.InvalidInput(f"{where}.properties.products must be a list")
    items = [_item(p, unit, f"{where}.properties.products[{i}]") for i, p in enumerate(products or [])]
    amount = _first_amount(props, unit, f"{where}.properties")

    if name == events.CHECKOUT_STARTED:
        checkout_id = (
            _id(props.get("checkout_id"), f"{where}.properties.checkout_id")
            or _id(props.get("cart_id"), f"{where}.properties.cart_id")
            or message_id
        )
        url = _url(props.get("checkout_url"), f"{where}.properties.checkout_url")
        return ingest.CheckoutStarted(
            checkouts.CheckoutInput(
                checkout_id=checkout_id,
                customer=who,
                currency=currency or ("USD" if amount is not None else None),
                total_cents=amount,
                checkout_url=url or None,
                items=items,
                properties=props,
                source=SOURCE,
                occurred_at=occurred,
            )
        )

    status = _STATUS_OF.get(name)
    if status is not None:
        order_id = _id(props.get("order_id"), f"{where}.properties.order_id")
        if order_id is None:
            raise errors.InvalidInput(f"{where}.properties.order_id is required for {msg.event!r}")
        order_checkout = _id(props.get("checkout_id"), f"{where}.properties.checkout_id")
        if order_checkout is not None:
            props["checkoutId"] = order_checkout
        if status == "refunded":
            # Some shops send the refunded amount as a negative total.
            amount = _first_amount(props, unit, f"{where}.properties", allow_negative=True)
            amount = abs(amount) if amount is not None else None
        if amount is None and items:
            amount = sum(int(i.get("priceCents") or 0) * int(i.get("quantity") or 0) for i in items)
        # A placed order states its total; Order Refunded's `total` is the amount refunded, and any
        # other status keeps the order's total (core/orders.py).
        placed = status == "placed"
        return ingest.OrderStatusChange(
            orders.OrderInput(
                order_id=order_id,
                customer=who,
                currency=currency,
                total_cents=amount if placed else None,
                amount_cents=None if placed else amount,
                status=status,
                items=items,
                properties=props,
                event_id=message_id,
                occurred_at=occurred,
                source=SOURCE,
            )
        )

    if name == events.PRODUCT_ADDED and products is None:
        # Product Added describes one product with the product's keys at the top level.
        items = [_item(props, unit, f"{where}.properties")]
    if items:
        props["items"] = items
    return _custom(who, name, props, occurred, message_id)


def _custom(
    who: subscribers.Identity, name: str, props: dict[str, Any], occurred: datetime, message_id: str
) -> ingest.CustomEvent:
    """An event of that name, unique by its messageId across the workspace."""
    return ingest.CustomEvent(
        identity=who,
        name=name,
        properties=props,
        occurred_at=occurred,
        unique_id=message_id,
        source=SOURCE,
        global_id=True,
    )


def _item(product: Any, currency: str, where: str) -> dict[str, Any]:
    """A Segment product as the stored item shape: productId, title, quantity, priceCents, imageUrl,
    url (plus sku and variantTitle when given)."""
    if not isinstance(product, dict):
        raise errors.InvalidInput(f"{where} must be an object")
    quantity = product.get("quantity", 1)
    if isinstance(quantity, float) and quantity.is_integer():
        quantity = int(quantity)
    if quantity is None:
        quantity = 1
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= 1_000_000:
        raise errors.InvalidInput(f"{where}.quantity must be a whole number from 0 to 1000000")
    item = {
        "productId": _id(product.get("product_id"), f"{where}.product_id")
        or _id(product.get("sku"), f"{where}.sku"),
        "title": _text(product.get("name"), f"{where}.name", limit=1000),
        "quantity": quantity,
        "priceCents": _cents(product.get("price"), currency, f"{where}.price"),
        "imageUrl": _url(product.get("image_url"), f"{where}.image_url"),
        "url": _url(product.get("url"), f"{where}.url"),
        "sku": _id(product.get("sku"), f"{where}.sku"),
        "variantTitle": _text(product.get("variant"), f"{where}.variant"),
    }
    return {k: v for k, v in item.items() if v is not None}


def _first_amount(
    props: dict[str, Any], currency: str, where: str, *, allow_negative: bool = False
) -> int | None:
    """The order or cart amount: `total` (what the customer pays), else `value`, else `revenue`."""
    for key in ("total", "value", "revenue"):
        if props.get(key) is not None:
            return _cents(props[key], currency, f"{where}.{key}", allow_negative=allow_negative)
    return None


def _cents(value: Any, currency: str, where: str, *, allow_negative: bool = False) -> int | None:
    """Dollars to cents exactly: 64.5 is 6450, not 6449.999..., by way of its decimal text."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise errors.InvalidInput(f"{where} must be a number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise errors.InvalidInput(f"{where} must be a number") from exc
    if not amount.is_finite():
        raise errors.InvalidInput(f"{where} must be a number")
    try:
        return money.to_minor(amount, currency, allow_negative=allow_negative)
    except ValueError as exc:
        raise errors.InvalidInput(f"{where} {exc}") from exc


def _currency(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    code = money.currency_code(value) if isinstance(value, str) else None
    if code is None:
        raise errors.InvalidInput(f"{where} must be an ISO 4217 currency code such as USD")
    return code


def _id(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a string")
    value = value.strip()
    if len(value) > NAME_MAX:
        raise errors.InvalidInput(f"{where} is longer than {NAME_MAX} characters")
    return value or None


def _text(value: Any, where: str, *, limit: int = NAME_MAX) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a string")
    if len(value) > limit:
        raise errors.InvalidInput(f"{where} is longer than {limit} characters")
    return value or None


def _url(value: Any, where: str) -> str | None:
    """A URL that goes into email: absolute http(s), else a 400 naming it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a URL string")
    try:
        return urls.check_web_url(value)
    except urls.InvalidUrl as exc:
        raise errors.InvalidInput(f"{where} {exc}") from None


def _email(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a string")
    try:
        return addresses.normalise(value)
    except addresses.InvalidAddress as exc:
        raise errors.InvalidInput(f"{where}: {exc}") from None
