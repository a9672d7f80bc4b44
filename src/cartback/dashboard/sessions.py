"""The dashboard session: a signed cookie, not a server-side row.

The cookie holds the signed-in user's id (absent before sign-in) and a random CSRF token bound to the
session. It is signed with the application secret (itsdangerous, HMAC-SHA1 over the payload and a
timestamp), so it cannot be forged or altered, and it expires after `MAX_AGE`. It is HttpOnly (no script
reads it), SameSite=Lax (other sites' POSTs do not carry it), scoped to /app, and Secure when the public
URL is https. Every unsafe request must echo the CSRF token in a form field or header (`check_csrf`):
SameSite alone does not cover older browsers or same-site subdomains.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from cartback import errors

COOKIE = "cartback_session"
MAX_AGE = 14 * 24 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_SALT = "cartback.dashboard.session"


@dataclass(frozen=True)
class Session:
    csrf: str
    user_id: str | None = None

    def signed_in(self, user_id: str) -> Session:
        # A fresh token at sign-in: a token seen before (on the sign-in page) is worth nothing after.
        return Session(secrets.token_urlsafe(32), user_id)


def new() -> Session:
    return Session(secrets.token_urlsafe(32))


class Codec:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps({"c": session.csrf, "u": session.user_id})

    def loads(self, value: str | None) -> Session | None:
        """The session in a cookie value; None when absent, forged, altered, expired or malformed."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        csrf, user_id = data.get("c"), data.get("u")
        if not isinstance(csrf, str) or not csrf or not (user_id is None or isinstance(user_id, str)):
            return None
        return Session(csrf, user_id)


def check_csrf(session: Session | None, submitted: str | None) -> None:
    if session is None or not submitted or not hmac.compare_digest(session.csrf, submitted):
        raise errors.Forbidden(
            "This form's security token is missing or out of date. Reload the page and try again."
        )
