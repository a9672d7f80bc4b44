"""What every platform's mapper needs: the body as a JSON object, its fields checked and turned into the
values cartback stores (exact minor units, one address form, web URLs), and the base64 HMAC-SHA256
signature Shopify and WooCommerce both send."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from cartback import addresses, errors, money, urls, values

ID_MAX = 255
TEXT_MAX = 1000


def verify_base64_hmac(body: bytes, signature: str | None, secrets: tuple[str, ...], header: str) -> None:
    """The body's HMAC-SHA256 under one of the secrets, base64 encoded, compared in constant time."""
    if not signature:
        raise errors.Unauthorized(f"missing {header}")
    given = signature.strip().encode()
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        if hmac.compare_digest(expected, given):
            return
    raise errors.Unauthorized(f"{header} does not match the body")


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidInput(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise errors.InvalidInput("the body must be a JSON object")
    return data


def obj(value: Any, where: str) -> dict[str, Any]:
    """An object field; absent or null is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidInput(f"{where} must be an object")
    return value


def array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidInput(f"{where} must be a list")
    return value


def ident(value: Any, where: str) -> str | None:
    """An id, given as a string or a whole number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise errors.InvalidInput(f"{where} must be a string or a whole number")
    text = str(value).strip()
    if len(text) > ID_MAX:
        raise errors.InvalidInput(f"{where} is longer than {ID_MAX} characters")
    return text or None


def text(value: Any, where: str, limit: int = TEXT_MAX) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a string")
    if len(value) > limit:
        raise errors.InvalidInput(f"{where} is longer than {limit} characters")
    return value


def quantity(value: Any, where: str) -> int:
    if value is None:
        return 1
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise errors.InvalidInput(f"{where} must be a whole number from 0 to 1000000")
    return value


def currency(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    code = money.currency_code(value) if isinstance(value, str) else None
    if code is None:
        raise errors.InvalidInput(f"{where} must be an ISO 4217 currency code such as USD")
    return code


def decimal_minor(value: Any, unit: str | None, where: str) -> int | None:
    """A decimal amount in major units ("54.00", as the platforms send) in exact minor units."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise errors.InvalidInput(f"{where} must be a decimal amount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise errors.InvalidInput(f"{where} must be a decimal amount") from None
    if not amount.is_finite():
        raise errors.InvalidInput(f"{where} must be a decimal amount")
    try:
        return money.to_minor(amount, unit or "USD")
    except ValueError as exc:
        raise errors.InvalidInput(f"{where} {exc}") from None


def minor(value: Any, where: str) -> int | None:
    """An amount already in minor units (Stripe's, BigCommerce's cents)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= money.MAX_MINOR_UNITS:
        raise errors.InvalidInput(f"{where} must be a whole amount in minor units")
    return value


def moment(value: Any, where: str) -> datetime | None:
    """An ISO 8601 time with its offset (`2026-11-30T19:00:00-05:00`), in UTC; one without an offset is
    taken as UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise errors.InvalidInput(f"{where} must be an ISO 8601 time")
    try:
        return values.to_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except ValueError:
        raise errors.InvalidInput(f"{where} must be an ISO 8601 time") from None


def web_url(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a URL string")
    try:
        return urls.check_web_url(value)
    except urls.InvalidUrl as exc:
        raise errors.InvalidInput(f"{where} {exc}") from None


def email(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise errors.InvalidInput(f"{where} must be a string")
    try:
        return addresses.normalise(value)
    except addresses.InvalidAddress as exc:
        raise errors.InvalidInput(f"{where}: {exc}") from None


def item(
    *,
    product_id: str | None,
    title: str | None,
    qty: int,
    price_cents: int | None,
    sku: str | None = None,
    variant: str | None = None,
    image_url: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """The item shape every surface stores (productId, title, quantity, priceCents, ...)."""
    shaped = {
        "productId": product_id or sku,
        "title": title,
        "quantity": qty,
        "priceCents": price_cents,
        "imageUrl": image_url,
        "url": url,
        "sku": sku,
        "variantTitle": variant,
    }
    return {k: v for k, v in shaped.items() if v is not None}
