"""Run the real sender duty once over what is queued, for tests that drive the app in-process without its
worker (tests/integration/test_sender.py covers the sender itself)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cartback import metrics
from cartback.core.clock import Clock
from cartback.delivery.transport import Result, Transport
from cartback.scheduler import mail_sender
from cartback.store.db import Database
from cartback.testing import MemoryTransport


@dataclass
class SenderHost:
    """What the sender duty uses of the worker."""

    db: Database
    clock: Clock
    owner: str = "test-sender"
    lease: timedelta = timedelta(seconds=60)
    batch_size: int = 200
    duties: list[Any] = field(default_factory=list)
    stopping: bool = False
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)


def deliver(url: str, clock: Clock, transport: Transport) -> int:
    """One round of the sender over the database at `url`, in an event loop of its own; returns the
    messages it handled (on a database other tests share, other workspaces' too). Connections the
    transport pooled are closed at the end."""
    duty = mail_sender.Sender(transport, public_url="https://shop.example.com")

    async def main() -> int:
        host = SenderHost(Database(url), clock)
        await host.db.start()
        try:
            return int(await duty.duty(host))
        finally:
            await transport.close()
            await host.db.stop()

    return asyncio.run(main())


class Refusing(MemoryTransport):
    """Accepts every message but those to the addresses given, which it refuses for good."""

    def __init__(self, refused: set[str]) -> None:
        super().__init__()
        self.refused = refused

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        if set(recipients) & self.refused:
            self.calls += 1
            return Result.permanent(554, "5.7.1 rejected by policy", "data")
        return await super().send(envelope_from, recipients, mime)
