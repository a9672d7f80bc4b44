"""Rate limits on every API surface, as ASGI middleware in front of the routes (and of the body limits, so a
throttled client costs no body read).

A request is counted against (surface, API key): the surface is the longest registered path prefix it
falls under (/api/v1 Sequenzy, /api Klaviyo, /v1 Segment), and the key is taken from whichever form of
`Authorization` the surface speaks: `Bearer <key>`, `Klaviyo-API-Key <key>`, or HTTP Basic with the key as
the password, or as the user name when the password is empty (Segment). The key must authenticate (cached,
api/deps.py) before it is counted, so made-up keys create no counters; requests without a valid key go on
to the route, which answers 401 in the surface's envelope. The budget itself is core/ratelimits.py.

Every counted response carries `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (of the window
closest to running out) and `RateLimit-Policy`; a 429 also carries an integer `Retry-After` and the
surface's error envelope.
"""

from __future__ import annotations

import base64
import binascii

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cartback import errors
from cartback.api import deps, refusals
from cartback.api import errors as api_errors
from cartback.core import ratelimits

# Longest first: /api/v1 (Sequenzy) is inside /api (Klaviyo).
SURFACES = ("/api/v1", "/api", "/v1")
# Set on a request's scope by a front that counted the request already (api/lean.py) and then left it to
# the routes behind: the decision it got, so the request is counted once and refused here if need be.
DECIDED = "cartback.rate_decision"


def credentials(headers: list[tuple[bytes, bytes]]) -> tuple[str, ...]:
    """What may be the API key in `Authorization`, in any of the surfaces' forms: the token of `Bearer` or
    `Klaviyo-API-Key`; for Basic the password and the user name (Sequenzy's inbound routes take the key as
    the password, Segment as the user name)."""
    for name, value in headers:
        if name != b"authorization":
            continue
        scheme, _, rest = value.decode("latin-1").strip().partition(" ")
        scheme, rest = scheme.lower(), rest.strip()
        if scheme in ("bearer", "klaviyo-api-key"):
            return (rest,) if rest else ()
        if scheme == "basic":
            try:
                user, _, password = base64.b64decode(rest, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return ()
            return tuple(part for part in (password, user) if part)
        return ()
    return ()


def surface_of(path: str, prefixes: tuple[str, ...] = SURFACES) -> str | None:
    for prefix in prefixes:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


async def decide(
    limiter: ratelimits.Limiter, path: str, who: deps.Principal, prefixes: tuple[str, ...] = SURFACES
) -> ratelimits.Decision | None:
    """Count a request of `who` to `path` against its (surface, key) budget; None off every surface."""
    surface = surface_of(path, prefixes)
    return None if surface is None else await limiter.acquire(f"{surface} {who.key_id}")


def headers_for(decision: ratelimits.Decision, policy: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset).encode()),
        (b"ratelimit-policy", policy),
    ]


class RateLimits:
    """ASGI middleware: count each API request against its key's budget; 429 once it is spent."""

    def __init__(
        self,
        app: ASGIApp,
        keys: deps.KeyCache,
        limiter: ratelimits.Limiter,
        prefixes: tuple[str, ...] = SURFACES,
        delay: float = 0.0,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.delay = delay  # api/refusals.py
        self.prefixes = tuple(sorted(prefixes, key=len, reverse=True))
        self.policy = limiter.policy.header().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        decision: ratelimits.Decision | None = scope.pop(DECIDED, None)
        if decision is None:
            who = await self._principal(scope["headers"]) if surface_of(path, self.prefixes) else None
            # No key, or an unknown, revoked or expired one: the route answers 401.
            decision = None if who is None else await decide(self.limiter, path, who, self.prefixes)
        if decision is None:
            await self.app(scope, receive, send)
            return
        extra = headers_for(decision, self.policy)
        if not decision.allowed:
            window = "second" if decision.window == 1 else "minute"
            exc = errors.RateLimited(
                f"rate limit exceeded: this API key may make {decision.limit} requests per {window} here; "
                f"retry in {decision.retry_after} s"
            )
            response = api_errors.render(path, exc)
            response.raw_headers.extend([*extra, (b"retry-after", str(decision.retry_after).encode())])
            await refusals.wait(self.delay, decision.retry_after)
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _principal(self, headers: list[tuple[bytes, bytes]]) -> deps.Principal | None:
        for secret in credentials(headers):
            try:
                return await self.keys.authenticate(secret)
            except errors.CartbackError:
                continue
        return None
