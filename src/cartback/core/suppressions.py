"""Who may get mail. Unsubscribed, bounced and complained are kept apart, each with its source and time:
none of them gets marketing mail; transactional mail still reaches unsubscribed addresses, never bounced
or complained ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from cartback import errors
from cartback.core import events
from cartback.store import subscribers as subscriber_store
from cartback.store import suppressions as store
from cartback.store.db import Tx
from cartback.store.suppressions import Suppression as Suppression  # re-exported for api/

REASONS = ("unsubscribed", "bounced", "complained")
_BLOCKS = {"marketing": set(REASONS), "transactional": {"bounced", "complained"}}
# The subscriber status each suppression reason implies (Sequenzy shows complaints as unsubscribed).
_STATUS = {"unsubscribed": "unsubscribed", "bounced": "bounced", "complained": "unsubscribed"}
_EVENT = {"unsubscribed": "email.unsubscribed", "bounced": "email.bounced", "complained": "email.complained"}


def blocking_reason(tx: Tx, workspace_id: str, email: str, kind: str) -> str | None:
    """Why mail of `kind` (marketing or transactional) must not go to `email`, or None."""
    return reason_among(store.for_email(tx, workspace_id, email), kind)


def blocking_reasons(tx: Tx, mail: list[tuple[str, str, str]]) -> list[str | None]:
    """blocking_reason of many (workspace, address, kind) at once: one query per workspace."""
    by_workspace: dict[str, list[str]] = {}
    for workspace_id, email, _ in mail:
        by_workspace.setdefault(workspace_id, []).append(email)
    found = {ws: store.for_emails(tx, ws, emails) for ws, emails in by_workspace.items()}
    return [reason_among(found[ws][subscriber_store.email_key(email)], kind) for ws, email, kind in mail]


def reason_among(items: list[store.Suppression], kind: str) -> str | None:
    """blocking_reason over an address's suppressions already read (a batch reads them set-wise)."""
    blocked = _BLOCKS[kind]
    for item in items:
        if item.reason in blocked:
            return f"address {item.reason} ({item.source})"
    return None


def suppress(
    tx: Tx,
    workspace_id: str,
    email: str,
    reason: str,
    source: str,
    now: datetime,
    *,
    detail: str | None = None,
    properties: dict[str, object] | None = None,
) -> bool:
    """Suppress an address: record it, set the subscriber's status, and append the email.* event that
    stops their runs and feeds analytics. Idempotent; True if it was new."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    added = store.add(tx, workspace_id, email, reason, source, now, detail)
    sub = subscriber_store.find_by_email(tx, workspace_id, email)
    if (
        sub is not None
        and sub.status != _STATUS[reason]
        and not (sub.status == "bounced" and reason != "bounced")
    ):
        subscriber_store.save(
            tx,
            sub.with_changes(
                status=_STATUS[reason], unsubscribed_at=sub.unsubscribed_at or now, updated_at=now
            ),
        )
    if added:
        events.record(
            tx,
            workspace_id,
            name=_EVENT[reason],
            source=events.SOURCE_CARTBACK,
            subscriber_id=sub.id if sub else None,
            properties={"email": email, "reason": reason, "source": source, **(properties or {})},
            now=now,
        )
    return added


# The subscriber status the remaining suppressions imply, strongest first.
_PRECEDENCE = ("bounced", "complained", "unsubscribed")


@dataclass(frozen=True)
class Unsuppressed:
    removed: list[store.Suppression]
    remaining: list[store.Suppression]
    reactivated_subscriber_ids: list[str]


def strongest(items: list[store.Suppression]) -> store.Suppression | None:
    """The suppression that decides how an address reads back: bounced, then complained, then unsubscribed."""
    ranked = sorted(items, key=lambda s: _PRECEDENCE.index(s.reason) if s.reason in _PRECEDENCE else 99)
    return ranked[0] if ranked else None


def unsuppress(
    tx: Tx, workspace_id: str, email: str, now: datetime, *, reasons: tuple[str, ...] | None = None
) -> Unsuppressed:
    """Lift an address's suppressions (all, or those for `reasons`). Lifting an unsubscribe is an explicit
    re-subscribe: when nothing suppresses the address any more, its subscriber goes back to `active`.
    When something remains, the subscriber's status follows what remains."""
    current = store.for_email(tx, workspace_id, email)
    removed = [s for s in current if not reasons or s.reason in reasons]
    if not removed:
        return Unsuppressed([], current, [])
    store.remove(tx, workspace_id, email, tuple(s.reason for s in removed))
    remaining = [s for s in current if s not in removed]
    reactivated: list[str] = []
    sub = subscriber_store.find_by_email(tx, workspace_id, email)
    if sub is not None:
        left = strongest(remaining)
        status = _STATUS[left.reason] if left else "active"
        if sub.status != status:
            sub = sub.with_changes(
                status=status,
                unsubscribed_at=None if status == "active" else sub.unsubscribed_at or now,
                updated_at=now,
            )
            subscriber_store.save(tx, sub)
            if status == "active":
                reactivated.append(sub.id)
    return Unsuppressed(removed, remaining, reactivated)


@dataclass(frozen=True)
class Consent:
    """A store platform's record of a person's email marketing consent (Shopify's
    `email_marketing_consent`): given or withdrawn, and when the shopper gave or withdrew it."""

    subscribed: bool
    # When the platform says the consent last changed; None when it does not say.
    at: datetime | None
    # connector:shopify ...
    source: str


def apply_consent(tx: Tx, workspace_id: str, email: str, consent: Consent, now: datetime) -> str:
    """What a platform's consent means here. Withdrawn: the address is suppressed as `unsubscribed` through
    `suppress`, as an unsubscribe link would. Given: an explicit subscribe re-consents, as Klaviyo's
    subscribe does, so it lifts an `unsubscribed` suppression (as `unsuppress` lifts one by hand), but only
    one recorded before the consent was given. A platform keeps sending the consent it last knew with
    every update of the person, and an unsubscribe through cartback's own link never reaches the
    platform: consent given before that unsubscribe, or with no time, is not a new subscribe. Bounces and
    complaints are never lifted: they come from the mailbox, not from the shopper's choice.
    Returns `suppressed`, `already_suppressed`, `resubscribed` or `unchanged`."""
    if not consent.subscribed:
        added = suppress(tx, workspace_id, email, "unsubscribed", consent.source, now)
        return "suppressed" if added else "already_suppressed"
    if consent.at is None:
        return "unchanged"
    # A consent time ahead of this clock (the platform's clock runs ahead) counts as now, so that a
    # future-dated consent cannot outrank unsubscribes still to come.
    given_at = min(consent.at, now)
    earlier = [
        s
        for s in store.for_email(tx, workspace_id, email)
        if s.reason == "unsubscribed" and s.created_at < given_at
    ]
    if not earlier:
        return "unchanged"
    unsuppress(tx, workspace_id, email, now, reasons=("unsubscribed",))
    return "resubscribed"


@dataclass(frozen=True)
class Lift:
    email: str
    reason: str


def lift(tx: Tx, workspace_id: str, lifted: Lift, now: datetime) -> Unsuppressed:
    """Lift one suppression the owner names: an address not suppressed for that reason is a 404."""
    if lifted.reason not in REASONS:
        raise errors.InvalidInput(f"The reason must be one of {', '.join(REASONS)}.")
    result = unsuppress(tx, workspace_id, lifted.email, now, reasons=(lifted.reason,))
    if not result.removed:
        raise errors.NotFound(f"{lifted.email} is not suppressed for {lifted.reason} in this workspace.")
    return result


# -- the suppression resource of the API ----------------------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    search: str | None
    reason: str | None
    limit: int
    offset: int
    order: str
    sort: str


def listing(tx: Tx, workspace_id: str, query: ListQuery, now: datetime) -> tuple[list[Suppression], int]:
    """A page of the workspace's suppressions, one per (address, reason), and how many match."""
    return store.listing(
        tx,
        workspace_id,
        search=query.search,
        reason=query.reason,
        limit=query.limit,
        offset=query.offset,
        order=query.order,
        sort=query.sort,
    )


@dataclass(frozen=True)
class Addition:
    email: str
    reason: str
    source: str
    detail: str | None = None


def add(tx: Tx, workspace_id: str, addition: Addition, now: datetime) -> tuple[bool, Suppression]:
    """Suppress an address by hand, through the same rule as an unsubscribe link or a bounce (`suppress`);
    whether it was new, and the suppression as stored."""
    created = suppress(
        tx, workspace_id, addition.email, addition.reason, addition.source, now, detail=addition.detail
    )
    item = next(s for s in store.for_email(tx, workspace_id, addition.email) if s.reason == addition.reason)
    return created, item


@dataclass(frozen=True)
class Standing:
    """What holds for one address: its suppressions, and whether it is one of the workspace's subscribers."""

    items: list[Suppression]
    known: bool


def standing(tx: Tx, workspace_id: str, email: str, now: datetime) -> Standing:
    known = subscriber_store.find_by_email(tx, workspace_id, email) is not None
    return Standing(store.for_email(tx, workspace_id, email), known)


@dataclass(frozen=True)
class Removal:
    email: str
    # None lifts every reason.
    reasons: tuple[str, ...] | None = None


def remove(tx: Tx, workspace_id: str, removal: Removal, now: datetime) -> Unsuppressed:
    """Lift an address's suppressions (see `unsuppress`); nothing removed when none matched."""
    return unsuppress(tx, workspace_id, removal.email, now, reasons=removal.reasons)


def bounce_detail(bounce_type: str | None, sub_type: str | None, diagnostic: str | None) -> str:
    """The `detail` a bounce notification leaves on its suppression: a small JSON object, so that the
    Sequenzy API can give back bounceType and bounceSubType, and a person can still read it."""
    data = {"bounceType": bounce_type, "bounceSubType": sub_type, "diagnostic": diagnostic}
    return json.dumps({k: v for k, v in data.items() if v}, sort_keys=True)


def parse_detail(detail: str | None) -> dict[str, str]:
    """The fields `bounce_detail` wrote, or {"diagnostic": detail} for a plain-text detail."""
    if not detail:
        return {}
    if detail.startswith("{"):
        try:
            data = json.loads(detail)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items() if v is not None}
    return {"diagnostic": detail}


# -- provider notifications ----------------------------------------------------------------------------

# What a bounce or complaint notification turns into; `kind` is the provider's meaning, already mapped.
KINDS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe")
_KIND_REASON = {"hard_bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}


@dataclass(frozen=True)
class Notice:
    kind: str
    email: str
    # webhook:ses | webhook:postmark | webhook:generic
    source: str
    bounce_type: str | None = None
    bounce_sub_type: str | None = None
    diagnostic: str | None = None
    # The provider's id for the notification: a replayed soft bounce then records no second event.
    notice_id: str | None = None


def apply_notices(tx: Tx, workspace_id: str, notices: list[Notice], now: datetime) -> list[str]:
    """The inbound webhook's use case: one provider delivery of notifications, acted on in one unit of
    work; what apply_notice did with each, in order."""
    return [apply_notice(tx, workspace_id, n, now) for n in notices]


def apply_notice(tx: Tx, workspace_id: str, notice: Notice, now: datetime) -> str:
    """Act on one notification; return what happened: `suppressed`, `already_suppressed` (a replay, or
    an address suppressed before), or `recorded` for a soft bounce. A soft bounce suppresses nothing (the
    mailbox exists; the next send may well succeed): it appends `email.delivery_delayed`, once per
    notice id."""
    if notice.kind not in KINDS:
        raise ValueError(f"unknown notice kind {notice.kind!r}")
    properties: dict[str, object] = {
        k: v
        for k, v in {
            "bounceType": notice.bounce_type,
            "bounceSubType": notice.bounce_sub_type,
            "diagnostic": notice.diagnostic,
            "noticeId": notice.notice_id,
        }.items()
        if v
    }
    if notice.kind == "soft_bounce":
        sub = subscriber_store.find_by_email(tx, workspace_id, notice.email)
        key = (
            f"inbound:{notice.source}:{notice.notice_id}:{notice.email.lower()}" if notice.notice_id else None
        )
        events.record(
            tx,
            workspace_id,
            name="email.delivery_delayed",
            source=events.SOURCE_CARTBACK,
            subscriber_id=sub.id if sub else None,
            properties={"email": notice.email, "source": notice.source, **properties},
            now=now,
            idempotency_key=key[:300] if key else None,
        )
        return "recorded"
    reason = _KIND_REASON[notice.kind]
    if reason == "bounced":
        detail: str | None = bounce_detail(notice.bounce_type, notice.bounce_sub_type, notice.diagnostic)
    else:
        detail = notice.diagnostic
    added = suppress(
        tx, workspace_id, notice.email, reason, notice.source, now, detail=detail, properties=properties
    )
    return "suppressed" if added else "already_suppressed"
