"""The sender: a worker duty that hands due messages to the transport, at most once each.

Per message, three steps:

1. a committed write: still ours (lease), not suppressed meanwhile, no attempt already open; keep the MIME
   (built beforehand, outside the writer) in `message_mime`, record an attempt with outcome
   `unknown` and no `finished_at`, count it, status `sending`;
2. the send, outside any transaction;
3. a committed write of the outcome: sent (plus an `email.sent` event), kept (the outbox transport: stored,
   no mail server had it, no event), deferred with backoff, failed (plus a bounce suppression for an
   unknown mailbox), or unknown.

A message that cannot be built (a stored value the MIME or the SMTP envelope cannot carry) is failed alone
with the reason, in the write of step 1; a write that fails is tried again one message at a time, and a
message whose own write still fails is deferred by the retry policy. Either way the rest of the batch goes
on at once: one bad row never holds up the others (docs/delivery.md, "Poison isolation").

If the process dies between 1 and 3 the attempt stays open. Whoever claims the message next finds it
and marks the message `unknown` instead of sending it again: the server may already have it. With the
outbox transport the three steps are one transaction, so there is no such window.

Steps 1 and 3 are set-wise: one write job does step 1 for every message that may start now (a few
statements for all of them, not a few each), and one does step 3 for every answer that came in while the
previous such write was committing. At most `window_per_connection` x the transport's concurrency messages
are between the start of step 1 and the commit of step 3 at any time, which bounds what a crash can leave
open.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cartback import ids
from cartback.core import events, suppressions
from cartback.delivery import links, mime, outbox
from cartback.delivery.outbox import OutboxTransport
from cartback.delivery.transport import Result, Transport
from cartback.scheduler.duty import Runner, any_due
from cartback.store import deliveries, leases
from cartback.store import events as event_store
from cartback.store import workspaces as workspace_store
from cartback.store.db import Tx
from cartback.store.messages import Message

if TYPE_CHECKING:
    from cartback.metrics import Metrics
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

    message: Message
    attempt_id: str
    attempt: int
    envelope: mime.Envelope
    mime: bytes


# An attempt's answer: what the transport said, and when.
Answer = tuple[Prepared, Result, datetime]


@dataclass(frozen=True)
class Unbuildable:
    """A claimed message whose MIME or envelope cannot be built: why. Building is computation on stored
    values, so the same row fails the same way every time: the message is failed, not retried."""

    reason: str


# What the write of step 1 gets for a claimed message: its bytes, or why there are none.
Item = tuple[deliveries.Pending, bytes | Unbuildable]
# An attempt that never reached the transport has no envelope and no bytes.
_UNSENT = mime.Envelope("", [])
_REASON_LIMIT = 1000


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

    def __init__(
        self,
        transport: Transport,
        *,
        public_url: str,
        policy: Policy = Policy(),
        window_per_connection: int = 4,
    ) -> None:
        self.transport = transport
        self.public_url = public_url
        self.policy = policy
        self.window_per_connection = window_per_connection
        self.stats = Stats()

    async def duty(self, worker: Runner) -> int:
        now = worker.clock.now()
        if not await any_due(worker, leases.MESSAGES, now):
            return 0
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
        unknown = await self._deliver(worker, batch, secrets)
        if unknown:
            log.warning(
                "%d message(s) marked unknown: they may or may not have been delivered and are not resent "
                "(GET /api/v1/outbox?status=unknown lists them)",
                unknown,
            )
        return len(claimed)

    async def close(self) -> None:
        """Close the transport's pooled connections (the worker's stop): a connection left open stays
        with the SMTP server until it times out, and with this process until it is collected."""
        await self.transport.close()

    async def _deliver(self, worker: Runner, batch: list[deliveries.Pending], secrets: dict[str, str]) -> int:
        """Deliver a claimed batch; return how many messages became `unknown`.

        A window of `window_per_connection` x the transport's concurrency: as many messages sending as the
        transport allows, and the rest prepared ahead. One write at a time records every answer that came in
        while the previous write was committing and, in the same transaction, starts as many new messages as
        slots were freed; so at every commit at most a window's worth of attempts is open. A stop starts
        nothing new (the worker gives the remaining leases back) but still records every answer."""
        window = max(1, self.window_per_connection * self.transport.concurrency)
        todo = collections.deque(batch)
        answers: list[Answer] = []
        arrived = asyncio.Event()
        open_attempts = 0  # started and not yet recorded
        sends: list[asyncio.Task[None]] = []
        unknown = 0

        def build(pending: deliveries.Pending) -> bytes | Unbuildable:
            try:
                raw = self.mime_of(pending, secrets[pending.message.workspace_id], worker.clock.now())
                mime.envelope_of(pending.message.from_email, pending.message.to_email)
            except Exception as exc:  # any stored value the MIME cannot carry: this message alone fails
                log.warning("message %s cannot be built: %r", pending.message.id, exc)
                return Unbuildable(f"cannot build the message: {_describe(exc)}")
            return raw

        async def send(prepared: Prepared) -> None:
            try:
                result = await self.transport.send(
                    prepared.envelope.sender, prepared.envelope.recipients, prepared.mime
                )
            except Exception as exc:  # a transport bug: nothing says whether the message went out
                log.exception("transport %s raised", self.transport.name)
                result = Result.unknown(f"transport error: {exc!r}")
            answers.append((prepared, result, worker.clock.now()))
            arrived.set()

        # Answers wait to be recorded while more than this many sends are still unanswered: one sending and
        # one ready per connection keep every connection busy while the write commits, and a write that
        # waits for more answers records and starts more messages at once (each write costs about the same
        # whatever it holds).
        busy_enough = min(window, 2 * self.transport.concurrency)

        def waiting() -> bool:
            if not answers:  # nothing to record: go on only to fill free places in the window
                return open_attempts == window or not todo or worker.stopping
            return not worker.stopping and open_attempts - len(answers) > busy_enough

        while open_attempts or (todo and not worker.stopping):
            while waiting():
                arrived.clear()
                await arrived.wait()
            answered, answers = answers, []
            free = window - open_attempts + len(answered)
            chunk = [] if worker.stopping else [todo.popleft() for _ in range(min(free, len(todo)))]
            now = worker.clock.now()
            items: list[Item] = [(p, build(p)) for p in chunk]
            step = functools.partial(
                self.step, answers=answered, items=items, owner=worker.owner, now=now, lease=worker.lease
            )
            try:
                outcomes, ready = await worker.db.write(step, notify=False)
            except Exception as exc:
                # Nothing of it committed. One row may be the cause: write each answer and each start alone.
                log.warning(
                    "recording %d outcome(s) and starting %d failed (%r); writing them one by one",
                    len(answered),
                    len(chunk),
                    exc,
                )
                outcomes, ready = await self._apart(worker, answered, items, now)
            open_attempts -= len(answered)
            for item in ready:
                if isinstance(item, Prepared):
                    open_attempts += 1
                    sends.append(asyncio.create_task(send(item)))
                else:
                    outcomes.append(item)
            for outcome in outcomes:
                self.stats.add(outcome)
                worker.metrics.message_outcome(outcome)
                unknown += outcome == "unknown"
        await asyncio.gather(*sends)
        return unknown

    async def _apart(
        self, worker: Runner, answered: list[Answer], items: list[Item], now: datetime
    ) -> tuple[list[str], list[Prepared | str]]:
        """The write of a failed step again, one answer and one message at a time, so that what one row
        does to a write costs that message alone. An answer that still cannot be recorded leaves its
        attempt open: the next claim marks that message unknown (never sent twice). A message that still
        cannot be started is deferred by the retry policy, in a write that keeps nothing of it but the
        reason."""
        outcomes: list[str] = []
        for answer in answered:
            try:
                outcomes += await worker.db.write(
                    functools.partial(self.record, answers=[answer]), notify=False
                )
            except Exception as exc:
                log.error("recording the outcome of message %s failed: %r", answer[0].message.id, exc)
        ready: list[Prepared | str] = []
        for item in items:
            start = functools.partial(
                self.start, items=[item], owner=worker.owner, now=now, lease=worker.lease
            )
            try:
                ready += await worker.db.write(start, notify=False)
                continue
            except Exception as exc:
                log.error("starting message %s failed: %r", item[0].message.id, exc)
                error = exc
            postpone = functools.partial(
                self.postpone, pending=item[0], error=error, owner=worker.owner, now=now, lease=worker.lease
            )
            try:
                ready.append(await worker.db.write(postpone, notify=False))
            except Exception as exc:  # the database itself is failing: the lease expires, the claim retries
                log.error("deferring message %s failed: %r", item[0].message.id, exc)
        return outcomes, ready

    # -- the two writes ----------------------------------------------------------------------------

    def step(
        self,
        tx: Tx,
        answers: list[Answer],
        items: list[Item],
        owner: str,
        now: datetime,
        lease: timedelta,
    ) -> tuple[list[str], list[Prepared | str]]:
        """One write of the delivery loop: `record` the answers, then `start` the items."""
        outcomes = self.record(tx, answers) if answers else []
        return outcomes, self.start(tx, items, owner, now, lease) if items else []

    def start(
        self,
        tx: Tx,
        items: list[Item],
        owner: str,
        now: datetime,
        lease: timedelta,
    ) -> list[Prepared | str]:
        """Step 1 for claimed messages with their MIME, as one write. For each message, the Prepared one
        or, when there is nothing to send (taken over, finished, suppressed, an earlier attempt's fate is
        unknown, or it cannot be built), the outcome recorded instead. With an atomic transport (the
        outbox) the outcome is written in the same transaction: "kept"."""
        states = deliveries.hold(tx, [p.message.id for p, _ in items], owner, now + lease)
        candidates = [(p, raw) for p, raw in items if p.message.id in states]
        blocked = suppressions.blocking_reasons(
            tx, [(p.message.workspace_id, p.message.to_email, p.message.kind) for p, _ in candidates]
        )
        why: dict[str, str] = {}
        starts: list[deliveries.Start] = []
        prepared: dict[str, Prepared] = {}
        unbuildable: list[tuple[Message, int, Result]] = []
        for (pending, raw), block in zip(candidates, blocked, strict=True):
            message, state = pending.message, states[pending.message.id]
            settled = self._settled_elsewhere(tx, message, state, block, now)
            if settled:
                why[message.id] = settled
                continue
            if isinstance(raw, Unbuildable):
                unbuildable.append((message, state.attempts + 1, Result.permanent(None, raw.reason, "build")))
                continue
            attempt_id, number = ids.new_id("att"), state.attempts + 1
            # On a retry `raw` is the kept MIME of the first attempt (mime_of), so it is not stored again.
            starts.append(
                deliveries.Start(message, attempt_id, number, None if pending.mime else raw.decode("ascii"))
            )
            envelope = mime.envelope_of(message.from_email, message.to_email)
            prepared[message.id] = Prepared(message, attempt_id, number, envelope, raw)
        deliveries.start_attempts(tx, starts, now, transport=self.transport.name)
        if unbuildable:
            outcomes = self._unsent(tx, unbuildable, now)
            why.update(zip((m.id for m, _, _ in unbuildable), outcomes, strict=True))
        if self.transport.atomic:
            stored = Result.kept(outbox.KEPT_TEXT)
            outcomes = self.record(tx, [(p, stored, now) for p in prepared.values()])
            why.update(zip(prepared, outcomes, strict=True))
            prepared = {}
        # Not held: another worker took the message over after our lease expired; not found: deleted.
        return [prepared.get(p.message.id) or why.get(p.message.id, "skipped") for p, _ in items]

    def postpone(
        self,
        tx: Tx,
        pending: deliveries.Pending,
        error: Exception,
        owner: str,
        now: datetime,
        lease: timedelta,
    ) -> str:
        """For a message whose own write to start it failed: an attempt that records why and is retried by
        the policy like a temporary failure (so a row that always fails is failed in the end, and one that
        failed by chance goes out later). Nothing of the message is written but the reason."""
        message = pending.message
        state = deliveries.hold(tx, [message.id], owner, now + lease).get(message.id)
        if state is None:
            return "skipped"
        settled = self._settled_elsewhere(tx, message, state, None, now)
        if settled:
            return settled
        reason = Result.temporary(None, f"could not start the attempt: {_describe(error)}", "start")
        [outcome] = self._unsent(tx, [(message, state.attempts + 1, reason)], now)
        return outcome

    def _unsent(self, tx: Tx, failures: list[tuple[Message, int, Result]], now: datetime) -> list[str]:
        """Attempts that never reached the transport, recorded with their reason and settled like any
        answer: a permanent one fails the message, a temporary one is retried by the policy."""
        starts = [
            deliveries.Start(message, ids.new_id("att"), number, None) for message, number, _ in failures
        ]
        deliveries.start_attempts(tx, starts, now, transport=self.transport.name)
        answers = [
            (Prepared(s.message, s.attempt_id, s.attempt, _UNSENT, b""), result, now)
            for s, (_, _, result) in zip(starts, failures, strict=True)
        ]
        return self.record(tx, answers)

    def record(self, tx: Tx, answers: list[Answer]) -> list[str]:
        """Step 3 for many answers, as one write: what became of each (sent, deferred, failed, unknown, or
        gone when the message was deleted meanwhile). Recorded even if our lease lapsed meanwhile: it is
        the truth, and whoever claimed the message since found the open attempt and did not send it."""
        outcomes = [self._outcome(prepared, result, now) for prepared, result, now in answers]
        present = deliveries.record_outcomes(tx, outcomes)
        sent: list[event_store.Event] = []
        bounced: list[tuple[Message, Result, str, datetime]] = []
        results: list[str] = []
        for (prepared, result, now), outcome in zip(answers, outcomes, strict=True):
            message = prepared.message
            if message.id not in present:
                results.append("gone")
                continue
            results.append(outcome.status)
            if outcome.status == "sent":
                sent.append(_sent_event(message, now))
            elif outcome.status == "failed" and is_bad_mailbox(result):
                bounced.append((message, result, outcome.detail or "", now))
        events.record_many(tx, sent)
        for message, result, detail, now in bounced:
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
        return results

    def _outcome(self, prepared: Prepared, result: Result, now: datetime) -> deliveries.Outcome:
        message, detail = prepared.message, result.describe()

        def outcome(status: str, error: str | None, retry_at: datetime | None = None) -> deliveries.Outcome:
            code = None if result.status == "unknown" else result.code
            return deliveries.Outcome(
                message.id, prepared.attempt_id, status, status, code, detail, error, now, retry_at
            )

        if result.status == "sent":
            return outcome("sent", None)
        if result.status == "kept":
            # Stored, not sent: no `email.sent` event, so no webhook, metric or receipt attribution
            # claims the customer got it.
            return outcome("kept", None)
        if result.status == "unknown":
            return outcome("unknown", f"fate unknown: {detail}")
        if result.status == "temporary":
            too_old = now - message.created_at >= self.policy.give_up_after
            if prepared.attempt < self.policy.max_attempts and not too_old:
                return outcome("deferred", detail, now + self.policy.delay(prepared.attempt))
            return outcome("failed", f"gave up after {prepared.attempt} attempt(s): {detail}")
        return outcome("failed", detail)

    # -- helpers -------------------------------------------------------------------------------------

    def _settled_elsewhere(
        self, tx: Tx, message: Message, state: deliveries.State, blocked: str | None, now: datetime
    ) -> str | None:
        """Handle the cases in which this message must not be sent now: the outcome, or None."""
        if state.status in deliveries.FINAL:
            deliveries.finish(tx, message.id)
            return "skipped"
        if state.open_attempt:
            # An earlier attempt was handed to the transport and never answered: the process died in the
            # SMTP exchange, so the server may have the message. Never send it twice.
            deliveries.set_status(tx, message.id, "unknown", now, error=UNKNOWN_FATE)
            deliveries.finish(tx, message.id)
            return "unknown"
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
            reply_to=message.reply_to,
            extra_headers=message.headers,
        )


def _describe(exc: Exception) -> str:
    """An error as the message's recorded reason: its text, or its type when it has none; bounded."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def _sent_event(message: Message, now: datetime) -> event_store.Event:
    return events.new(
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


def sender_for(settings: Settings, metrics: Metrics | None = None) -> Sender:
    """The sender `build_worker` registers: its `duty` every round, its `close` when the worker stops."""
    policy = Policy(base_seconds=settings.delivery_retry_seconds)
    return Sender(
        transport_for(settings, metrics),
        public_url=settings.public_url,
        policy=policy,
        window_per_connection=settings.send_window_per_connection,
    )
