"""The sender on real SQLite and PostgreSQL: the two writes around each send, retries, bounces, and what a
restart does with an attempt whose outcome was never recorded. Transports: MemoryTransport and a real
SMTP sink (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartback import ids, metrics
from cartback.app import build_worker
from cartback.core import events as core_events
from cartback.core import suppressions as core_suppressions
from cartback.delivery import smtp
from cartback.delivery.outbox import OutboxTransport
from cartback.delivery.transport import Result
from cartback.scheduler import mail_sender
from cartback.settings import Settings
from cartback.store import deliveries, suppressions, workspaces
from cartback.store import messages as message_store
from cartback.store.db import Database
from cartback.store.tables import delivery_attempts, events, message_delivery, message_mime, messages
from cartback.testing import FrozenClock, MemoryTransport

sys.path.insert(0, str(Path(__file__).parent.parent))
from smtp_sink import SmtpSink

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
RAW = b"Subject: test\r\n\r\nbody\r\n"
USER_UNKNOWN = Result.permanent(
    550, "5.1.1 <gone@example.com>: Recipient address rejected: User unknown", "rcpt"
)


@dataclass
class FakeWorker:
    """What a duty uses of the worker."""

    db: Database
    clock: FrozenClock
    owner: str = "worker-a"
    lease: timedelta = timedelta(seconds=60)
    batch_size: int = 200
    duties: list[Any] = field(default_factory=list)
    stopping: bool = False
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)


def queue_message(
    db: Database,
    workspace_id: str,
    to: str,
    *,
    kind: str = "marketing",
    at: datetime = T0,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    from_email: str = "Shop <shop@example.com>",
) -> str:
    message = message_store.Message(
        id=ids.new_id("msg"),
        workspace_id=workspace_id,
        subscriber_id=None,
        sequence_id="seq_test",
        enrollment_id=ids.new_id("enr"),
        node_id="n1",
        kind=kind,
        to_email=to,
        from_email=from_email,
        subject="You left something behind",
        preheader=None,
        html="<p>Your cart: <a href='https://shop.example.com/c/1'>back to it</a></p>",
        text=None,
        status="queued",
        error=None,
        created_at=at,
        updated_at=at,
        sent_at=None,
        reply_to=reply_to,
        headers=headers,
    )

    def insert(tx: sa.Connection) -> None:
        message_store.insert(tx, message)
        deliveries.enqueue(tx, message, at, transport="smtp")

    db.write_sync(insert)
    return message.id


def run_duty(db: Database, duty: Callable[[Any], Any], worker: FakeWorker) -> int:
    """One round of the duty in an event loop of its own (connections pooled by the transport are closed
    at the end, as they belong to that loop)."""

    worker.db = Database(db.url)  # a stopped Database cannot start again

    async def main() -> int:
        await worker.db.start()
        try:
            return int(await duty(worker))
        finally:
            await duty.__self__.transport.close()
            await worker.db.stop()

    return asyncio.run(main())


def state(db: Database, message_id: str) -> tuple[Any, Any, list[Any]]:
    def read(tx: sa.Connection) -> tuple[Any, Any, list[Any]]:
        msg = tx.execute(sa.select(messages).where(messages.c.id == message_id)).one()
        delivery = tx.execute(
            sa.select(message_delivery, message_mime.c.mime)
            .outerjoin(message_mime, message_mime.c.message_id == message_delivery.c.message_id)
            .where(message_delivery.c.message_id == message_id)
        ).one()
        attempts = tx.execute(
            sa.select(delivery_attempts)
            .where(delivery_attempts.c.message_id == message_id)
            .order_by(delivery_attempts.c.attempt)
        ).all()
        return msg, delivery, attempts

    return db.read_sync(read)


def sent_events(db: Database, workspace_id: str) -> list[Any]:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(events).where(events.c.workspace_id == workspace_id, events.c.name == "email.sent")
        ).all()
    )


@pytest.fixture
def workspace_id(db, make_workspace) -> str:
    """A fresh workspace. The sender serves every workspace, and the PostgreSQL database is shared by the
    session: messages earlier tests left queued are taken off the queue so they do not mix in."""
    db.write_sync(
        lambda tx: tx.execute(
            message_delivery.update()
            .where(message_delivery.c.next_attempt_at.is_not(None))
            .values(next_attempt_at=None)
        )
    )
    return make_workspace().id


def test_sender_smtp_sends_once_with_its_message_id_and_one_click_headers(db, workspace_id):
    message_id = queue_message(db, workspace_id, "ann@example.com")
    worker = FakeWorker(db, FrozenClock(T0))
    with SmtpSink() as sink:
        duty = mail_sender.Sender(
            smtp.SmtpTransport.from_url(sink.url), public_url="https://shop.example.com"
        )
        assert run_duty(db, duty.duty, worker) == 1
        assert run_duty(db, duty.duty, worker) == 0  # nothing left, nothing sent twice
        got = sink.wait_for(1)
    msg, delivery, attempts = state(db, message_id)
    assert len(got) == 1 and got[0].rcpt_tos == ["ann@example.com"] and got[0].mail_from == "shop@example.com"
    parsed = got[0].message
    assert parsed["Message-ID"] == delivery.rfc_message_id == f"<{message_id}@example.com>"
    assert parsed["X-Cartback-Message-Id"] == message_id
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"].startswith("<https://shop.example.com/u/")
    assert "<mailto:unsubscribe@example.com?subject=unsubscribe%20" in parsed["List-Unsubscribe"]
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",)).get_content()
    assert "back to it (https://shop.example.com/c/1)" in plain
    assert msg.status == "sent" and msg.sent_at == T0
    assert delivery.next_attempt_at is None and delivery.lease_owner is None and delivery.attempts == 1
    assert delivery.mime and f"Message-ID: <{message_id}@example.com>" in delivery.mime
    assert [(a.outcome, a.smtp_code, a.finished_at is not None) for a in attempts] == [("sent", 250, True)]
    [event] = sent_events(db, workspace_id)
    assert event.properties["messageId"] == message_id and event.properties["kind"] == "marketing"
    assert event.idempotency_key == f"email.sent:{message_id}"


def test_worker_stop_closes_the_pooled_smtp_connections(db, workspace_id):
    """The worker `build_worker` makes says QUIT on the SMTP connections it pooled when it stops: left
    open, they stayed with the server until its timeout, and with the process until collected."""
    with SmtpSink() as sink:
        settings = Settings(database_url=db.url, smtp_url=sink.url, tick_seconds=0.05)
        queue_message(db, workspace_id, "ann@example.com")

        async def main() -> None:
            own = Database(db.url)
            await own.start()
            worker = build_worker(settings, own, FrozenClock(T0))
            task = asyncio.create_task(worker.run())
            try:
                for _ in range(400):
                    if sink.received:
                        break
                    await asyncio.sleep(0.025)
                assert sink.received, "the message was not sent"
                assert sink.handler.quits == 0  # kept open for the next message
            finally:
                await worker.stop_within(task, 5)
                await own.stop()

        asyncio.run(main())
        assert sink.handler.quits == 1


def test_sender_outbox_stores_the_mime_in_the_same_write_and_keeps_it(db, workspace_id):
    """No mail server is set: the message is stored whole and `kept`, not `sent`: no sent time, no
    `email.sent` event (nothing may claim the customer got it)."""
    message_id = queue_message(db, workspace_id, "bob@example.com", kind="transactional")
    worker = FakeWorker(db, FrozenClock(T0))
    duty = mail_sender.Sender(OutboxTransport(), public_url="https://shop.example.com")
    assert run_duty(db, duty.duty, worker) == 1
    msg, delivery, attempts = state(db, message_id)
    assert msg.status == "kept" and msg.sent_at is None and msg.error is None
    parsed = email.message_from_string(delivery.mime, policy=email.policy.default)
    assert parsed["Message-ID"] == delivery.rfc_message_id
    assert parsed["List-Unsubscribe"] is None  # transactional mail carries no unsubscribe header
    assert [(a.outcome, a.finished_at) for a in attempts] == [("kept", T0)]
    assert "no mail server is set" in attempts[0].detail
    assert sent_events(db, workspace_id) == []
    # Settled: the sender does not take it up again.
    assert run_duty(db, duty.duty, worker) == 0


def test_sender_retries_temporary_failures_with_backoff_then_sends(db, workspace_id):
    message_id = queue_message(db, workspace_id, "cat@example.com")
    clock = FrozenClock(T0)
    worker = FakeWorker(db, clock)
    later = Result.temporary(451, "4.3.0 try again later", "data")
    transport = MemoryTransport([later, later])
    duty = mail_sender.Sender(
        transport, public_url="https://x.test", policy=mail_sender.Policy(base_seconds=10)
    )
    assert run_duty(db, duty.duty, worker) == 1
    msg, delivery, _ = state(db, message_id)
    assert msg.status == "deferred" and msg.error == "451 4.3.0 try again later"
    assert timedelta(seconds=7.5) <= delivery.next_attempt_at - T0 <= timedelta(seconds=12.5)
    assert run_duty(db, duty.duty, worker) == 0  # not due yet
    clock.advance(seconds=13)
    assert run_duty(db, duty.duty, worker) == 1
    _, delivery, _ = state(db, message_id)
    assert timedelta(seconds=15) <= delivery.next_attempt_at - clock.now() <= timedelta(seconds=25)
    clock.advance(seconds=26)
    assert run_duty(db, duty.duty, worker) == 1
    msg, delivery, attempts = state(db, message_id)
    assert msg.status == "sent" and delivery.attempts == 3
    assert [(a.attempt, a.outcome, a.smtp_code) for a in attempts] == [
        (1, "deferred", 451),
        (2, "deferred", 451),
        (3, "sent", 250),
    ]
    assert len(transport.sent) == 1 and transport.calls == 3
    # Every attempt sent the very same bytes: one Message-ID, one Date.
    assert transport.sent[0][2].decode() == delivery.mime


def test_sender_gives_up_after_max_attempts(db, workspace_id):
    message_id = queue_message(db, workspace_id, "dan@example.com")
    clock = FrozenClock(T0)
    worker = FakeWorker(db, clock)
    transport = MemoryTransport([Result.temporary(None, "connection refused", "connect")] * 5)
    duty = mail_sender.Sender(
        transport, public_url="https://x.test", policy=mail_sender.Policy(base_seconds=1, max_attempts=2)
    )
    run_duty(db, duty.duty, worker)
    clock.advance(seconds=5)
    run_duty(db, duty.duty, worker)
    msg, delivery, attempts = state(db, message_id)
    assert msg.status == "failed" and msg.error == "gave up after 2 attempt(s): connection refused"
    assert delivery.next_attempt_at is None
    assert [a.outcome for a in attempts] == ["deferred", "failed"]


def test_sender_unknown_mailbox_fails_and_suppresses_the_address(db, workspace_id):
    first = queue_message(db, workspace_id, "Gone@example.com")
    worker = FakeWorker(db, FrozenClock(T0))
    transport = MemoryTransport([USER_UNKNOWN])
    duty = mail_sender.Sender(transport, public_url="https://x.test")
    run_duty(db, duty.duty, worker)
    msg, _, attempts = state(db, first)
    assert msg.status == "failed" and attempts[0].smtp_code == 550
    found = db.read_sync(lambda tx: suppressions.for_email(tx, workspace_id, "gone@example.com"))
    assert [(s.reason, s.source) for s in found] == [("bounced", "smtp")]
    # A message queued before the bounce was known is not sent either.
    second = queue_message(db, workspace_id, "gone@example.com", kind="transactional")
    run_duty(db, duty.duty, worker)
    msg, _, attempts = state(db, second)
    assert msg.status == "suppressed" and "bounced" in msg.error and attempts == []
    assert transport.calls == 1


def test_sender_never_resends_a_message_whose_attempt_never_finished(db, workspace_id):
    """The process died after the first write (and perhaps after the server took the message): the next
    worker marks it unknown and does not send it, and sends a message claimed beside it as usual."""
    message_id = queue_message(db, workspace_id, "eve@example.com")
    clock = FrozenClock(T0)
    dead = mail_sender.Sender(MemoryTransport(), public_url="https://x.test")
    db.write_sync(lambda tx: deliveries.claim_due(tx, "dead", T0, lease=timedelta(seconds=60), limit=10))
    [pending] = db.read_sync(lambda tx: deliveries.load_many(tx, [message_id]))
    [prepared] = db.write_sync(lambda tx: dead.start(tx, [(pending, RAW)], "dead", T0, timedelta(seconds=60)))
    assert isinstance(prepared, mail_sender.Prepared)
    msg, _, attempts = state(db, message_id)
    assert msg.status == "sending" and [(a.outcome, a.finished_at) for a in attempts] == [("unknown", None)]

    worker = FakeWorker(db, clock, owner="restarted")
    transport = MemoryTransport()
    duty = mail_sender.Sender(transport, public_url="https://x.test")
    assert run_duty(db, duty.duty, worker) == 0  # the dead worker's lease still holds
    fresh = queue_message(db, workspace_id, "fresh@example.com", at=T0 + timedelta(seconds=61))
    clock.advance(seconds=61)
    assert run_duty(db, duty.duty, worker) == 2
    msg, delivery, attempts = state(db, message_id)
    assert msg.status == "unknown" and msg.error == mail_sender.UNKNOWN_FATE
    assert delivery.next_attempt_at is None and duty.stats.unknown == 1
    assert [(a.outcome, a.finished_at) for a in attempts] == [("unknown", None)]
    assert state(db, fresh)[0].status == "sent" and duty.stats.sent == 1
    assert [envelope[1] for envelope in transport.sent] == [["fresh@example.com"]]
    assert run_duty(db, duty.duty, worker) == 0


def test_sender_leaves_a_message_another_worker_took_over(db, workspace_id):
    message_id = queue_message(db, workspace_id, "fay@example.com")
    lease = timedelta(seconds=60)
    db.write_sync(lambda tx: deliveries.claim_due(tx, "slow", T0, lease=lease, limit=10))
    later = T0 + timedelta(seconds=61)
    assert db.write_sync(lambda tx: deliveries.claim_due(tx, "fast", later, lease=lease, limit=10)) == [
        message_id
    ]
    [pending] = db.read_sync(lambda tx: deliveries.load_many(tx, [message_id]))
    slow = mail_sender.Sender(MemoryTransport(), public_url="https://x.test")
    assert db.write_sync(lambda tx: slow.start(tx, [(pending, RAW)], "slow", later, lease)) == ["skipped"]
    fast = mail_sender.Sender(MemoryTransport(), public_url="https://x.test")
    [prepared] = db.write_sync(lambda tx: fast.start(tx, [(pending, RAW)], "fast", later, lease))
    assert isinstance(prepared, mail_sender.Prepared)


def test_sender_connection_lost_during_data_is_unknown_not_retried(db, workspace_id):
    message_id = queue_message(db, workspace_id, "gus@example.com")
    clock = FrozenClock(T0)
    worker = FakeWorker(db, clock)
    transport = MemoryTransport([Result.unknown("connection lost during DATA: reset")])
    duty = mail_sender.Sender(transport, public_url="https://x.test")
    run_duty(db, duty.duty, worker)
    clock.advance(hours=1)
    run_duty(db, duty.duty, worker)
    msg, delivery, attempts = state(db, message_id)
    assert msg.status == "unknown" and delivery.next_attempt_at is None and transport.calls == 1
    assert [a.outcome for a in attempts] == ["unknown"] and attempts[0].finished_at is not None


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://mail.example.com", "must start with smtp:// or smtps://"),
        ("smtp://", "has no host"),
        ("smtp://mail.example.com:99999", "bad port"),
        ("smtps://mail.example.com?starttls=1", "TLS already"),
        ("smtp://mail.example.com?starttls=maybe", "must be 1 or 0"),
        ("smtp://mail.example.com?tls=1", "unknown option"),
    ],
)
def test_settings_refuse_a_bad_smtp_url(url, error):
    with pytest.raises(ValueError, match=error):
        Settings(smtp_url=url)


def test_smtp_url_forms():
    c = smtp.parse_url("smtp://user%40x:p%3Ass@mail.example.com?starttls=1")
    assert (c.host, c.port, c.username, c.password, c.start_tls, c.use_tls) == (
        "mail.example.com",
        587,
        "user@x",
        "p:ss",
        True,
        False,
    )
    assert smtp.parse_url("smtps://mail.example.com").port == 465
    assert smtp.parse_url("smtp://127.0.0.1:2525").start_tls is None
    assert Settings(smtp_url="").smtp_url is None


def test_bounce_classification():
    assert mail_sender.is_bad_mailbox(USER_UNKNOWN)
    assert mail_sender.is_bad_mailbox(Result.permanent(550, "No such user here", "data"))
    assert not mail_sender.is_bad_mailbox(Result.permanent(550, "5.7.1 message rejected as spam", "data"))
    assert not mail_sender.is_bad_mailbox(Result.permanent(553, "5.1.8 sender address rejected", "mail"))
    assert not mail_sender.is_bad_mailbox(Result.temporary(450, "4.1.1 mailbox busy", "rcpt"))


class RepliesByRecipient(MemoryTransport):
    """Answers each recipient with its own result: ids made in the same millisecond do not sort in the
    order they were made, so a script consumed in send order would not say which message gets which."""

    def __init__(self, replies: dict[str, Result], *, concurrency: int) -> None:
        super().__init__(concurrency=concurrency)
        self.by_recipient = replies

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        self.replies = [self.by_recipient[recipients[0]]]
        return await super().send(envelope_from, recipients, mime)


def test_sender_starts_and_records_a_window_in_one_write_each(db, workspace_id):
    """Eight messages with four connections: one write starts all eight (one of them suppressed meanwhile),
    one records every answer, each its own fate, and the counts and events match one by one."""
    db.write_sync(
        lambda tx: core_suppressions.suppress(tx, workspace_id, "off@example.com", "unsubscribed", "api", T0)
    )
    ids_ = [queue_message(db, workspace_id, f"m{i}@example.com") for i in range(6)]
    ids_.append(queue_message(db, workspace_id, "off@example.com"))
    ids_.append(queue_message(db, workspace_id, "gone@example.com"))
    replies = {
        "m0@example.com": Result.sent(250, "ok"),
        "m1@example.com": Result.temporary(451, "4.3.0 later", "data"),
        "m2@example.com": Result.unknown("connection lost during DATA: reset"),
        "m3@example.com": Result.sent(250, "ok"),
        "m4@example.com": Result.permanent(554, "5.7.1 rejected as spam", "data"),
        "m5@example.com": Result.sent(250, "ok"),
        "gone@example.com": USER_UNKNOWN,
    }
    transport = RepliesByRecipient(replies, concurrency=4)
    worker = FakeWorker(db, FrozenClock(T0))
    duty = mail_sender.Sender(transport, public_url="https://x.test")
    assert run_duty(db, duty.duty, worker) == 8
    # The claim, the write that starts all eight, the write that records the seven answers.
    assert worker.db.stats.jobs == 3
    statuses = [state(db, i)[0].status for i in ids_]
    assert statuses == ["sent", "deferred", "unknown", "sent", "failed", "sent", "suppressed", "failed"]
    attempts = [[(a.outcome, a.smtp_code) for a in state(db, i)[2]] for i in ids_]
    assert attempts == [
        [("sent", 250)],
        [("deferred", 451)],
        [("unknown", None)],
        [("sent", 250)],
        [("failed", 554)],
        [("sent", 250)],
        [],
        [("failed", 550)],
    ]
    assert all(a.finished_at == T0 for i in ids_ for a in state(db, i)[2])
    assert state(db, ids_[1])[1].next_attempt_at > T0
    assert all(state(db, i)[1].next_attempt_at is None for i in ids_ if i != ids_[1])
    assert sorted(e.properties["messageId"] for e in sent_events(db, workspace_id)) == sorted(
        [ids_[0], ids_[3], ids_[5]]
    )
    bounced = db.read_sync(lambda tx: suppressions.for_email(tx, workspace_id, "gone@example.com"))
    assert [s.reason for s in bounced] == ["bounced"]
    assert (duty.stats.sent, duty.stats.deferred, duty.stats.unknown, duty.stats.failed) == (3, 1, 1, 2)
    assert duty.stats.suppressed == 1 and transport.calls == 7


def test_record_many_appends_each_idempotency_key_once(db, workspace_id):
    """The sender's set-wise event append: a key already in the log, or twice in one batch, is appended
    once; keys are per workspace."""

    def sent(key: str, ws: str = workspace_id) -> Any:
        return core_events.new(
            ws,
            name="email.sent",
            source="cartback",
            subscriber_id=None,
            properties={},
            now=T0,
            idempotency_key=key,
        )

    other = db.write_sync(lambda tx: workspaces.create_workspace(tx, f"other-{ids.new_id('x')}", T0)).id
    db.write_sync(lambda tx: core_events.record_many(tx, [sent("email.sent:a")]))
    db.write_sync(
        lambda tx: core_events.record_many(
            tx,
            [sent("email.sent:a"), sent("email.sent:b"), sent("email.sent:b"), sent("email.sent:a", other)],
        )
    )
    keys = sorted(e.idempotency_key for e in sent_events(db, workspace_id))
    assert keys == ["email.sent:a", "email.sent:b"]
    assert [e.idempotency_key for e in sent_events(db, other)] == ["email.sent:a"]


class DeletesWhileSending(MemoryTransport):
    """Deletes one message (as deleting its workspace would) while it is in the hands of the transport."""

    def __init__(self, db: Database, doomed: str, *, concurrency: int) -> None:
        super().__init__(concurrency=concurrency)
        self.db, self.doomed = db, doomed

    async def send(self, envelope_from: str, recipients: list[str], mime: bytes) -> Result:
        if recipients == [self.doomed]:
            self.db.write_sync(
                lambda tx: tx.execute(sa.delete(messages).where(messages.c.to_email == self.doomed))
            )
        return await super().send(envelope_from, recipients, mime)


def test_sender_records_a_message_deleted_mid_send_as_gone(db, workspace_id):
    """An answer for a message deleted meanwhile records nothing for it (no email.sent event, no row
    brought back) and the others of its write are recorded as usual."""
    kept = [queue_message(db, workspace_id, f"k{i}@example.com") for i in range(3)]
    doomed = queue_message(db, workspace_id, "doomed@example.com")
    worker = FakeWorker(db, FrozenClock(T0))
    duty = mail_sender.Sender(
        DeletesWhileSending(db, "doomed@example.com", concurrency=4), public_url="https://x.test"
    )
    assert run_duty(db, duty.duty, worker) == 4
    assert (duty.stats.sent, duty.stats.gone) == (3, 1)
    assert [state(db, i)[0].status for i in kept] == ["sent"] * 3
    assert sorted(e.properties["messageId"] for e in sent_events(db, workspace_id)) == sorted(kept)
    left = db.read_sync(
        lambda tx: tx.execute(
            sa.select(delivery_attempts.c.id).where(delivery_attempts.c.message_id == doomed)
        ).all()
    )
    assert left == []


def test_sender_puts_reply_to_and_custom_headers_in_the_message(db, workspace_id):
    queue_message(
        db,
        workspace_id,
        "pat@example.com",
        kind="transactional",
        reply_to='"Help, Desk" <help@shop.example.com>',
        headers={"X-Campaign": "spring-sale", "X-Long": "token-" * 20},
    )
    transport = MemoryTransport()
    assert (
        run_duty(
            db,
            mail_sender.Sender(transport, public_url="https://x.test").duty,
            FakeWorker(db, FrozenClock(T0)),
        )
        == 1
    )
    parsed = email.message_from_bytes(transport.sent[0][2], policy=email.policy.default)
    assert parsed["Reply-To"].addresses[0].display_name == "Help, Desk"
    assert parsed["Reply-To"].addresses[0].addr_spec == "help@shop.example.com"
    assert parsed["X-Campaign"] == "spring-sale"
    assert parsed["X-Long"] == ("token-" * 20).strip()
    assert all(len(line) <= 78 for line in transport.sent[0][2].split(b"\r\n\r\n")[0].split(b"\r\n"))


def test_sender_fails_a_message_that_cannot_be_built_alone_and_sends_the_rest_at_once(
    db, workspace_id, make_workspace
):
    """Rows stored before the edge refused such values: workspace A's message whose From carries CR/LF and
    one whose recipient SMTP cannot carry (non-ASCII) are claimed between workspace B's messages. B's
    reach the SMTP server in the same round; A's are failed with the reason, each with its attempt, and
    never retried."""
    other = make_workspace().id
    at = [T0 + timedelta(milliseconds=i) for i in range(5)]
    good_1 = queue_message(db, other, "b1@example.com", at=at[0], kind="transactional")
    crlf = queue_message(
        db, workspace_id, "a1@example.com", at=at[1], from_email="Shop <shop@t1.example>\r\nX-Injected: 1"
    )
    good_2 = queue_message(db, other, "b2@example.com", at=at[2])
    unencodable = queue_message(db, workspace_id, "jörg@exämple.com", at=at[3])
    good_3 = queue_message(db, other, "b3@example.com", at=at[4])
    clock = FrozenClock(T0 + timedelta(seconds=1))
    worker = FakeWorker(db, clock)
    with SmtpSink() as sink:
        duty = mail_sender.Sender(
            smtp.SmtpTransport.from_url(sink.url), public_url="https://shop.example.com"
        )
        assert run_duty(db, duty.duty, worker) == 5
        got = sink.wait_for(3)
        assert sorted(r.rcpt_tos[0] for r in got) == ["b1@example.com", "b2@example.com", "b3@example.com"]
        assert all("X-Injected" not in r.message for r in got)
        assert [state(db, i)[0].status for i in (good_1, good_2, good_3)] == ["sent"] * 3
        msg, delivery, attempts = state(db, crlf)
        assert msg.status == "failed" and delivery.next_attempt_at is None and delivery.lease_owner is None
        assert msg.error.startswith("cannot build the message: ") and "line" in msg.error
        assert [(a.outcome, a.detail, a.finished_at is not None) for a in attempts] == [
            ("failed", msg.error, True)
        ]
        msg, delivery, attempts = state(db, unencodable)
        assert msg.status == "failed" and delivery.next_attempt_at is None
        assert "jörg@exämple.com" in msg.error and "ASCII" in msg.error
        assert [a.outcome for a in attempts] == ["failed"]
        assert (duty.stats.sent, duty.stats.failed) == (3, 2)
        # Nothing is left to claim: the failed ones are off the queue, not back at every lease expiry.
        clock.advance(seconds=120)
        assert run_duty(db, duty.duty, worker) == 0
    assert len(sent_events(db, other)) == 3 and sent_events(db, workspace_id) == []


class RefusesOneRow(mail_sender.Sender):
    """A sender whose database refuses one message's row when starting it (as a value the database cannot
    store would): every write that starts that message fails."""

    def __init__(self, *args: Any, refused: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = refused

    def start(self, tx, items, owner, now, lease):  # type: ignore[no-untyped-def]
        if any(pending.message.id == self.refused for pending, _ in items):
            raise sa.exc.DataError("INSERT INTO message_mime ...", {}, Exception("value refused"))
        return super().start(tx, items, owner, now, lease)


def test_sender_defers_a_message_whose_write_fails_alone_and_sends_the_rest(db, workspace_id, make_workspace):
    """A write that fails for one message's sake is written again one message at a time: the others are
    sent in the same round; that one is deferred with the reason by the retry policy, and failed once the
    policy gives up."""
    other = make_workspace().id
    good = [
        queue_message(db, other, f"c{i}@example.com", at=T0 + timedelta(milliseconds=2 * i)) for i in range(2)
    ]
    bad = queue_message(db, workspace_id, "d@example.com", at=T0 + timedelta(milliseconds=1))
    clock = FrozenClock(T0 + timedelta(seconds=1))
    worker = FakeWorker(db, clock)
    with SmtpSink() as sink:
        duty = RefusesOneRow(
            smtp.SmtpTransport.from_url(sink.url),
            public_url="https://x.test",
            policy=mail_sender.Policy(base_seconds=10, max_attempts=2),
            refused=bad,
        )
        assert run_duty(db, duty.duty, worker) == 3
        assert sorted(r.rcpt_tos[0] for r in sink.wait_for(2)) == ["c0@example.com", "c1@example.com"]
    assert [state(db, i)[0].status for i in good] == ["sent", "sent"]
    msg, delivery, attempts = state(db, bad)
    assert (
        msg.status == "deferred"
        and msg.error.startswith("could not start the attempt: ")
        and "value refused" in msg.error
    )
    assert delivery.lease_owner is None and delivery.next_attempt_at > clock.now()
    assert [(a.outcome, a.detail) for a in attempts] == [("deferred", msg.error)]
    clock.advance(seconds=13)
    assert run_duty(db, duty.duty, worker) == 1
    msg, delivery, attempts = state(db, bad)
    assert msg.status == "failed" and msg.error.startswith("gave up after 2 attempt(s): could not start")
    assert delivery.next_attempt_at is None and [a.outcome for a in attempts] == ["deferred", "failed"]
