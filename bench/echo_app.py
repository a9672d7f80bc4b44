"""The baseline: a bare FastAPI app that validates the same checkout body as cartback's
POST /api/v1/checkouts and answers the same response shape, without storing anything.

    uvicorn --loop uvloop --http httptools --no-access-log bench.echo_app:app
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

NonEmpty = Annotated[str, Field(min_length=1, max_length=255)]
Cents = Annotated[int, Field(ge=0, le=10**15)]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Customer(Wire):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320)]
    external_id: NonEmpty | None = None
    first_name: str | None = Field(None, max_length=255)
    last_name: str | None = Field(None, max_length=255)
    attributes: dict[str, Any] | None = None


class Item(Wire):
    product_id: NonEmpty
    title: Annotated[str, Field(min_length=1, max_length=1000)]
    quantity: Annotated[int, Field(ge=0, le=1_000_000)]
    variant_id: str | None = None
    variant_title: str | None = None
    sku: str | None = None
    price_cents: Cents | None = None
    image_url: str | None = None
    url: str | None = None


class Checkout(Wire):
    checkout_id: NonEmpty
    customer: Customer
    total_cents: Cents | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None
    checkout_url: str | None = Field(None, max_length=4000)
    items: list[Item] | None = Field(None, max_length=1000)
    properties: dict[str, Any] | None = None


class Response(BaseModel):
    success: bool = True
    checkoutId: str
    subscriberId: str
    eventId: str


app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/checkouts", response_model=Response)
async def checkout(body: Checkout) -> Response:
    return Response(
        checkoutId=body.checkout_id,
        subscriberId="sub_01JD0000000000000000000000",
        eventId="evt_01JD0000000000000000000000",
    )
