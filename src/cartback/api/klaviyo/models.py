"""Request shapes shared by the Klaviyo resources, with Klaviyo's member names. Unknown members are
ignored, as Klaviyo does; a wrong `type` or a missing required member is a 400 pointing at it."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cartback import addresses, values
from cartback.core.subscribers import Identity

_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")


def _email(value: str) -> str:
    # One mailbox, in the normal form cartback stores and sends to; anything else is a 400 at its pointer.
    return addresses.normalise(value)


def _phone(value: str) -> str:
    # Klaviyo takes E.164 only ("+15005550006"); spaces, dashes and brackets are shed first.
    cleaned = re.sub(r"[\s\-().]", "", value)
    if not _PHONE.match(cleaned):
        raise ValueError(f"Invalid phone number {value!r}: use E.164 format, such as +15005550006")
    return cleaned


def _utc(value: datetime) -> datetime:
    # A time without an offset is UTC, as Klaviyo reads it.
    return values.to_utc(value)


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Phone = Annotated[str, Field(max_length=64), AfterValidator(_phone)]
Identifier = Annotated[str, Field(min_length=1, max_length=255)]
Text = Annotated[str, Field(max_length=255)]
UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Location(Model):
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    country: str | None = None
    region: str | None = None
    zip: str | None = None
    timezone: str | None = None
    ip: str | None = None
    latitude: float | str | None = None
    longitude: float | str | None = None


# Profile attributes without a subscriber column are kept in its attributes under Klaviyo's own
# special-property names, and read back from there.
EXTRA_FIELDS = {
    "organization": "$organization",
    "title": "$title",
    "locale": "$locale",
    "image": "$image",
    "location": "$location",
}


class ProfileAttributes(Model):
    email: Email | None = None
    phone_number: Phone | None = None
    external_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    organization: str | None = None
    locale: str | None = None
    title: str | None = None
    image: str | None = None
    location: Location | None = None
    properties: dict[str, Any] | None = None

    def names_someone(self) -> bool:
        return bool(self.email or self.phone_number or self.external_id or self.anonymous_id)

    def extras(self) -> dict[str, Any]:
        """The non-column attributes that were sent, under their stored names."""
        out: dict[str, Any] = {}
        for name, key in EXTRA_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                out[key] = value.model_dump(exclude_none=True) if isinstance(value, Location) else value
        return out

    def identity(self) -> Identity:
        return Identity(
            email=self.email,
            external_id=self.external_id,
            first_name=self.first_name or None,
            last_name=self.last_name or None,
            attributes={**(self.properties or {}), **self.extras()},
            phone=self.phone_number,
            anonymous_id=self.anonymous_id,
        )


class PatchProperties(Model):
    append: dict[str, Any] | None = None
    unappend: dict[str, Any] | None = None
    unset: str | list[str] | None = None


class ProfileMeta(Model):
    patch_properties: PatchProperties | None = None


class ProfileData(Model):
    type: Literal["profile"]
    id: Identifier | None = None
    attributes: ProfileAttributes = Field(default_factory=ProfileAttributes)
    meta: ProfileMeta | None = None


class ProfileBody(Model):
    """POST /api/profiles and /api/profile-import."""

    data: ProfileData
