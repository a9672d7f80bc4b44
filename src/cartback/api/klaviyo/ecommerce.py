"""Klaviyo's e-commerce property conventions, turned into cartback's one event shape (CONTRACT.md, "One
event model"): `items[]` with title, quantity, priceCents, imageUrl, url, productId; `checkoutUrl`;
`totalCents`; `currency`; `checkoutId`. Klaviyo sends amounts in major units (`64.5`), cartback keeps
cents; the original keys stay beside the normalised ones so nothing a template used is lost.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any

from cartback import money, urls
from cartback.api.klaviyo import jsonapi

_ITEM_KEYS = {
    "title": ("title", "ProductName", "Name", "name", "product_name"),
    "productId": ("productId", "ProductID", "ProductId", "product_id", "id"),
    "sku": ("sku", "SKU"),
    "imageUrl": ("imageUrl", "ImageURL", "ImageUrl", "image_url"),
    "url": ("url", "ProductURL", "ProductUrl", "product_url"),
}
# Each spelling of a field an item may use, and its rank: where an item has several, the first listed wins.
_ITEM_ALIASES = {
    alias: (field, rank)
    for field, keys in {
        **_ITEM_KEYS,
        "quantity": ("quantity", "Quantity"),
        "price": ("ItemPrice", "Price", "price"),
    }.items()
    for rank, alias in enumerate(keys)
}
_CHECKOUT_URL_KEYS = ("checkout_url", "CheckoutURL", "checkoutUrl", "$checkout_url")
_CURRENCY_KEYS = ("currency", "Currency", "value_currency", "$currency_code", "currency_code")
_VALUE_KEYS = ("$value", "value", "Value")
_CHECKOUT_ID_KEYS = ("checkout_id", "cart_id", "checkoutId", "CheckoutID", "cartId")
_ORDER_ID_KEYS = ("order_id", "OrderId", "OrderID", "orderId")


def first(props: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = props.get(key)
        if value not in (None, ""):
            return value
    return None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def to_cents(value: Any, currency: str | None, pointer: str) -> int | None:
    """64.5 USD -> 6450; 6450 JPY -> 6450. None when the value is not a number."""
    number = _number(value)
    if number is None:
        return None
    try:
        return money.to_minor(number, currency)
    except ValueError as exc:
        raise jsonapi.Problem(400, f"The amount {value} is out of range: {exc}.", pointer=pointer) from exc


def currency_of(value_currency: str | None, props: dict[str, Any], attrs: str) -> str | None:
    """The event's ISO 4217 currency: `value_currency`, else a conventional property; an error points at
    whichever it was, under the event's attributes at `attrs`."""
    raw: Any = value_currency
    pointer = f"{attrs}/value_currency"
    if not raw:
        key = next((k for k in _CURRENCY_KEYS if props.get(k) not in (None, "")), None)
        if key is None:
            return None
        raw = props[key]
        pointer = f"{attrs}/properties/{key}"
    code = money.currency_code(raw) if isinstance(raw, str) else None
    if code is None:
        raise jsonapi.Problem(
            400, f"Invalid currency {str(raw)[:20]!r}: use an ISO 4217 code such as USD.", pointer=pointer
        )
    return code


def value_of(value: float | None, props: dict[str, Any]) -> Any:
    """The event's value: the top-level `value`, else the conventional properties."""
    return value if value is not None else first(props, _VALUE_KEYS)


def _first_key(props: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if props.get(key) not in (None, "")), None)


def _web_url(value: Any, pointer: str) -> str:
    """A URL that goes into email: absolute http(s), else a 400 at its pointer."""
    try:
        if not isinstance(value, str):
            raise urls.InvalidUrl("must be an absolute http(s) URL string")
        return urls.check_web_url(value)
    except urls.InvalidUrl as exc:
        raise jsonapi.Problem(400, f"Invalid URL: {exc}.", pointer=pointer) from None


def checkout_url(props: dict[str, Any], pointer: str) -> str | None:
    """The checkout link (`checkout_url` and its spellings), checked: it is put in the email."""
    key = _first_key(props, _CHECKOUT_URL_KEYS)
    return _web_url(props[key], f"{pointer}/{key}") if key is not None else None


def checkout_id(props: dict[str, Any]) -> str | None:
    found = first(props, _CHECKOUT_ID_KEYS)
    return str(found) if found is not None else None


def order_id(props: dict[str, Any]) -> str | None:
    found = first(props, _ORDER_ID_KEYS)
    return str(found) if found is not None else None


def _quantity(value: Any) -> int | float | None:
    if type(value) is int:  # the usual case, and what the general one would make of it
        return value
    number = _number(value)
    if number is None:
        return None
    return int(number) if number == number.to_integral_value() else float(number)


def item(raw: Any, currency: str | None, pointer: str, *, prices: bool = True) -> dict[str, Any]:
    """One line item: the original keys, plus the normalised ones (`prices=False`: no priceCents)."""
    if not isinstance(raw, dict):
        return {"title": str(raw)} if raw not in (None, "") else {}
    # One pass over the item's own keys finds every field's preferred spelling: a checkout carries items
    # by the dozen, and asking for each spelling of each field in turn cost several times more.
    found: dict[str, tuple[int, str]] = {}
    for key, value in raw.items():
        alias = _ITEM_ALIASES.get(key)
        if alias is None or value is None or value == "":
            continue
        field, rank = alias
        best = found.get(field)
        if best is None or rank < best[0]:
            found[field] = (rank, key)
    out = dict(raw)
    for field in _ITEM_KEYS:
        if field not in found:
            continue
        key = found[field][1]
        value = raw[key]
        if field in ("imageUrl", "url"):
            value = _web_url(value, f"{pointer}/{key}")
        out[field] = str(value) if field == "productId" else value
    quantity = _quantity(raw[found["quantity"][1]]) if "quantity" in found else None
    if quantity is not None:
        out["quantity"] = quantity
    if not prices:
        return out
    if isinstance(raw.get("priceCents"), int) and not isinstance(raw.get("priceCents"), bool):
        out["priceCents"] = raw["priceCents"]
    elif "price" in found:
        price = to_cents(raw[found["price"][1]], currency, pointer + "/ItemPrice")
        if price is not None:
            out["priceCents"] = price
    return out


def items(
    props: dict[str, Any], currency: str | None, pointer: str, *, prices: bool = True
) -> list[dict[str, Any]]:
    """`items` (Klaviyo's item keys or cartback's), else one item per `item_names` entry, so a filter on
    `items[].title` works either way."""
    raw = props.get("items") if "items" in props else props.get("Items")
    if isinstance(raw, list) and raw:
        out = [item(entry, currency, f"{pointer}/items/{i}", prices=prices) for i, entry in enumerate(raw)]
        return [entry for entry in out if entry]
    names = props.get("item_names") if "item_names" in props else props.get("ItemNames")
    if isinstance(names, list):
        return [{"title": str(name)} for name in names if name not in (None, "")]
    return []


def auto_id(parts: list[str | None]) -> str:
    """A stable id for a checkout or order the event did not name, derived from who and when (to the
    second), the way Klaviyo derives a missing unique_id from the time."""
    digest = hashlib.sha256("\x00".join(p or "" for p in parts).encode()).hexdigest()[:24]
    return f"auto_{digest}"
