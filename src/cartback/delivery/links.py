"""The public links an email carries, each a signed token under the workspace's secret:

{public}/u/{token}          unsubscribe: GET shows a confirmation page, POST unsubscribes at once
                            (RFC 8058 one-click, `List-Unsubscribe-Post: List-Unsubscribe=One-Click`)
{public}/t/o/{token}.gif    open pixel
{public}/t/c/{token}        click: redirects to the URL signed into the token, and only that one
"""

from __future__ import annotations

from dataclasses import dataclass

from cartback.delivery import tokens


@dataclass(frozen=True)
class LinkSigner:
    """Builds the links of one message."""

    public_url: str
    secret: str
    workspace_id: str
    message_id: str

    def _token(self, kind: str, **extra: str) -> str:
        return tokens.sign(self.secret, {"k": kind, "w": self.workspace_id, "m": self.message_id, **extra})

    def unsubscribe_url(self, email: str) -> str:
        return f"{self.public_url.rstrip('/')}/u/{self._token('u', e=email.lower())}"

    def open_pixel_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/t/o/{self._token('o')}.gif"

    def click_url(self, url: str) -> str:
        return f"{self.public_url.rstrip('/')}/t/c/{self._token('c', u=url)}"
