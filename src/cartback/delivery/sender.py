"""The sender: a worker duty that hands due messages to the transport, at most once each.

Per message, three steps:

1. a committed write: still ours (lease), not suppressed meanwhile, no attempt already open; build the
   MIME, keep it in `message_delivery.mime`, record an attempt with outcome `unknown` and no
   `finished_at`, count it, status `sending`;
2. the send, outside any transaction;
3. a committed write of the outcome: sent (plus an `email.sent` event), deferred with backoff, failed
   (plus a bounce suppression for an unknown mailbox), or unknown.

If the process dies between 1 and 3 the attempt stays open. Whoever claims the message next finds it
and marks the message `unknown` instead of sending it again: the server may already have it. With the
outbox transport the three steps are one transaction, so there is no such window.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cartback.core import events, suppressions
from cartback.delivery import links, mime
from cartback.delivery.outbox import OutboxTransport
from cartback.delivery.transport import Result, Transport
from cartback.store import deliveries
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx

if TYPE_CHECKING:
    from cartback.metrics import Metrics
    from cartback.scheduler.worker import Worker
    from cartback.settings import Settings

log = logging.getLogger(__name__)

UNKNOWN_FATE = "fate unknown: the process stopped during the SMTP exchange"
# Enhanced status codes 5.1.x say the recipient address is bad; 5.1.7/5.1.8 are about the sender's.
_BAD_MAILBOX = re.compile(r"\b5\.1\.(?!7\b|8\b)\d{1,3}\b")
_BAD_MAILBOX_TEXT = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)"
    r"|mailbox (not found|unavailable|does not exist)|does not exist|invalid (recipient|mailbox)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Policy:
    """Retry policy: attempt n (1-based) that failed temporarily is retried after about
    base * 2**(n-1) seconds (±25 % jitter, at most `max_delay`); a message is failed after
    `max_attempts` attempts or once it is `give_up_after` old."""

    base_seconds: float = 60.0
    max_delay: timedelta = timedelta(hours=6)
    max_attempts: int = 20
    give_up_after: timedelta = timedelta(days=3)

    def delay(self, attempt: int) -> timedelta:
        seconds = min(self.base_seconds * 2 ** (attempt - 1), self.max_delay.total_seconds())
        return timedelta(seconds=seconds * random.uniform(0.75, 1.25))


def is_bad_mailbox(result: Result) -> bool:
    """A permanent refusal of the recipient's address (550 5.1.1 "user unknown" and kin): the address
    is suppressed as bounced, so it gets no more mail."""
    if (
        result.status != "permanent"
        or result.stage not in ("rcpt", "data")
        or result.code not in (550, 551, 553)
    ):
        return False
    return bool(_BAD_MAILBOX.search(result.text) or _BAD_MAILBOX_TEXT.search(result.text))


@dataclass(frozen=True)
class Prepared:
    """A message ready to go: its attempt is recorded and committed."""

    message_id: str
    attempt_id: str
    attempt: int
    envelope: mime.Envelope
    mime: bytes


@dataclass
class Stats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    unknown: int = 0
    skipped: int = 0
    gone: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome, 0) + 1)


class Sender:
    """The delivery duty. `duty(worker)` claims a batch and delivers it; its return value tells the worker
    whether to run again at once."""

    def __init__(self, transport: Transport, *, public_url: str, policy: Policy = Policy()) -> None:
        self.transport = transport
        self.public_url = public_url
        self.policy = policy
        self.stats = Stats()

    async def duty(self, worker: Worker) -> int:
        now = worker.clock.now()
        claimed = await worker.db.write(
            lambda tx: deliveries.claim_due(
                tx, worker.owner, now, lease=worker.lease, limit=worker.batch_size
            ),
            notify=False,
        )
        if not claimed:
            return 0
        # The messages and their workspaces' secrets, read once; the MIME is then built on the event loop,
        # outside the single writer's transactions.
        batch, secrets = await worker.db.read(lambda tx: _load_batch(tx, claimed))
        # At most this many messages are prepared and not yet answered: the transport's own limit sending,
        # and as many again prepared ahead, so the first writes overlap the sends. A crash can leave only
        # these with an open attempt.
        window = asyncio.Semaphore(max(1, 2 * self.transport.concurrency))
        results = await asyncio.gather(
            *(self._deliver_counted(worker, p, secrets[p.message.workspace_id], window) for p in batch),
            return_exceptions=True,
        )
        unknown = 0
        for pending, outcome in zip(batch, results, strict=True):
            if isinstance(outcome, BaseException):
                log.error("delivering %s failed: %r", pending.message.id, outcome)
                continue
            if outcome == "released":  # not attempted: the worker is stopping and gives the lease back
                continue
            self.stats.add(outcome)
            unknown += outcome == "unknown"
        if unknown:
            log.warning(
                "%d message(s) marked unknown: they may or may not have been delivered and are not resent "
                "(GET /api/v1/outbox?status=unknown lists them)",
                unknown,
            )
        return len(claimed)

    async def _deliver_counted(
        self, worker: Worker, pending: deliveries.Pending, secret: str, window: asyncio.Semaphore
    ) -> str:
        """`_deliver`, counted in the metrics as soon as it is done rather than when the whole batch is."""
        outcome = await self._deliver(worker, pending, secret, window)
        if outcome != "released":
            worker.metrics.message_outcome(outcome)
        return outcome

    async def _deliver(
        self, worker: Worker, pending: deliveries.Pending, secret: str, window: asyncio.Semaphore
    ) -> str:
        """Deliver one claimed message; return what became of it (sent, deferred, failed, suppressed,
        unknown, skipped)."""
        db, owner, message_id = worker.db, worker.owner, pending.message.id
        async with window:
            if worker.stopping:
                return "released"
            now = worker.clock.now()
            raw = self.mime_of(pending, secret, now)
            if self.transport.atomic:
                return await db.write(
                    lambda tx: self._deliver_atomically(tx, message_id, owner, now, worker.lease, raw),
                    notify=False,
                )
            prepared = await db.write(
                lambda tx: self.prepare(tx, message_id, owner, now, worker.lease, raw), notify=False
            )
            if isinstance(prepared, str):
                return prepared
            try:
                result = await self.transport.send(
                    prepared.envelope.sender, prepared.envelope.recipients, prepared.mime
                )
            except Exception as exc:  # a transport bug: nothing says whether the message went out
                log.exception("transport %s raised", self.transport.name)
                result = Result.unknown(f"transport error: {exc!r}")
        done = worker.clock.now()
        return await db.write(lambda tx: self.record(tx, prepared, result, done), notify=False)

    # -- the two writes ----------------------------------------------------------------------------

    def prepare(
        self, tx: Tx, message_id: str, owner: str, now: datetime, lease: timedelta, raw: bytes
    ) -> Prepared | str:
        """The first write. When there is nothing to send (taken over, finished, suppressed, or an earlier
        attempt's fate is unknown), records why and returns the outcome instead."""
        if not deliveries.hold(tx, message_id, owner, now + lease):
            return "skipped"  # another worker took it over after our lease expired
        pending = deliveries.load(tx, message_id, bodies=False)
        if pending is None:
            return "skipped"
        settled = self._settled_elsewhere(tx, pending, now)
        if settled:
            return settled
        # On a retry `raw` is the kept MIME of the first attempt (mime_of), so it is not stored again.
        attempt_id, number = deliveries.start_attempt(
            tx,
            pending,
            now,
            transport=self.transport.name,
            mime=None if pending.mime else raw.decode("ascii"),
        )
        deliveries.set_status(tx, message_id, "sending", now, error=pending.message.error)
        envelope = mime.Envelope(mime.address_of(pending.message.from_email), [pending.message.to_email])
        return Prepared(message_id, attempt_id, number, envelope, raw)

    def record(self, tx: Tx, prepared: Prepared, result: Result, now: datetime) -> str:
        """The second write: the outcome of one attempt. Recorded even if our lease lapsed meanwhile: it is
        the truth, and whoever claimed the message since found the open attempt and did not send it."""
        pending = deliveries.load(tx, prepared.message_id, bodies=False)
        if pending is None:
            return "gone"
        message = pending.message
        detail = result.describe()
        if result.status == "sent":
            deliveries.finish_attempt(tx, prepared.attempt_id, "sent", now, code=result.code, detail=detail)
            self._mark_sent(tx, pending, now)
            return "sent"
        if result.status == "unknown":
            deliveries.finish_attempt(tx, prepared.attempt_id, "unknown", now, code=None, detail=detail)
            deliveries.set_status(tx, message.id, "unknown", now, error=f"fate unknown: {detail}")
            deliveries.finish(tx, message.id)
            return "unknown"
        if result.status == "temporary":
            too_old = now - message.created_at >= self.policy.give_up_after
            if prepared.attempt < self.policy.max_attempts and not too_old:
                deliveries.finish_attempt(
                    tx, prepared.attempt_id, "deferred", now, code=result.code, detail=detail
                )
                deliveries.set_status(tx, message.id, "deferred", now, error=detail)
                deliveries.retry_at(tx, message.id, now + self.policy.delay(prepared.attempt))
                return "deferred"
            why = f"gave up after {prepared.attempt} attempt(s): {detail}"
        else:
            why = detail
        deliveries.finish_attempt(tx, prepared.attempt_id, "failed", now, code=result.code, detail=detail)
        deliveries.set_status(tx, message.id, "failed", now, error=why)
        deliveries.finish(tx, message.id)
        if is_bad_mailbox(result):
            suppressions.suppress(
                tx,
                message.workspace_id,
                message.to_email,
                "bounced",
                "smtp",
                now,
                detail=detail,
                properties={"messageId": message.id, "smtpCode": result.code},
            )
        return "failed"

    def _deliver_atomically(
        self, tx: Tx, message_id: str, owner: str, now: datetime, lease: timedelta, raw: bytes
    ) -> str:
        """The outbox: checks, MIME, attempt and outcome in one transaction. A crash rolls all of it back,
        and the next claim starts afresh; no message can end up in between."""
        if not deliveries.hold(tx, message_id, owner, now + lease):
            return "skipped"
        pending = deliveries.load(tx, message_id, bodies=False)
        if pending is None:
            return "skipped"
        settled = self._settled_elsewhere(tx, pending, now)
        if settled:
            return settled
        deliveries.start_attempt(
            tx, pending, now, transport=self.transport.name, mime=raw.decode("ascii"), outcome="sent"
        )
        self._mark_sent(tx, pending, now)
        return "sent"

    # -- helpers -------------------------------------------------------------------------------------

    def _settled_elsewhere(self, tx: Tx, pending: deliveries.Pending, now: datetime) -> str | None:
        """Handle the cases in which this message must not be sent now: the outcome, or None."""
        message = pending.message
        if message.status in deliveries.FINAL:
            deliveries.finish(tx, message.id)
            return "skipped"
        if deliveries.open_attempt(tx, message.id) is not None:
            # An earlier attempt was handed to the transport and never answered: the process died in the
            # SMTP exchange, so the server may have the message. Never send it twice.
            deliveries.set_status(tx, message.id, "unknown", now, error=UNKNOWN_FATE)
            deliveries.finish(tx, message.id)
            return "unknown"
        blocked = suppressions.blocking_reason(tx, message.workspace_id, message.to_email, message.kind)
        if blocked:
            deliveries.set_status(tx, message.id, "suppressed", now, error=f"suppressed: {blocked}")
            deliveries.finish(tx, message.id)
            return "suppressed"
        return None

    def mime_of(self, pending: deliveries.Pending, secret: str, now: datetime) -> bytes:
        """The bytes to send: those of the first attempt on a retry, else the message built now."""
        if pending.mime:
            return pending.mime.encode("ascii")
        message = pending.message
        unsubscribe = None
        if message.kind == "marketing":
            signer = links.LinkSigner(self.public_url, secret, message.workspace_id, message.id)
            unsubscribe = signer.unsubscribe_url(message.to_email)
        return mime.build(
            message_id=message.id,
            rfc_message_id=pending.rfc_message_id,
            from_email=message.from_email,
            to_email=message.to_email,
            subject=message.subject,
            html=message.html,
            text=message.text,
            kind=message.kind,
            date=now,
            unsubscribe_url=unsubscribe,
        )

    def _mark_sent(self, tx: Tx, pending: deliveries.Pending, now: datetime) -> None:
        message = pending.message
        deliveries.set_status(tx, message.id, "sent", now, sent_at=now)
        deliveries.finish(tx, message.id)
        events.record(
            tx,
            message.workspace_id,
            name="email.sent",
            source=events.SOURCE_CARTBACK,
            subscriber_id=message.subscriber_id,
            properties={
                "messageId": message.id,
                "sequenceId": message.sequence_id,
                "enrollmentId": message.enrollment_id,
                "nodeId": message.node_id,
                "kind": message.kind,
            },
            now=now,
            idempotency_key=f"email.sent:{message.id}",
        )


def _load_batch(tx: Tx, message_ids: list[str]) -> tuple[list[deliveries.Pending], dict[str, str]]:
    batch = deliveries.load_many(tx, message_ids)
    secrets = {
        ws: workspace_store.get_workspace(tx, ws).secret for ws in {p.message.workspace_id for p in batch}
    }
    return batch, secrets


def transport_for(settings: Settings, metrics: Metrics | None = None) -> Transport:
    """SMTP when CARTBACK_SMTP_URL is set, else the outbox."""
    if settings.smtp_url:
        from cartback.delivery.smtp import SmtpTransport

        smtp = SmtpTransport.from_url(settings.smtp_url, concurrency=settings.smtp_connections)
        if metrics is not None:
            smtp.observe = metrics.smtp_sent
        return smtp
    return OutboxTransport()


def duty_for(settings: Settings, metrics: Metrics | None = None) -> Callable[[Worker], Awaitable[int]]:
    """The sender duty `build_worker` registers."""
    policy = Policy(base_seconds=settings.delivery_retry_seconds)
    return Sender(transport_for(settings, metrics), public_url=settings.public_url, policy=policy).duty
