"""A real SMTP server for tests and benchmarks (aiosmtpd): keeps what it receives, or discards it, and can
be scripted to refuse recipients or defer messages.

In-process: `with SmtpSink(...) as sink:` runs it on its own thread and event loop; `sink.port`,
`sink.received`. As a process (`python tests/smtp_sink.py PORT`): a discarding sink, as in
the benchmarks; it prints `ready` once listening.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Handler:
    """`rcpt_reply(address)` may return a refusal such as "550 5.1.1 User unknown"; `data_reply(rcpt_tos)`
    may return another answer to DATA than 250; `data_replies` are returned, in order, to the next DATA
    commands; `delay` seconds are slept per message before answering DATA. `rcpts` counts the RCPT
    commands per address; `quits` counts the QUIT commands (connections a client closed politely)."""

    rcpt_reply: Callable[[str], str | None] | None = None
    data_reply: Callable[[list[str]], str | None] | None = None
    data_replies: list[str] = field(default_factory=list)
    rcpts: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    keep: bool = True
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    quits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            self.rcpts[address] = self.rcpts.get(address, 0) + 1
        refusal = self.rcpt_reply(address) if self.rcpt_reply else None
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.attempts += 1
            if self.data_replies:
                return self.data_replies.pop(0)
            reply = self.data_reply(list(envelope.rcpt_tos)) if self.data_reply else None
            if reply:
                return reply
            if self.keep:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            else:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), b""))
        return "250 OK queued"


class _Controller(Controller):
    """Keeps the sessions it serves, so that stopping closes connections a client still holds open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: list[Any] = []

    def factory(self) -> Any:
        session = super().factory()
        self.sessions.append(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        def close_all() -> None:
            for session in self.sessions:
                if session.transport is not None:
                    session.transport.close()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(close_all)
            time.sleep(0.05)
        super().stop(no_assert)


class SmtpSink:
    def __init__(self, port: int = 0, **handler: Any) -> None:
        self.handler = Handler(**handler)
        self._port = port
        self.controller: _Controller | None = None

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=0"

    def __enter__(self) -> SmtpSink:
        if not self._port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self._port = int(s.getsockname()[1])
        self.controller = _Controller(self.handler, hostname="127.0.0.1", port=self._port, ready_timeout=10)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.controller is not None
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"the sink got {len(self.received)} message(s), expected {count}")


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    sink = SmtpSink(port, keep=False)
    with sink:
        print("ready", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
