"""Where outbound webhooks may go: public Internet addresses only, unless the operator allows their own
network (CARTBACK_WEBHOOK_ALLOW_PRIVATE).

A tenant chooses its webhook URLs, and the server, not the tenant, makes the requests: without this guard a
tenant could make cartback call its loopback services, the cloud's metadata endpoint (169.254.169.254) or
anything on the private network it sits in, and read the answers back through the attempts API.

Two checks, because a name's addresses can change between them (DNS rebinding):

- **At save** (`check_url`): the URL is http(s), without user info; its host, a literal address or every
  address its name resolves to now, must be public. A name that does not resolve yet is accepted: it can
  do no harm until it does, and the send-time check decides then.
- **At send** (`GuardedBackend`): the HTTP client's network backend resolves the host itself, refuses the
  connection if any address is not public, and connects to the address it checked, so no second lookup
  can swap in another. TLS still verifies the certificate against the host name (httpcore starts TLS
  on the connected socket with the URL's host as server name), so pinning the address weakens nothing.

"Public" is `ipaddress`'s `is_global`, plus explicit loopback, private, link-local, multicast,
unspecified and reserved checks (IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

from cartback import errors

RESOLVE_SECONDS = 5.0
ALLOW_SETTING = "CARTBACK_WEBHOOK_ALLOW_PRIVATE"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def refusal(address: IPAddress) -> str | None:
    """What kind of address this is, when cartback will not call it ("a loopback address"); None when
    it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, article in (
        ("loopback", "a"),
        ("unspecified", "an"),
        ("link_local", "a"),
        ("multicast", "a"),
        ("private", "a"),
        ("reserved", "a"),
    ):
        if getattr(address, f"is_{kind}"):
            return f"{article} {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to for a TCP connection (OSError if it does not resolve)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_SECONDS):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def _refused(host: str, addresses: Iterable[IPAddress]) -> str | None:
    for address in addresses:
        why = refusal(address)
        if why is not None:
            what = (
                f"{address} is {why}"
                if _literal(host) is not None
                else f"{host} resolves to {address}, {why}"
            )
            return f"{what}; webhooks go to public addresses only (unless {ALLOW_SETTING} is set)"
    return None


async def check_url(url: str, *, allow_private: bool) -> None:
    """InvalidInput naming `url` when a webhook may not be sent there (see the module docstring)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise errors.InvalidInput(f"url: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidInput("url must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise errors.InvalidInput("url must not carry a user name or password")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = await resolve(host, port or (443 if parts.scheme == "https" else 80))
    except (OSError, TimeoutError, UnicodeError):
        return  # not resolvable now: checked again, and pinned, at every send
    why = _refused(host, addresses)
    if why is not None:
        raise errors.InvalidInput(f"url: {why}")


class GuardedBackend(AsyncNetworkBackend):
    """httpcore's network backend, with every TCP connection made to an address checked to be public."""

    def __init__(self, inner: AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        why = _refused(host, addresses)
        if why is not None:
            raise httpcore.ConnectError(f"refused: {why}")
        last: Exception | None = None
        for address in addresses:  # as a browser does: the next address when one does not answer
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent over Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport() -> httpx.AsyncHTTPTransport:
    """httpx's own transport, with the guarded backend under its connection pool."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx does not take a network backend as a parameter; its pool does, and has made no connection
    # yet. The send-time tests (tests/integration/test_webhook_targets.py) fail if this stops working.
    pool = transport._pool
    pool._network_backend = GuardedBackend(pool._network_backend)
    return transport


def peer_is_public(extensions: dict[str, Any]) -> bool:
    """Whether the connection a response came over goes to a public address (False when unknown)."""
    stream = extensions.get("network_stream")
    if stream is None:
        return False
    peer = stream.get_extra_info("server_addr")
    if not peer:
        return False
    address = _literal(str(peer[0]))
    return address is not None and refusal(address) is None
