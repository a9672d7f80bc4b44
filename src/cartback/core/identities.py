"""Anonymous profiles and the people they turn out to be.

A call that names someone only by an anonymous id (Segment's anonymousId, Klaviyo's anonymous_id) is
stored on an anonymous subscriber: no email, no externalId, just that id. When a later call names the
same anonymous id together with an email or externalId (identify, alias, or any call carrying both), the
anonymous subscriber is merged into the identified one:

* its events, checkouts, orders, enrollments, messages and attributions move to the identified
  subscriber (their ids, times and properties unchanged), with the tags and list memberships it lacks;
  live runs its own creation started (subscriber.created) are cancelled, since it was no new contact;
* the identified subscriber keeps its own names and attributes and fills the ones it lacks from the
  anonymous profile, takes the anonymous id if it has none, and has its order totals recomputed;
* the anonymous subscriber is deleted.

Two identified people are never merged: a merge needs one side to have neither email nor externalId
(alias, an explicit statement, also merges identified profiles, but never two different emails). An
anonymous id already held by another identified person (a shared device) stays theirs. When no
identified subscriber exists yet, the anonymous one simply gains the email or externalId."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from cartback.core import automations, events, orders, subscribers
from cartback.store import enrollments as enrollment_store
from cartback.store import identities as store
from cartback.store import orders as order_store
from cartback.store import subscribers as subscriber_store
from cartback.store.db import Tx
from cartback.store.subscribers import Subscriber


def is_anonymous(sub: Subscriber) -> bool:
    return sub.email is None and sub.external_id is None


def link(tx: Tx, workspace_id: str, identity: subscribers.Identity, now: datetime) -> subscribers.Identity:
    """Before applying a call that names an anonymous id beside an email or externalId: merge the
    anonymous subscriber holding that id into the identified one, if both exist. Returns the identity to
    apply: without its anonymous id when that id already belongs to a different identified person (a
    shared device), so the call is applied to the person its email or externalId names."""
    if not identity.anonymous_id or not (identity.email or identity.external_id):
        return identity
    holder = subscriber_store.find_by_anonymous_id(tx, workspace_id, identity.anonymous_id)
    if holder is None:
        return identity
    known = subscribers.find(tx, workspace_id, replace(identity, anonymous_id=None))
    if is_anonymous(holder):
        if known is not None and known.id != holder.id:
            merge(tx, holder, known, now)
        return identity
    if known is not None and known.id == holder.id:
        return identity
    return replace(identity, anonymous_id=None)


def alias(tx: Tx, workspace_id: str, previous_id: str, user_id: str, now: datetime) -> Subscriber:
    """Segment's alias: `previous_id` (an anonymous id, or an earlier userId) and `user_id` are one person.
    The profile previous_id names is merged into user_id's, or renamed to it when user_id has none; when
    neither is known, a subscriber is created with both so later calls by either id find it."""
    previous = subscriber_store.find_by_anonymous_id(tx, workspace_id, previous_id)
    by_anonymous_id = previous is not None
    if previous is None:
        previous = subscriber_store.find_by_external_id(tx, workspace_id, previous_id)
    target = subscriber_store.find_by_external_id(tx, workspace_id, user_id)
    if previous is not None and target is not None:
        if previous.id == target.id or not mergeable(previous, target):
            return target
        return merge(tx, previous, target, now)
    if previous is not None:
        renamed = previous.with_changes(external_id=user_id, updated_at=now)
        subscriber_store.save(tx, renamed)
        return renamed
    anonymous_id = previous_id if not by_anonymous_id else None
    sub, _ = subscribers.upsert(
        tx, workspace_id, subscribers.Identity(external_id=user_id, anonymous_id=anonymous_id), now
    )
    return sub


def mergeable(source: Subscriber, target: Subscriber) -> bool:
    """Whether two profiles may become one: never two different email addresses."""
    return (
        source.email is None
        or target.email is None
        or (subscriber_store.email_key(source.email) == subscriber_store.email_key(target.email))
    )


def merge(tx: Tx, source: Subscriber, target: Subscriber, now: datetime) -> Subscriber:
    """Fold `source` into `target` (see the module docstring) and return the updated target."""
    workspace_id = target.workspace_id
    for enrollment in enrollment_store.live_for_subscriber(tx, workspace_id, source.id):
        # The anonymous profile was no new contact after all: its welcome-style runs must not go on to
        # greet someone already known.
        if (enrollment.context.get("event") or {}).get("name") == events.SUBSCRIBER_CREATED:
            automations.finish(tx, enrollment, "cancelled", now, reason="merged into a known subscriber")
    store.move_rows(tx, workspace_id, source.id, target.id)
    # Delete first: the source's email, externalId and anonymous id are unique and may move to the target.
    subscriber_store.delete(tx, workspace_id, source.id)
    changes: dict[str, object] = {
        "attributes": {**source.attributes, **target.attributes},
        "updated_at": now,
    }
    for name in ("email", "external_id", "anonymous_id", "first_name", "last_name", "phone", "timezone"):
        if getattr(target, name) is None and getattr(source, name) is not None:
            changes[name] = getattr(source, name)
    if target.status == "active" and source.status != "active" and source.email is not None:
        # An unsubscribe given under the address the target now takes still holds.
        changes.update(status=source.status, unsubscribed_at=source.unsubscribed_at)
    merged = target.with_changes(**changes)
    owned = order_store.for_subscriber(tx, workspace_id, target.id)
    if owned:
        merged = merged.with_changes(attributes={**merged.attributes, **orders.revenue_attributes(owned)})
    subscriber_store.save(tx, merged)
    return merged
