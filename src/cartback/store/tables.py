"""The schema, one Table per record. Every row carries workspace_id; each invariant that must hold even
under concurrent writers is a named constraint, so the store can tell violations apart."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from cartback import statuses
from cartback.store.types import JSONType, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(40)


def _workspace_id() -> Column[str]:
    return Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)


app_settings = Table(
    "app_settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    # Signs this workspace's unsubscribe and tracking links.
    Column("secret", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The sender of its emails ("Shop <shop@example.com>") when a step names none; NULL: CARTBACK_FROM.
    Column("from_address", String(400)),
    # The shop as its customers know it, in mail and on the unsubscribe page; NULL: the workspace's name.
    Column("shop_name", String(200)),
    # An optional postal address line for the footer of its emails.
    Column("shop_address", String(400)),
    UniqueConstraint("name"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("name", String(200), nullable=False, server_default=""),
    # The first characters of the secret, to tell keys apart in listings; never enough to use.
    Column("prefix", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("scopes", JSONType, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    UniqueConstraint("key_hash"),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("email", String(320)),
    # lower(email): the uniqueness key, so Jane@X.com and jane@x.com are one person.
    Column("email_key", String(320)),
    Column("external_id", String(255)),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("phone", String(64)),
    Column("phone_country", String(8)),
    Column("sms_consent", Boolean, nullable=False, server_default="0"),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("attributes", JSONType, nullable=False),
    Column("timezone", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("unsubscribed_at", UTCDateTime),
    # A device or browser id (Klaviyo's anonymous_id, Segment's anonymousId) seen before an email was.
    Column("anonymous_id", String(255)),
    UniqueConstraint("workspace_id", "email_key"),
    UniqueConstraint("workspace_id", "external_id"),
    UniqueConstraint("workspace_id", "anonymous_id"),
    Index(None, "workspace_id", "id"),
    Index(None, "workspace_id", "phone"),
)

tags = Table(
    "tags",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("name", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

subscriber_tags = Table(
    "subscriber_tags",
    metadata,
    _workspace_id(),
    Column("subscriber_id", ID, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("tag_id", ID, ForeignKey("tags.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("subscriber_id", "tag_id"),
    Index(None, "tag_id"),
)

lists = Table(
    "lists",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("name", String(255), nullable=False),
    Column("description", Text),
    Column("is_private", Boolean, nullable=False, server_default="0"),
    Column("allow_member_unsubscribe", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

list_members = Table(
    "list_members",
    metadata,
    _workspace_id(),
    Column("list_id", ID, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", ID, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("subscribed_at", UTCDateTime, nullable=False),
    Column("unsubscribed_at", UTCDateTime),
    PrimaryKeyConstraint("list_id", "subscriber_id"),
    Index(None, "subscriber_id"),
)

# Append-only: rows are inserted, never deleted (a deleted subscriber's events stay) and never changed,
# except dispatched_at, and subscriber_id when an anonymous profile is merged into a known one.
events = Table(
    "events",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("subscriber_id", ID),
    Column("name", String(255), nullable=False),
    # Which API it came through: sequenzy, klaviyo, segment, or cartback for its own events.
    Column("source", String(20), nullable=False),
    Column("properties", JSONType, nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # Namespaced per kind (checkout:<id>, order:<id>:<status>, event:<eventId>, ...); NULL for none.
    Column("idempotency_key", String(300)),
    # Occurred long before it was received (an import or a backfill): stored, never triggers flows.
    Column("historical", Boolean, nullable=False, server_default="0"),
    # Set once the automation dispatcher has looked at the event (triggers, stop conditions).
    Column("dispatched_at", UTCDateTime),
    # The event's numeric value in major units (Klaviyo's `value`, an order's total), copied out of
    # `properties` so metric aggregates sum it from the index alone.
    Column("value", sa.Double),
    # A 64-bit hash of subscriber_id (store/events.py): unique subscribers are counted over it, since
    # grouping eight-byte integers costs far less than grouping 30-character ids.
    Column("subscriber_key", BigInteger),
    UniqueConstraint("workspace_id", "idempotency_key"),
    Index(None, "workspace_id", "subscriber_id", "occurred_at"),
    # The dashboard's event log: a workspace's newest events (ids are time-sortable) without sorting them
    # all.
    Index(None, "workspace_id", "id"),
    # Covers metric aggregates (count, sum of value, unique subscribers per metric and time range)
    # without touching the table rows.
    Index(None, "workspace_id", "name", "occurred_at", "subscriber_key", "value"),
    # The dispatcher's queue: only undispatched rows are in this index, so it stays small.
    Index(
        "ix_events_undispatched",
        "received_at",
        "id",
        sqlite_where=sa.text("dispatched_at IS NULL"),
        postgresql_where=sa.text("dispatched_at IS NULL"),
    ),
)

# Segment messages already applied, by messageId: a replayed batch is recognised and changes nothing, even
# for identify calls, which leave no event of their own.
segment_messages = Table(
    "segment_messages",
    metadata,
    _workspace_id(),
    Column("message_id", String(255), nullable=False),
    # track | identify | alias | page | screen | group
    Column("type", String(20), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "message_id"),
)

# A store platform's webhooks into one workspace (core/connectors.py): the secret that signs them,
# encrypted with a key derived from the server's secret key (verification needs it in the clear), and
# during a rotation the previous one, still valid until previous_expires_at.
connectors = Table(
    "connectors",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    # shopify | stripe | woocommerce | bigcommerce
    Column("platform", String(20), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text),
    Column("previous_expires_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
)

# The webhooks a connector applied, by the platform's own id of the delivery (X-Shopify-Webhook-Id, the
# Stripe event id...): one row each, written in the transaction that applies the webhook, so a replay
# changes nothing.
connector_webhooks = Table(
    "connector_webhooks",
    metadata,
    Column("connector_id", ID, ForeignKey("connectors.id", ondelete="CASCADE"), nullable=False),
    Column("webhook_id", String(255), nullable=False),
    Column("topic", String(100), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("connector_id", "webhook_id"),
)

checkouts = Table(
    "checkouts",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("checkout_id", String(255), nullable=False),
    Column("subscriber_id", ID, nullable=False),
    # The ecommerce.checkout_started event this checkout produced.
    Column("event_id", ID, nullable=False),
    Column("currency", String(3)),
    Column("total_cents", BigInteger),
    Column("checkout_url", Text),
    Column("items", JSONType, nullable=False),
    Column("properties", JSONType, nullable=False),
    # Set when an order names this checkout in properties.checkoutId.
    Column("order_id", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "checkout_id"),
    # The overview counts a workspace's checkouts per interval of a range.
    Index(None, "workspace_id", "created_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("order_id", String(255), nullable=False),
    Column("order_number", String(255)),
    Column("subscriber_id", ID, nullable=False),
    Column("checkout_id", String(255)),
    Column("status", String(20), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    # Everything refunded of the order so far, at most its total (core/orders.py accumulates refunds).
    Column("refund_amount_cents", BigInteger, nullable=False, server_default="0"),
    Column("items", JSONType, nullable=False),
    Column("properties", JSONType, nullable=False),
    Column("ordered_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "order_id"),
    Index(None, "workspace_id", "subscriber_id"),
    Index(None, "workspace_id", "checkout_id"),
)

# -- automations -----------------------------------------------------------------------------------

sequences = Table(
    "sequences",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("name", String(255), nullable=False),
    Column("description", Text),
    # draft | active | paused | archived
    Column("status", String(20), nullable=False),
    Column("trigger", String(40), nullable=False),
    # The canonical event name an event_received sequence waits for: the dispatcher's lookup key.
    Column("trigger_event", String(255)),
    # The whole definition (trigger config, filters, modes, stop condition, window, nodes), as core
    # validated it; the columns above are copies kept for lookups.
    Column("definition", JSONType, nullable=False),
    Column("enrollment_paused", Boolean, nullable=False, server_default="0"),
    Column("revision", BigInteger, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "workspace_id", "status", "trigger_event"),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("sequence_id", ID, ForeignKey("sequences.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", ID, nullable=False),
    Column("trigger_event_id", ID),
    # Stop conditions only count events received after the one that enrolled.
    Column("trigger_received_at", UTCDateTime, nullable=False),
    # The enrolling event as templates and stop-condition rules see it.
    Column("context", JSONType, nullable=False),
    # one_time: the subscriber, kept forever; matching_field: subscriber + field value, cleared when
    # the enrollment ends; unlimited: NULL. The unique constraint makes the mode hold under races.
    Column("dedupe_key", String(400)),
    # statuses.EnrollmentStatus: active (a step is due at next_run_at) | waiting (for an event, until
    # next_run_at) | completed | stopped | cancelled | failed
    Column("status", String(20), nullable=False),
    Column("current_node_id", String(40)),
    Column("next_run_at", UTCDateTime),
    Column("lease_owner", String(100)),
    Column("lease_until", UTCDateTime),
    Column("stop_reason", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    UniqueConstraint("sequence_id", "dedupe_key"),
    CheckConstraint(statuses.check("status", statuses.EnrollmentStatus), name="ck_enrollments_status"),
    Index(None, "next_run_at"),
    # The overview counts the runs each sequence started per interval of a range, from the index alone.
    Index(None, "workspace_id", "created_at", "sequence_id"),
    Index(None, "workspace_id", "subscriber_id", "status"),
    Index(None, "sequence_id", "status"),
)

# Every transition of every enrollment, for explain, stats and the dashboard's timeline.
enrollment_history = Table(
    "enrollment_history",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("enrollment_id", ID, ForeignKey("enrollments.id", ondelete="CASCADE"), nullable=False),
    Column("sequence_id", ID, nullable=False),
    Column("node_id", String(40)),
    # enrolled | waited | sent | skipped | delayed | stopped | completed | failed | ...
    Column("action", String(30), nullable=False),
    Column("detail", Text),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "enrollment_id", "at"),
    Index(None, "sequence_id", "action"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("subscriber_id", ID),
    Column("sequence_id", ID),
    Column("enrollment_id", ID),
    Column("node_id", String(40)),
    # marketing (suppressed by unsubscribes, frequency caps) | transactional
    Column("kind", String(20), nullable=False),
    Column("to_email", String(320), nullable=False),
    Column("from_email", String(400), nullable=False),
    Column("subject", Text, nullable=False),
    Column("preheader", Text),
    # statuses.MessageStatus: queued | sending | deferred | sent | kept | failed | suppressed | unknown
    Column("status", String(20), nullable=False),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("reply_to", String(400)),
    # Extra headers a transactional send asked for, {name: value}, already checked.
    Column("headers", JSONType),
    # The invariant the engine leans on: one message per (enrollment, step), whatever crashes.
    UniqueConstraint("enrollment_id", "node_id"),
    CheckConstraint(statuses.check("status", statuses.MessageStatus), name="ck_messages_status"),
    Index(None, "workspace_id", "subscriber_id", "created_at"),
    # Analytics per sequence and step.
    Index(None, "workspace_id", "sequence_id", "created_at"),
    # The outbox, newest first. No index on status: a status change then touches no index (on PostgreSQL,
    # a HOT update).
    Index(None, "workspace_id", "created_at"),
)

# A message's rendered bodies (20-30 KB), written once with it and never changed. They are kept out of
# `messages`, whose status changes with every delivery step: SQLite rewrites a whole row on UPDATE, and the
# bodies would be written again each time.
message_bodies = Table(
    "message_bodies",
    metadata,
    Column("message_id", ID, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    _workspace_id(),
    Column("html", Text),
    Column("text", Text),
)

frequency_caps = Table(
    "frequency_caps",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("max_emails", BigInteger, nullable=False),
    Column("window_hours", BigInteger, nullable=False),
    # skip the capped step, or delay it until the cap allows
    Column("action", String(10), nullable=False, server_default="skip"),
    Column("updated_at", UTCDateTime, nullable=False),
)

# -- delivery --------------------------------------------------------------------------------------

# The fate of each message beyond the engine: transport attempts, suppressions, tracking.
message_delivery = Table(
    "message_delivery",
    metadata,
    Column("message_id", ID, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    _workspace_id(),
    # The RFC 5322 Message-ID, fixed before the first attempt, so a restart can tell whether the SMTP
    # server already took this exact message.
    Column("rfc_message_id", String(300), nullable=False),
    Column("transport", String(20), nullable=False),
    Column("attempts", BigInteger, nullable=False, server_default="0"),
    Column("next_attempt_at", UTCDateTime),
    Column("lease_owner", String(100)),
    Column("lease_until", UTCDateTime),
    # Transactional sends: the caller's Idempotency-Key and a hash of the request it came with.
    Column("idempotency_key", String(300)),
    Column("request_hash", String(64)),
    Column("opened_at", UTCDateTime),
    Column("clicked_at", UTCDateTime),
    UniqueConstraint("rfc_message_id"),
    UniqueConstraint("workspace_id", "idempotency_key"),
    Index(None, "next_attempt_at"),
)

# The full MIME message as first sent (or stored by the outbox transport); a retry sends these bytes again.
# Inserted once, apart from the delivery row that every claim, attempt and outcome updates (see
# message_bodies).
message_mime = Table(
    "message_mime",
    metadata,
    Column("message_id", ID, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    _workspace_id(),
    Column("mime", Text, nullable=False),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("message_id", ID, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", BigInteger, nullable=False),
    # sent | kept (the outbox) | deferred (temporary failure, retried) | failed (permanent) | unknown
    # (died mid-send)
    Column("outcome", String(20), nullable=False),
    Column("smtp_code", BigInteger),
    Column("detail", Text),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index(None, "message_id", "attempt"),
)

# Addresses that must not get (some) mail, kept apart by reason, each with where it came from.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False),
    # unsubscribed (blocks marketing only) | bounced | complained (block everything)
    Column("reason", String(20), nullable=False),
    # api | one_click | link | smtp | webhook:ses | webhook:postmark | webhook:generic | dashboard
    Column("source", String(40), nullable=False),
    Column("detail", Text),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "email_key", "reason"),
)

transactional_templates = Table(
    "transactional_templates",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("slug", String(200), nullable=False),
    Column("name", String(255), nullable=False),
    Column("subject", Text, nullable=False),
    Column("preview_text", Text),
    Column("html", Text),
    Column("text", Text),
    Column("from_email", String(400)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "slug"),
)

# -- analytics -------------------------------------------------------------------------------------

# Which sequence email, if any, earned each order (docs/analytics.md). Written once per order by the
# dispatcher; refunds and cancellations are read from `orders` when reporting, never written here.
attributions = Table(
    "attributions",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    # The shop's orderId: an order is attributed at most once, whatever retries or workers do.
    Column("order_id", String(255), nullable=False),
    # The ecommerce.order_placed event that was attributed.
    Column("order_event_id", ID, nullable=False),
    Column("subscriber_id", ID, nullable=False),
    Column("sequence_id", ID, nullable=False),
    Column("enrollment_id", ID),
    Column("message_id", ID, nullable=False),
    # The step (email node) whose message earned the order.
    Column("node_id", String(40)),
    # checkout (the order names the checkout that enrolled) | click | open | receipt
    Column("kind", String(20), nullable=False),
    Column("touched_at", UTCDateTime, nullable=False),
    Column("ordered_at", UTCDateTime, nullable=False),
    # The order's total when attributed, in its own currency; reports use the order's current net.
    Column("amount_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("attributed_at", UTCDateTime, nullable=False),
    # Copies of the order event's value and subscriber_key, so metric aggregates by $attributed_flow
    # read this table alone.
    Column("value", sa.Double),
    Column("subscriber_key", BigInteger),
    UniqueConstraint("workspace_id", "order_id"),
    Index(None, "order_event_id"),
    Index(None, "workspace_id", "ordered_at"),
    Index(None, "workspace_id", "sequence_id", "ordered_at"),
)

# -- outbound webhooks -------------------------------------------------------------------------------

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("name", String(255), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", JSONType, nullable=False),
    # enabled | disabled (by its owner, or automatically after failing for too long)
    Column("status", String(20), nullable=False),
    Column("consecutive_failures", BigInteger, nullable=False, server_default="0"),
    Column("failing_since", UTCDateTime),
    Column("auto_disabled_at", UTCDateTime),
    Column("disabled_reason", Text),
    Column("last_success_at", UTCDateTime),
    Column("last_failure_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

webhook_secrets = Table(
    "webhook_secrets",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("endpoint_id", ID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("prefix", String(20), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "endpoint_id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("endpoint_id", ID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", ID, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("payload", JSONType, nullable=False),
    # pending | succeeded | failed (gave up after the retry period) | cancelled (endpoint disabled)
    Column("status", String(20), nullable=False),
    Column("attempts", BigInteger, nullable=False, server_default="0"),
    Column("last_status_code", BigInteger),
    Column("last_error", Text),
    Column("last_response_body", Text),
    Column("next_attempt_at", UTCDateTime),
    Column("lease_owner", String(100)),
    Column("lease_until", UTCDateTime),
    Column("last_attempt_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # At-least-once, but one delivery per (endpoint, event): a replay is a new attempt, not a new delivery.
    UniqueConstraint("endpoint_id", "event_id"),
    Index(None, "next_attempt_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("delivery_id", ID, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", BigInteger, nullable=False),
    Column("status_code", BigInteger),
    Column("error", Text),
    Column("response_body", Text),
    Column("duration_ms", BigInteger),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "delivery_id", "attempt"),
)

# -- dashboard -------------------------------------------------------------------------------------

# People who sign in to the dashboard; each belongs to one workspace and sees only that one.
users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    _workspace_id(),
    Column("email", String(320), nullable=False),
    # lower(email): sign-in names a user by address alone, so an address is one user across workspaces.
    Column("email_key", String(320), nullable=False),
    # scrypt$<log2 n>$<r>$<p>$<salt>$<hash> (core/passwords.py); never the password itself.
    Column("password_hash", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_sign_in_at", UTCDateTime),
    # Sessions carry the version they were issued under; sign-out and a password change add one, which
    # ends every earlier session of the user (dashboard/sessions.py).
    Column("session_version", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("email_key"),
    Index(None, "workspace_id"),
)

# Shared request counts of the rate limiter (core/ratelimits.py, store/ratelimits.py): one row per API surface
# and key (`bucket`, e.g. "/api/v1 key_..."), holding the current second's and minute's counts. Not tenant
# data, so no workspace_id; on PostgreSQL the table is UNLOGGED (counts need not survive a crash, and
# skipping the WAL keeps a lease cheap).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("bucket", String(100), primary_key=True),
    Column("second", BigInteger, nullable=False),
    Column("second_used", BigInteger, nullable=False),
    Column("minute", BigInteger, nullable=False),
    Column("minute_used", BigInteger, nullable=False),
    # What the last lease granted: RETURNING sees only new values, so the grant is stored to be returned.
    Column("granted", BigInteger, nullable=False),
)

# The constraints two honest writers can break by racing: both looked for a row by its natural key, found
# none and inserted it. The writer re-runs a job that broke one of these (store/db.py), and the re-run finds
# the other's row. Breaking any other constraint (a foreign key, a CHECK, NOT NULL, a generated id's key)
# is a bug: a 500 that names it, never retried.
RACE_CONSTRAINTS = frozenset(
    {
        "pk_app_settings",
        "pk_connector_webhooks",
        "pk_frequency_caps",
        "pk_list_members",
        "pk_rate_limits",
        "pk_segment_messages",
        "pk_subscriber_tags",
        "uq_api_keys_key_hash",
        "uq_attributions_workspace_id_order_id",
        "uq_checkouts_workspace_id_checkout_id",
        "uq_enrollments_sequence_id_dedupe_key",
        "uq_events_workspace_id_idempotency_key",
        "uq_lists_workspace_id_name",
        "uq_message_delivery_workspace_id_idempotency_key",
        "uq_messages_enrollment_id_node_id",
        "uq_orders_workspace_id_order_id",
        "uq_subscribers_workspace_id_anonymous_id",
        "uq_subscribers_workspace_id_email_key",
        "uq_subscribers_workspace_id_external_id",
        "uq_suppressions_workspace_id_email_key_reason",
        "uq_tags_workspace_id_name",
        "uq_transactional_templates_workspace_id_slug",
        "uq_users_email_key",
        "uq_webhook_deliveries_endpoint_id_event_id",
        "uq_workspaces_name",
    }
)


def _sqlite_keys() -> dict[tuple[str, tuple[str, ...]], str]:
    """SQLite names the columns of a broken unique key, not its constraint: the constraint of each."""
    keys: dict[tuple[str, tuple[str, ...]], str] = {}
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint) and constraint.name:
                keys[(table.name, tuple(c.name for c in constraint.columns))] = str(constraint.name)
    return keys


SQLITE_KEYS = _sqlite_keys()
