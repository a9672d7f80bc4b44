"""The statuses of messages and enrollments, and the named sets of them every figure is counted by.

One place for them, so that a report, a page and a rule cannot each decide what "sent" or "live" means;
CHECK constraints on `messages.status` and `enrollments.status` keep the stored values within these.
docs/delivery.md says what each message status means, docs/analytics.md which sets the figures count.
"""

from __future__ import annotations

from enum import StrEnum


class MessageStatus(StrEnum):
    QUEUED = "queued"  # stored, waiting for the sender
    SENDING = "sending"  # an attempt is open: handed to the transport, no answer recorded yet
    DEFERRED = "deferred"  # a temporary failure; retried later
    SENT = "sent"  # the transport accepted it
    # No mail server is configured (the outbox transport): the message is stored, complete, and never left
    # the machine. Settled, but neither sent nor delivered.
    KEPT = "kept"
    FAILED = "failed"  # refused for good, or retried too long
    SUPPRESSED = "suppressed"  # never sent: the address is suppressed
    UNKNOWN = "unknown"  # the connection or the process died during the exchange: maybe received


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"  # a step is due at next_run_at
    WAITING = "waiting"  # for an event, until next_run_at
    COMPLETED = "completed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    FAILED = "failed"


# The figure `sent`: handed to the transport with an outcome recorded (accepted, refused, or fate unknown).
# A queued, sending or deferred message is not sent yet; a suppressed one never will be; a kept one was
# stored in the outbox because no mail server is set, so no mail server ever had it.
HANDED = frozenset({MessageStatus.SENT, MessageStatus.FAILED, MessageStatus.UNKNOWN})
# The figure `delivered`: the transport accepted it.
DELIVERED = frozenset({MessageStatus.SENT})
# Still the sender's work.
PENDING = frozenset({MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.DEFERRED})
# Kept in the outbox: complete, not delivered (counted apart, so an owner sees mail is not going out).
KEPT = frozenset({MessageStatus.KEPT})
# Nothing more will happen to it.
SETTLED = frozenset(set(MessageStatus) - PENDING)

# A run still going: it can send, wait, or be cancelled.
LIVE = frozenset({EnrollmentStatus.ACTIVE, EnrollmentStatus.WAITING})
ENDED = frozenset(set(EnrollmentStatus) - LIVE)


def check(column: str, statuses: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that keeps `column` to these statuses (in declaration order)."""
    return f"{column} IN ({', '.join(repr(str(s)) for s in statuses)})"


def values(group: frozenset[MessageStatus] | frozenset[EnrollmentStatus]) -> list[str]:
    """The set's statuses as plain strings (sorted, so a query's text stays the same), for SQL."""
    return sorted(str(s) for s in group)
