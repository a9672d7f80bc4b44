"""Request and response shapes shared by several Sequenzy resources, with the SDK's camelCase wire names."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cartback.core.subscribers import Identity


def _email(value: str) -> str:
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in value) or len(value) > 320:
        raise ValueError(f"{value!r} is not a valid email address")
    return value


def _currency(value: str) -> str:
    if len(value) != 3 or not value.isalpha():
        raise ValueError("must be a three-letter ISO 4217 code such as USD")
    return value.upper()


Email = Annotated[str, AfterValidator(_email)]
Currency = Annotated[str, AfterValidator(_currency)]
Cents = Annotated[int, Field(ge=0, le=10**15)]
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
    image_url: str | None = None
    url: str | None = None

    def as_event_item(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)
