"""The SMTP transport (aiosmtplib): a small pool of reused connections, at most `concurrency` sends at once.

`CARTBACK_SMTP_URL` is `smtp://[user:pass@]host[:port]` (STARTTLS when the server offers it), with
`?starttls=1` to require STARTTLS or `?starttls=0` to never try it, or `smtps://...` for TLS from the first
byte (port 465 by default). `?verify=0` accepts any certificate (a local relay with a self-signed one).

Replies are sorted the SMTP way: 2xx sent, 4xx temporary, 5xx permanent; a connection that fails before
the message body went out is temporary. A connection lost during DATA (after the body, before the reply)
leaves the fate of the message unknown: it may have been taken, so it is reported, not retried.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from cartback import addresses
from cartback.delivery.transport import Result

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# A pooled connection idle longer than this is closed and opened again rather than trusted: servers drop
# idle clients after a while (Postfix: 300 s), often silently.
IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    # None: STARTTLS if the server offers it; True: required; False: never.
    start_tls: bool | None
    verify: bool

    def describe(self) -> str:
        """For logs: the URL without the password."""
        scheme = "smtps" if self.use_tls else "smtp"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def _flag(query: dict[str, list[str]], name: str) -> bool | None:
    if name not in query:
        return None
    value = query[name][-1].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"CARTBACK_SMTP_URL: {name}={value!r} must be 1 or 0")


def parse_url(url: str) -> SmtpConfig:
    """Parse and check CARTBACK_SMTP_URL; a ValueError says what is wrong (Settings stops start-up)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("CARTBACK_SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("CARTBACK_SMTP_URL has no host: smtp://[user:pass@]host:port")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"CARTBACK_SMTP_URL has a bad port: {exc}") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls", "verify"}
    if unknown:
        raise ValueError(f"CARTBACK_SMTP_URL: unknown option(s) {', '.join(sorted(unknown))}")
    use_tls = parts.scheme == "smtps"
    start_tls = _flag(query, "starttls")
    if use_tls and start_tls:
        raise ValueError("CARTBACK_SMTP_URL: smtps:// is TLS already; starttls=1 is for smtp://")
    if use_tls:
        start_tls = False
    verify = _flag(query, "verify")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and not username:
        raise ValueError("CARTBACK_SMTP_URL has a password but no user name")
    return SmtpConfig(
        host=parts.hostname,
        port=port or (465 if use_tls else 587 if start_tls else 25),
        username=username,
        password=password,
        use_tls=use_tls,
        start_tls=start_tls,
        verify=verify is not False,
    )


@dataclass
class _Conn:
    client: aiosmtplib.SMTP
    last_used: float


class SmtpTransport:
    name = "smtp"
    atomic = False

    def __init__(self, config: SmtpConfig, *, concurrency: int = 4, timeout: float = 30.0) -> None:
        self.config = config
        self.concurrency = concurrency
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[_Conn] = []
        # Called with the seconds each send took once it had a connection slot (the SMTP latency metric).
        self.observe: Callable[[float], None] | None = None

    @classmethod
    def from_url(cls, url: str, *, concurrency: int = 4, timeout: float = 30.0) -> SmtpTransport:
        return cls(parse_url(url), concurrency=concurrency, timeout=timeout)

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        async with self._slots:
            started = time.perf_counter()
            try:
                return await self._send(envelope_from, recipients, mime)
            finally:
                if self.observe is not None:
                    self.observe(time.perf_counter() - started)

    async def _send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        envelope = _envelope(envelope_from, recipients)
        if isinstance(envelope, Result):
            return envelope
        envelope_from, recipients = envelope
        conn = await self._take()
        if isinstance(conn, Result):
            return conn
        result, reusable = await self._transaction(conn, envelope_from, recipients, mime)
        if result.status == "temporary" and result.code is None and result.stage == "mail":
            # The pooled connection had gone away before we said anything that matters: nothing was
            # handed over, so one fresh connection may try again at once.
            conn = await self._take(fresh=True)
            if isinstance(conn, Result):
                return conn
            result, reusable = await self._transaction(conn, envelope_from, recipients, mime)
        if reusable:
            conn.last_used = time.monotonic()
            self._idle.append(conn)
        else:
            conn.client.close()
        return result

    async def _take(self, *, fresh: bool = False) -> _Conn | Result:
        while self._idle and not fresh:
            conn = self._idle.pop()
            if conn.client.is_connected and time.monotonic() - conn.last_used < IDLE_SECONDS:
                return conn
            await _quit(conn.client)
        c = self.config
        tls_context = None
        if not c.verify and (c.use_tls or c.start_tls is not False):
            tls_context = ssl.create_default_context()
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            use_tls=c.use_tls,
            start_tls=c.start_tls,
            validate_certs=c.verify,
            tls_context=tls_context,
            timeout=self.timeout,
        )
        try:
            await client.connect()
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            # Wrong credentials are a configuration problem, not this message's: retry later.
            return Result.temporary(exc.code, f"authentication failed: {exc.message}", "connect")
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            return Result.temporary(exc.code, exc.message, "connect")
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            return Result.temporary(None, f"cannot connect to {c.describe()}: {exc}", "connect")
        return _Conn(client, time.monotonic())

    async def _transaction(
        self, conn: _Conn, envelope_from: str, recipients: list[str], mime: bytes
    ) -> tuple[Result, bool]:
        """MAIL, RCPT, DATA on an open connection: (result, whether the connection may be reused)."""
        client = conn.client
        stage = "mail"
        try:
            await client.mail(envelope_from)
            stage = "rcpt"
            refused: list[aiosmtplib.SMTPRecipientRefused] = []
            for rcpt in recipients:
                try:
                    await client.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refused.append(exc)
            if len(refused) == len(recipients):
                await _reset(client)
                first = refused[0]
                return _by_code(first.code, first.message, "rcpt"), client.is_connected
            stage = "data"
            response = await client.data(mime)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # the server is closing this connection
                client.close()
                return Result.temporary(exc.code, exc.message, stage), False
            await _reset(client)
            return _by_code(exc.code, exc.message, stage), client.is_connected
        except UnicodeError as exc:
            # An address the client cannot encode without SMTPUTF8: refused before the command went out,
            # so nothing was handed over and it never will be.
            await _reset(client)
            return Result.permanent(None, f"address cannot be encoded for SMTP: {exc}", stage), (
                client.is_connected
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            if stage == "data":
                return Result.unknown(f"connection lost during DATA: {exc}"), False
            return Result.temporary(None, f"connection lost: {exc}", stage), False
        return Result.sent(response.code, response.message), True

    async def close(self) -> None:
        while self._idle:
            await _quit(self._idle.pop().client)


def _envelope(envelope_from: str, recipients: list[str]) -> tuple[str, list[str]] | Result:
    """The envelope addresses in their normal form (`cartback.addresses`), or a permanent failure, before
    any connection, when one is not exactly one ASCII mailbox. The edges let no other address in; this
    catches rows stored before they checked (aiosmtplib would send RCPT to the first address it finds in
    `a@x.example;b@y.example`, one the suppression check never saw) and non-ASCII local parts, which
    would need SMTPUTF8 (cartback does not send such mail)."""
    try:
        sender = addresses.normalise(envelope_from)
    except addresses.InvalidAddress as exc:
        return Result.permanent(None, f"not sent, sender: {exc}", "mail")
    try:
        return sender, [addresses.normalise(r) for r in recipients]
    except addresses.InvalidAddress as exc:
        return Result.permanent(None, f"not sent, recipient: {exc}", "rcpt")


def _by_code(code: int, text: str, stage: str) -> Result:
    if 500 <= code < 600:
        return Result.permanent(code, text, stage)
    return Result.temporary(code, text, stage)


async def _reset(client: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the next message starts a clean envelope; a failure closes the connection."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), 2)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()
