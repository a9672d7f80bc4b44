"""The dashboard session: a signed cookie, checked against the user's row on every request.

The cookie holds the signed-in user's id (absent before sign-in), the user's session version when it was
issued, and a random CSRF token bound to the session. Sign-out and a password change add one to the
user's version (`users.session_version`), so every cookie issued before, copies included, stops working
(docs/dashboard.md says why a version rather than a table of sessions).
It is signed with the application secret (itsdangerous, HMAC-SHA1 over the payload and a
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
    version: int = 0  # the user's session version when this session was issued

    def signed_in(self, user_id: str, version: int) -> Session:
        # A fresh token at sign-in: a token seen before (on the sign-in page) is worth nothing after.
        return Session(secrets.token_urlsafe(32), user_id, version)


def new() -> Session:
    return Session(secrets.token_urlsafe(32))


class Codec:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps({"c": session.csrf, "u": session.user_id, "v": session.version})

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
        csrf, user_id, version = data.get("c"), data.get("u"), data.get("v", 0)
        if not isinstance(csrf, str) or not csrf or not (user_id is None or isinstance(user_id, str)):
            return None
        if not isinstance(version, int) or isinstance(version, bool):
            return None
        return Session(csrf, user_id, version)


def check_csrf(session: Session | None, submitted: str | None) -> None:
    if session is None or not submitted or not hmac.compare_digest(session.csrf, submitted):
        raise errors.Forbidden(
            "This form's security token is missing or out of date. Reload the page and try again."
        )
