"""Segment's wire shapes (the Tracking API spec), with Segment's own field names.

Unknown keys are ignored, as Segment does. What the official client cannot send (a message without
userId or anonymousId, a track without an event name) is refused here, so the whole batch gets one 400
before anything is written."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from cartback import values

MessageType = Literal["track", "identify", "alias", "page", "screen", "group"]
# Segment documents 500 KB per batch and 32 KB per message; a batch of tiny messages stays far below this.
MAX_BATCH = 2500


def _id(value: Any) -> Any:
    """Ids arrive as strings, but Segment accepts numbers (the client stringifies them); blank is none."""
    if isinstance(value, bool):
        return value  # refused by the str type below
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _utc(value: datetime) -> datetime:
    # The client writes isoformat() with an offset; a naive time is taken as UTC.
    return values.to_utc(value)


Id = Annotated[str, BeforeValidator(_id), Field(max_length=255)]
Time = Annotated[datetime, AfterValidator(_utc)]


class Message(BaseModel):
    """One call: track, identify, alias, page, screen or group."""

    model_config = ConfigDict(extra="ignore")

    type: MessageType
    messageId: Id | None = None
    userId: Id | None = None
    anonymousId: Id | None = None
    event: Annotated[str, Field(max_length=255)] | None = None
    previousId: Id | None = None
    groupId: Id | None = None
    # page and screen: what was viewed.
    name: Annotated[str, Field(max_length=1000)] | None = None
    category: Annotated[str, Field(max_length=1000)] | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: Time | None = None
    originalTimestamp: Time | None = None
    sentAt: Time | None = None

    @model_validator(mode="after")
    def _required_per_type(self) -> Message:
        if self.type == "alias":
            if not self.userId or not self.previousId:
                raise ValueError("an alias needs userId and previousId")
        elif not self.userId and not self.anonymousId:
            raise ValueError(f"a {self.type} needs a userId or an anonymousId")
        if self.type == "track" and not (self.event or "").strip():
            raise ValueError("a track needs an event name")
        if self.type == "group" and not self.groupId:
            raise ValueError("a group needs a groupId")
        return self


class Batch(BaseModel):
    """POST /v1/batch, all the official client ever sends."""

    model_config = ConfigDict(extra="ignore")

    batch: Annotated[list[Message], Field(max_length=MAX_BATCH)]
    writeKey: str | None = None
    sentAt: Time | None = None
    context: dict[str, Any] | None = None


class Single(Message):
    """POST /v1/track, /v1/identify, ...: one message at the top level; the path says its type."""

    writeKey: str | None = None

    @staticmethod
    def typed(data: Any, type_: str) -> Any:
        # The path names the type; a `type` in the body is ignored, as Segment does.
        return {**data, "type": type_} if isinstance(data, dict) else data


class TrackBody(Single):
    @model_validator(mode="before")
    @classmethod
    def _is_track(cls, data: Any) -> Any:
        return cls.typed(data, "track")


class IdentifyBody(Single):
    @model_validator(mode="before")
    @classmethod
    def _is_identify(cls, data: Any) -> Any:
        return cls.typed(data, "identify")


class AliasBody(Single):
    @model_validator(mode="before")
    @classmethod
    def _is_alias(cls, data: Any) -> Any:
        return cls.typed(data, "alias")


class PageBody(Single):
    @model_validator(mode="before")
    @classmethod
    def _is_page(cls, data: Any) -> Any:
        return cls.typed(data, "page")


class ScreenBody(Single):
    @model_validator(mode="before")
    @classmethod
    def _is_screen(cls, data: Any) -> Any:
        return cls.typed(data, "screen")


class GroupBody(Single):
    @model_validator(mode="before")
    @classmethod
    def _is_group(cls, data: Any) -> Any:
        return cls.typed(data, "group")


class Accepted(BaseModel):
    """Segment answers every accepted call so; the client reads only the status."""

    success: bool = True
