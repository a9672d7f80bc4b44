"""The outbox transport, used when CARTBACK_SMTP_URL is unset: nothing leaves the machine. The sender
stores the full MIME message in `message_mime` in the same transaction that marks it `kept` (not `sent`:
no mail server had it), so the dashboard and `GET /api/v1/outbox/{id}` show exactly what would have gone
out, and no figure counts it as delivered."""

from __future__ import annotations

from cartback.delivery.transport import Result

KEPT_TEXT = "kept in the outbox: no mail server is set (CARTBACK_SMTP_URL), so it was not delivered"


class OutboxTransport:
    name = "outbox"
    atomic = True

    def __init__(self, concurrency: int = 64) -> None:
        self.concurrency = concurrency

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        """Always "kept": the message is the stored MIME, written by the sender's transaction."""
        return Result.kept(KEPT_TEXT)

    async def close(self) -> None:
        return None
