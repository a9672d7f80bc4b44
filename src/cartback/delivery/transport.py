"""The transport protocol: how a finished MIME message leaves cartback.

A transport answers every expected outcome with a `Result` value instead of raising, so the sender can
record it and decide on a retry (`smtp.py` for real mail, `outbox.py` to keep messages in the database,
`cartback.testing.MemoryTransport` for tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Status = Literal["sent", "kept", "temporary", "permanent", "unknown"]


@dataclass(frozen=True)
class Result:
    """What became of one send.

    sent: the server took the message. kept: no server was asked; the message stays in the outbox (no
    mail server is configured). temporary: it did not, try again later (4xx, connection errors
    before the message was handed over). permanent: it never will (5xx). unknown: the connection broke
    after the message body went out and before the server's reply, so it may have been taken; the sender
    never retries such a message (at most once beats at least once for marketing mail).
    `stage` is where it happened: connect, mail, rcpt, data.
    """

    status: Status
    code: int | None = None
    text: str = ""
    stage: str = ""

    @classmethod
    def sent(cls, code: int | None = 250, text: str = "") -> Result:
        return cls("sent", code, text, "data")

    @classmethod
    def kept(cls, text: str) -> Result:
        return cls("kept", None, text, "data")

    @classmethod
    def temporary(cls, code: int | None, text: str, stage: str = "") -> Result:
        return cls("temporary", code, text, stage)

    @classmethod
    def permanent(cls, code: int | None, text: str, stage: str = "") -> Result:
        return cls("permanent", code, text, stage)

    @classmethod
    def unknown(cls, text: str, stage: str = "data") -> Result:
        return cls("unknown", None, text, stage)

    def describe(self) -> str:
        return " ".join(p for p in (str(self.code) if self.code else "", self.text) if p) or self.status


class Transport(Protocol):
    """Something that can send a message. `name` is what `message_delivery.transport` records;
    `concurrency` is how many sends may run at once; `atomic` means "sending" is a database write the
    sender does itself, in the same transaction as the outcome (the outbox), so there is no window in
    which a crash leaves the fate of a message unknown."""

    name: str
    concurrency: int
    atomic: bool

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result: ...

    async def close(self) -> None: ...
