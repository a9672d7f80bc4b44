"""Outbound webhooks: which log events become which Sequenzy webhook types, the endpoints and their secrets,
queueing one delivery per (endpoint, event), and what an attempt's outcome does to the delivery (retry
with backoff for a week, then give up) and to the endpoint (auto-disabled after failing for days).

Sending is in `scheduler/webhook_sender.py`; nothing here does network I/O."""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cartback import errors, ids
from cartback.core import events
from cartback.delivery import webhooks as requests
from cartback.store import subscribers as subscriber_store
from cartback.store import webhooks as store
from cartback.store.db import Tx
from cartback.store.enrollments import Enrollment
from cartback.store.events import Event
from cartback.store.webhooks import Attempt as Attempt  # re-exported for api/
from cartback.store.webhooks import Delivery as Delivery

# Sequenzy's webhook event types, in its order. Clients may subscribe to any of them; those cartback never
# produces (sms.*, campaign.sent, ...) are accepted and simply never fire.
EVENT_TYPES = (
    "email.sent",
    "email.delivered",
    "email.delivery_delayed",
    "email.bounced",
    "email.failed",
    "email.complained",
    "email.opened",
    "email.clicked",
    "email.replied",
    "email.received",
    "email.unsubscribed",
    "campaign.sent",
    "sms.sent",
    "sms.delivered",
    "sms.failed",
    "sms.opted_out",
    "subscriber.invalid",
    "subscriber.created",
    "subscriber.updated",
    "subscriber.unsubscribed",
    "subscriber.list_subscribed",
    "subscriber.list_unsubscribed",
    "subscriber_import.completed",
    "sequence.finished",
    "sequence.failed",
    "poll.answered",
)
TEST_TYPE = "webhook.test"

SEQUENCE_FINISHED = "sequence.finished"
SEQUENCE_FAILED = "sequence.failed"

# Log events whose name is not itself a webhook type, and log events that stand for more than one. An
# endpoint gets one delivery per log event: the first type in the tuple that it subscribes to.
_TYPES_OF: dict[str, tuple[str, ...]] = {
    events.LIST_ADDED: ("subscriber.list_subscribed",),
    events.LIST_REMOVED: ("subscriber.list_unsubscribed",),
    events.TAG_ADDED: ("subscriber.updated",),
    events.TAG_REMOVED: ("subscriber.updated",),
    "email.unsubscribed": ("email.unsubscribed", "subscriber.unsubscribed"),
}

MAX_SECRETS = 10


def webhook_types(event_name: str) -> tuple[str, ...]:
    """The webhook types a log event is delivered as (none for most: checkout and order events)."""
    mapped = _TYPES_OF.get(event_name)
    if mapped is not None:
        return mapped
    return (event_name,) if event_name in EVENT_TYPES else ()


@dataclass(frozen=True)
class Policy:
    """When to retry and when to give up on an endpoint. Built from Settings by the app."""

    retry_base: timedelta = timedelta(seconds=30)
    retry_cap: timedelta = timedelta(hours=6)
    retry_window: timedelta = timedelta(days=7)
    disable_after_failures: int = 10
    disable_after: timedelta = timedelta(days=3)

    def delay(self, attempts: int, rng: random.Random | None = None) -> timedelta:
        """Exponential backoff with ±20% jitter after the `attempts`-th failed attempt (1, 2, ...)."""
        base = self.retry_base.total_seconds() * 2 ** min(max(attempts - 1, 0), 40)
        seconds = min(base, max(self.retry_cap.total_seconds(), self.retry_base.total_seconds()))
        return timedelta(seconds=seconds * (rng or random).uniform(0.8, 1.2))


DEFAULT_POLICY = Policy()


# -- validation --------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise errors.InvalidInput(f"url: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidInput("url must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:  # https://user:pass@host/ or the confusing https://trusted.example@10.0.0.1/
        raise errors.InvalidInput("url must not carry a user name or password")
    if len(url) > 2000 or any(c.isspace() or ord(c) < 32 for c in url):
        raise errors.InvalidInput("url must be at most 2000 characters with no spaces or control characters")
    return url


def check_events(names: Iterable[str] | None) -> list[str]:
    """The subscribed types, deduplicated in order; None means all of them."""
    if names is None:
        return list(EVENT_TYPES)
    wanted = list(dict.fromkeys(n.strip() for n in names))
    unknown = [n for n in wanted if n not in EVENT_TYPES]
    if unknown:
        raise errors.InvalidInput(f"unknown webhook event types: {', '.join(unknown[:5])}")
    if not wanted:
        raise errors.InvalidInput("events must name at least one event type (leave it out for all)")
    return wanted


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255:
        raise errors.InvalidInput("name must be 1 to 255 characters")
    return name


# -- endpoints and secrets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointView:
    endpoint: store.Endpoint
    secrets: list[store.Secret]


def _new_secret(workspace_id: str, endpoint_id: str, now: datetime) -> store.Secret:
    value = requests.SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return store.Secret(
        id=ids.new_id("whs"),
        workspace_id=workspace_id,
        endpoint_id=endpoint_id,
        secret=value,
        prefix=value[:12],
        created_at=now,
    )


def _view(tx: Tx, endpoint: store.Endpoint) -> EndpointView:
    return EndpointView(endpoint, store.secrets_for(tx, [endpoint.id])[endpoint.id])


def get(tx: Tx, workspace_id: str, endpoint_id: str) -> EndpointView:
    endpoint = store.get_endpoint(tx, workspace_id, endpoint_id)
    if endpoint is None:
        raise errors.NotFound(f"no webhook {endpoint_id!r}")
    return _view(tx, endpoint)


def list_all(tx: Tx, workspace_id: str) -> list[EndpointView]:
    endpoints = store.list_endpoints(tx, workspace_id)
    by_endpoint = store.secrets_for(tx, [e.id for e in endpoints])
    return [EndpointView(e, by_endpoint[e.id]) for e in endpoints]


def create(
    tx: Tx, workspace_id: str, *, name: str, url: str, event_types: Iterable[str] | None, now: datetime
) -> tuple[EndpointView, str]:
    """A new enabled endpoint with one signing secret; returns it with the secret, shown this once."""
    endpoint = store.Endpoint(
        id=ids.new_id("wh"),
        workspace_id=workspace_id,
        name=check_name(name),
        url=check_url(url),
        events=check_events(event_types),
        status="enabled",
        consecutive_failures=0,
        failing_since=None,
        auto_disabled_at=None,
        disabled_reason=None,
        last_success_at=None,
        last_failure_at=None,
        created_at=now,
        updated_at=now,
    )
    store.insert_endpoint(tx, endpoint)
    secret = _new_secret(workspace_id, endpoint.id, now)
    store.insert_secret(tx, secret)
    return EndpointView(endpoint, [secret]), secret.secret


def update(
    tx: Tx,
    workspace_id: str,
    endpoint_id: str,
    *,
    now: datetime,
    name: str | None = None,
    url: str | None = None,
    event_types: Iterable[str] | None = None,
    status: str | None = None,
) -> EndpointView:
    """Change what was given. Disabling cancels pending deliveries; enabling clears the failure state
    (an endpoint the server disabled comes back with a clean slate)."""
    endpoint = get(tx, workspace_id, endpoint_id).endpoint
    changed = endpoint
    if name is not None:
        changed = changed.with_changes(name=check_name(name))
    if url is not None:
        changed = changed.with_changes(url=check_url(url))
    if event_types is not None:
        changed = changed.with_changes(events=check_events(event_types))
    if status == "enabled":
        changed = changed.with_changes(
            status="enabled",
            consecutive_failures=0,
            failing_since=None,
            auto_disabled_at=None,
            disabled_reason=None,
        )
    elif status == "disabled" and endpoint.status != "disabled":
        changed = changed.with_changes(status="disabled", disabled_reason="disabled by the API")
        store.cancel_pending(tx, endpoint.id, now)
    elif status not in (None, "disabled"):
        raise errors.InvalidInput("status must be 'enabled' or 'disabled'")
    changed = changed.with_changes(updated_at=now)
    store.save_endpoint(tx, changed)
    return _view(tx, changed)


def delete(tx: Tx, workspace_id: str, endpoint_id: str) -> EndpointView:
    view = get(tx, workspace_id, endpoint_id)
    store.delete_endpoint(tx, workspace_id, endpoint_id)
    return view


def add_secret(tx: Tx, workspace_id: str, endpoint_id: str, now: datetime) -> tuple[EndpointView, str]:
    """Another active secret. Requests are signed with every active one, so a receiver can switch to the
    new secret before the old one is removed."""
    view = get(tx, workspace_id, endpoint_id)
    if len(view.secrets) >= MAX_SECRETS:
        raise errors.InvalidInput(f"an endpoint has at most {MAX_SECRETS} secrets; remove an old one first")
    secret = _new_secret(workspace_id, endpoint_id, now)
    store.insert_secret(tx, secret)
    store.save_endpoint(tx, view.endpoint.with_changes(updated_at=now))
    return _view(tx, view.endpoint.with_changes(updated_at=now)), secret.secret


def remove_secret(tx: Tx, workspace_id: str, endpoint_id: str, secret_id: str, now: datetime) -> EndpointView:
    view = get(tx, workspace_id, endpoint_id)
    if secret_id not in {s.id for s in view.secrets}:
        raise errors.NotFound(f"no secret {secret_id!r} on this webhook")
    if len(view.secrets) == 1:
        raise errors.InvalidInput("cannot remove the last signing secret; add a new one first")
    store.delete_secret(tx, endpoint_id, secret_id)
    endpoint = view.endpoint.with_changes(updated_at=now)
    store.save_endpoint(tx, endpoint)
    return _view(tx, endpoint)


# -- deliveries --------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _payload(event_id: str, event_type: str, created_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "createdAt": _iso(created_at), "data": data}


def _new_delivery(
    endpoint: store.Endpoint, event_id: str, event_type: str, payload: dict[str, Any], now: datetime
) -> store.Delivery:
    return store.Delivery(
        id=ids.new_id("whd"),
        workspace_id=endpoint.workspace_id,
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        status="pending",
        attempts=0,
        last_status_code=None,
        last_error=None,
        last_response_body=None,
        next_attempt_at=now,
        lease_owner=None,
        lease_until=None,
        last_attempt_at=None,
        created_at=now,
        updated_at=now,
    )


def _subscriber_data(tx: Tx, event: Event) -> dict[str, Any] | None:
    if event.subscriber_id is None:
        return None
    sub = subscriber_store.find_by_id(tx, event.workspace_id, event.subscriber_id)
    if sub is None:
        return {"id": event.subscriber_id}
    return {
        "id": sub.id,
        "email": sub.email,
        "externalId": sub.external_id,
        "firstName": sub.first_name,
        "lastName": sub.last_name,
        "status": sub.status,
    }


def queue_for_event(tx: Tx, event: Event, now: datetime, cache: dict[Any, Any]) -> None:
    """The dispatcher's hook (see `queue_deliveries`)."""
    queue_deliveries(tx, event, now, cache)


def queue_deliveries(tx: Tx, event: Event, now: datetime, cache: dict[Any, Any]) -> int:
    """One delivery per enabled endpoint subscribed to this event's webhook type; returns how many were
    new. Idempotent per (endpoint, event). Endpoints are loaded once per workspace per dispatch batch."""
    types = webhook_types(event.name)
    if not types:
        return 0
    key = ("webhooks.endpoints", event.workspace_id)
    endpoints: list[store.Endpoint] | None = cache.get(key)
    if endpoints is None:
        endpoints = store.list_endpoints(tx, event.workspace_id, enabled_only=True)
        cache[key] = endpoints
    targets: list[tuple[store.Endpoint, str]] = []
    for endpoint in endpoints:
        # An endpoint hears of events from its creation on, even if the dispatcher is running behind.
        if endpoint.created_at > event.received_at:
            continue
        chosen = next((t for t in types if t in endpoint.events), None)
        if chosen is not None:
            targets.append((endpoint, chosen))
    if not targets:
        return 0
    data = {
        "event": event.name,
        "subscriber": _subscriber_data(tx, event),
        "properties": event.properties,
        "occurredAt": _iso(event.occurred_at),
    }
    queued = 0
    for endpoint, event_type in targets:
        payload = _payload(event.id, event_type, event.received_at, data)
        queued += store.insert_delivery(tx, _new_delivery(endpoint, event.id, event_type, payload, now))
    return queued


def queue_test(tx: Tx, workspace_id: str, endpoint_id: str, now: datetime) -> store.Delivery:
    """A `webhook.test` delivery to this endpoint, due now."""
    endpoint = get(tx, workspace_id, endpoint_id).endpoint
    if endpoint.status != "enabled":
        raise errors.InvalidInput("this webhook is disabled; enable it before sending a test")
    event_id = ids.new_id("evt")
    payload = _payload(
        event_id,
        TEST_TYPE,
        now,
        {"webhookId": endpoint.id, "message": "A test delivery from cartback: your endpoint works."},
    )
    delivery = _new_delivery(endpoint, event_id, TEST_TYPE, payload, now)
    store.insert_delivery(tx, delivery)
    return delivery


def deliveries(tx: Tx, workspace_id: str, endpoint_id: str, limit: int) -> list[store.Delivery]:
    get(tx, workspace_id, endpoint_id)
    return store.list_deliveries(tx, endpoint_id, limit)


def _delivery(tx: Tx, workspace_id: str, endpoint_id: str, delivery_id: str) -> store.Delivery:
    get(tx, workspace_id, endpoint_id)
    found = store.get_delivery(tx, endpoint_id, delivery_id)
    if found is None:
        raise errors.NotFound(f"no delivery {delivery_id!r} for this webhook")
    return found


def attempts(tx: Tx, workspace_id: str, endpoint_id: str, delivery_id: str) -> list[store.Attempt]:
    return store.list_attempts(tx, _delivery(tx, workspace_id, endpoint_id, delivery_id).id)


def replay(tx: Tx, workspace_id: str, endpoint_id: str, delivery_id: str, now: datetime) -> store.Delivery:
    """Deliver the same delivery (same id, same payload) again, now. Its retry window still counts from
    when it was first queued, so a replayed old delivery gets one attempt, not another week."""
    endpoint = get(tx, workspace_id, endpoint_id).endpoint
    if endpoint.status != "enabled":
        raise errors.InvalidInput("this webhook is disabled; enable it before replaying a delivery")
    delivery = _delivery(tx, workspace_id, endpoint_id, delivery_id)
    store.schedule(tx, delivery.id, now, now)
    found = store.get_delivery(tx, endpoint_id, delivery_id)
    assert found is not None
    return found


# -- outcomes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one POST came to. `status_code` is None when no response arrived (refused, timed out)."""

    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int
    at: datetime

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _clean(text: str | None, limit: int) -> str | None:
    # PostgreSQL text cannot hold NUL; a receiver may send anything.
    return None if text is None else text.replace("\x00", "")[:limit]


def record_outcome(
    tx: Tx,
    delivery_id: str,
    owner: str,
    outcome: Outcome,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
    rng: random.Random | None = None,
    *,
    permanent: bool = False,
) -> store.Delivery | None:
    """Record an attempt, then decide: succeeded, retry later, or failed for good. A worker that lost its
    lease (it took longer than the lease) still records the attempt but leaves scheduling to the holder.

    `permanent`: the request could not be built from the stored delivery (sender.Unbuildable), so it never
    will be: the delivery is failed at once and the endpoint's failure count is left alone (nothing was
    asked of the receiver)."""
    delivery = store.delivery_by_id(tx, delivery_id)
    if delivery is None:  # the endpoint was deleted meanwhile
        return None
    number = delivery.attempts + 1
    error = _clean(outcome.error, 2000)
    if not outcome.ok and error is None:
        error = f"HTTP {outcome.status_code}"
    body = _clean(outcome.response_body, 2048)
    store.insert_attempt(
        tx,
        store.Attempt(
            id=ids.new_id("wha"),
            workspace_id=delivery.workspace_id,
            delivery_id=delivery.id,
            attempt=number,
            status_code=outcome.status_code,
            error=None if outcome.ok else error,
            response_body=body,
            duration_ms=outcome.duration_ms,
            at=outcome.at,
        ),
    )
    ours = delivery.lease_owner == owner
    changed = replace(
        delivery,
        attempts=number,
        last_status_code=outcome.status_code,
        last_error=None if outcome.ok else error,
        last_response_body=body,
        last_attempt_at=outcome.at,
        updated_at=now,
    )
    if ours:
        changed = replace(changed, lease_owner=None, lease_until=None)
    if outcome.ok:
        changed = replace(changed, status="succeeded", next_attempt_at=None)
        store.count_success(tx, delivery.endpoint_id, now)
    elif permanent:
        if ours and delivery.status == "pending":
            changed = replace(changed, status="failed", next_attempt_at=None)
    else:
        if ours and delivery.status == "pending":
            retry_at = now + policy.delay(number, rng)
            if retry_at - delivery.created_at > policy.retry_window:
                changed = replace(changed, status="failed", next_attempt_at=None)
            else:
                changed = replace(changed, next_attempt_at=retry_at)
        endpoint = store.count_failure(tx, delivery.endpoint_id, now)
        if endpoint is not None:
            changed = _maybe_disable(tx, endpoint, changed, now, policy)
    store.save_outcome(tx, changed)
    return changed


def _maybe_disable(
    tx: Tx, endpoint: store.Endpoint, delivery: store.Delivery, now: datetime, policy: Policy
) -> store.Delivery:
    """Disable an endpoint that has failed every attempt for long enough, and cancel what it has pending."""
    if (
        endpoint.status != "enabled"
        or endpoint.failing_since is None
        or endpoint.consecutive_failures < policy.disable_after_failures
        or now - endpoint.failing_since < policy.disable_after
    ):
        return delivery
    since = endpoint.failing_since.astimezone(UTC).isoformat(timespec="seconds")
    store.save_endpoint(
        tx,
        endpoint.with_changes(
            status="disabled",
            auto_disabled_at=now,
            disabled_reason=(
                f"disabled automatically: {endpoint.consecutive_failures} consecutive failed attempts "
                f"since {since}"
            ),
            updated_at=now,
        ),
    )
    store.cancel_pending(tx, endpoint.id, now)
    if delivery.status == "pending":
        return replace(delivery, status="cancelled", next_attempt_at=None)
    return delivery


# -- sequence events ---------------------------------------------------------------------------------


def enrollment_finished(tx: Tx, enrollment: Enrollment, status: str, now: datetime) -> None:
    """Append sequence.finished (completed, or stopped by its exit condition) or sequence.failed to the
    log, for webhooks and for flows that start when another ends. Called from automations.finish."""
    name = {"completed": SEQUENCE_FINISHED, "stopped": SEQUENCE_FINISHED, "failed": SEQUENCE_FAILED}.get(
        status
    )
    if name is None:  # cancelled: the sequence was deleted or archived
        return
    events.record(
        tx,
        enrollment.workspace_id,
        name=name,
        source=events.SOURCE_CARTBACK,
        subscriber_id=enrollment.subscriber_id,
        properties={
            "sequenceId": enrollment.sequence_id,
            "enrollmentId": enrollment.id,
            "status": status,
            "reason": enrollment.stop_reason,
        },
        now=now,
    )
