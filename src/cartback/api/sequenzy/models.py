"""Request and response shapes shared by several Sequenzy resources, with the SDK's camelCase wire names."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cartback import addresses, errors, headers, money, urls, values
from cartback.core.subscribers import Identity, Subscriber


def check_email(value: str) -> str:
    """One mailbox, in the normal form cartback stores and sends to (`cartback.addresses`)."""
    return addresses.normalise(value)


def _currency(value: str) -> str:
    code = money.currency_code(value)
    if code is None:
        raise ValueError(f"{value[:20]!r} is not an ISO 4217 currency code such as USD")
    return code


def _utc(value: datetime) -> datetime:
    # The SDK sends `.isoformat()` of whatever it was given; a naive time means UTC.
    return values.to_utc(value)


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not an IANA time zone such as America/New_York") from exc
    return value


def check_time(value: datetime | None, now: datetime, field: str) -> None:
    """An event's (or a subscriber's creation) time within the bounds every surface keeps
    (`values.check_time`): the 400 names the field as the SDK sent it."""
    if value is None:
        return
    try:
        values.check_time(value, now)
    except ValueError as exc:
        raise errors.InvalidInput(f"{field}: {exc}") from exc


Email = Annotated[str, AfterValidator(check_email)]
# Values that become mail headers: one line the message builder can encode (`cartback.headers`).
HeaderText = Annotated[str, AfterValidator(headers.check_text)]
Mailbox = Annotated[str, AfterValidator(headers.mailbox)]
# A link or image put in email: an absolute http(s) URL (`cartback.urls`).
WebUrl = Annotated[str, Field(max_length=urls.MAX_LENGTH), AfterValidator(urls.check_web_url)]
UtcDateTime = Annotated[datetime, AfterValidator(_utc)]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
Name = Annotated[str, Field(max_length=255)]
Currency = Annotated[str, AfterValidator(_currency)]
# Strict: "8850" or true is a client bug to report, not an amount to guess at.
Cents = Annotated[int, Field(strict=True, ge=0, le=money.MAX_MINOR_UNITS)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=255)]


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys ignored as the hosted API does."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class CommerceCustomer(WireModel):
    email: Email
    external_id: NonEmpty | None = None
    first_name: str | None = Field(None, max_length=255)
    last_name: str | None = Field(None, max_length=255)
    attributes: dict[str, Any] | None = None

    def identity(self) -> Identity:
        return Identity(
            email=self.email,
            external_id=self.external_id,
            first_name=self.first_name,
            last_name=self.last_name,
            attributes=self.attributes or {},
        )


class CommerceOrderItem(WireModel):
    product_id: NonEmpty
    title: Annotated[str, Field(min_length=1, max_length=1000)]
    quantity: Annotated[int, Field(ge=0, le=1_000_000)]
    variant_id: str | None = None
    variant_title: str | None = None
    sku: str | None = None
    price_cents: Cents | None = None
    image_url: WebUrl | None = None
    url: WebUrl | None = None

    def as_event_item(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class IdentityBody(WireModel):
    """Who a tag or event request is about, with the names and attributes to set on them."""

    email: Email | None = None
    external_id: NonEmpty | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    custom_attributes: dict[str, Any] | None = None

    def identity(self) -> Identity:
        return Identity(
            email=self.email,
            external_id=self.external_id,
            first_name=self.first_name,
            last_name=self.last_name,
            attributes=self.custom_attributes or {},
        )


OPT_IN = {"required": False, "emailQueued": False}


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z`, to the millisecond, as Sequenzy writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def subscriber_json(sub: Subscriber) -> dict[str, Any]:
    """The Sequenzy `Subscriber` object: the one place a subscriber is written for the wire."""
    return {
        "id": sub.id,
        "email": sub.email,
        "firstName": sub.first_name,
        "lastName": sub.last_name,
        "externalId": sub.external_id,
        "phone": sub.phone,
        "phoneCountry": sub.phone_country,
        "status": sub.status,
        "smsStatus": "subscribed" if sub.sms_consent else "not_subscribed",
        "emailProvider": None,
        "tags": list(sub.tags),
        "customAttributes": sub.attributes,
        "timezone": sub.timezone,
        "createdAt": iso(sub.created_at),
        "updatedAt": iso(sub.updated_at),
        "unsubscribedAt": iso(sub.unsubscribed_at),
    }
