"""Prometheus metrics: one `Metrics` per process (create_app, `cartback worker`), each with its own
CollectorRegistry rather than the global default, so tests can build many apps in one process.

The processes of `serve --processes` (supervisor.py) run in prometheus_client's multiprocess mode: their
counters and histograms live in files of a directory the parent shares with them, and any one of them
answers a scrape with the sums over all, so the series do not jump with the process a scrape reaches. The
scrape-time gauges are computed by the process that answers (the enrollment counts are the database's,
the same from each; the password-hash gauges are that process's).

Every label has a bounded set of values: the surface is derived from the path prefix, events outside the
known names are counted as `custom`, statuses and outcomes come from fixed vocabularies. docs/operations.md
lists the series and what is worth alerting on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cartback.core import events

log = logging.getLogger(__name__)

# Longest prefix first: /api/v1 (Sequenzy) lies inside /api (Klaviyo).
SURFACES: tuple[tuple[str, str], ...] = (
    ("/api/v1", "sequenzy"),
    ("/api", "klaviyo"),
    ("/v1", "segment"),
    ("/u", "public"),
    ("/t", "public"),
    ("/app", "dashboard"),
)
OWN = "own"

# The POST paths that append to the event log, on every surface (they take no path parameters).
INGEST_PATHS = frozenset(
    {
        "/api/v1/checkouts",
        "/api/v1/orders",
        "/api/v1/subscribers/events",
        "/api/v1/subscribers/events/bulk",
        "/api/events",
        "/api/event-bulk-create-jobs",
        "/api/profile-import",
        "/v1/batch",
        "/v1/track",
        "/v1/identify",
    }
)

# Event names that get a label of their own; anything else a shop sends is `custom`, so a storefront
# inventing a name per page cannot grow the series without bound.
KNOWN_EVENTS = frozenset(
    {
        events.CHECKOUT_STARTED,
        events.ORDER_PLACED,
        events.ORDER_CANCELLED,
        events.ORDER_FULFILLED,
        events.ORDER_REFUNDED,
        events.SUBSCRIBER_CREATED,
        events.TAG_ADDED,
        events.TAG_REMOVED,
        events.LIST_ADDED,
        events.LIST_REMOVED,
        "email.sent",
        "email.delivered",
        "email.delivery_delayed",
        "email.opened",
        "email.clicked",
        "email.bounced",
        "email.complained",
        "email.failed",
        "email.unsubscribed",
        "email.received",
        "email.replied",
    }
)
CUSTOM_EVENT = "custom"

# The directory where the processes of `serve --processes` keep their shared metric files. prometheus_client
# reads it from the environment when it is imported; supervisor.py sets it for the children it spawns.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Requests and SMTP exchanges: milliseconds to tens of seconds; lateness of due steps: up to hours.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def surface_of(path: str) -> str:
    """Which API a request came through, from its path alone (a whole path segment must match)."""
    for prefix, surface in SURFACES:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return surface
    return OWN


def is_ingest(method: str, path: str) -> bool:
    return method == "POST" and path in INGEST_PATHS


def event_label(name: str) -> str:
    """The `name` label of an event: its canonical name if it is one cartback knows, else `custom`."""
    name = events.canonical_name(name)
    return name if name in KNOWN_EVENTS else CUSTOM_EVENT


class Metrics:
    """The series cartback exports, registered in `registry`. Methods are cheap enough for the hot path:
    label children are looked up once and kept."""

    def __init__(self, registry: CollectorRegistry | None = None, *, shared: bool = False) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cartback_http_requests",
            "HTTP requests answered, by API surface and status code.",
            ["surface", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "cartback_http_request_duration_seconds",
            "Time from receiving a request to the end of its response, by API surface.",
            ["surface"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "cartback_ingest_duration_seconds",
            "Latency of requests that append events (checkouts, orders, events, batches), commit included.",
            ["surface"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "cartback_events",
            "Events in the log, counted once each when the scheduler dispatches them; names outside the "
            "canonical set count as 'custom'.",
            ["name"],
            registry=r,
        )
        self.commit_batch = Histogram(
            "cartback_commit_batch_size",
            "Write jobs carried by one group commit.",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.step_lateness = Histogram(
            "cartback_step_lateness_seconds",
            "How long after its due time an automation step was claimed by a worker.",
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "cartback_messages",
            "Delivery attempts of email messages by outcome (sent, kept, deferred, failed, suppressed, "
            "unknown, skipped, gone).",
            ["outcome"],
            registry=r,
        )
        self.smtp_seconds = Histogram(
            "cartback_smtp_send_duration_seconds",
            "One SMTP transaction (connection if needed, MAIL, RCPT, DATA) until the server's reply.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "cartback_webhook_deliveries",
            "Webhook POST attempts by outcome: delivered (2xx), rejected (other status), error (no answer).",
            ["outcome"],
            registry=r,
        )
        self._lock = threading.Lock()
        self._children: dict[tuple[Any, ...], Any] = {}
        # What a scrape reads: this registry, or, `shared` by the processes of `serve --processes`, the
        # files of all of them (prometheus_client's multiprocess mode) and the gauges.
        self._scraped = self.registry
        if shared:
            self._scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scraped)  # type: ignore[no-untyped-call]

    def exposition(self) -> bytes:
        """The text a scrape gets (it may query the database: call it off the event loop)."""
        return generate_latest(self._scraped)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, metric.labels(*labels))
        return child

    # -- recording -------------------------------------------------------------------------------

    def request_done(self, surface: str, status: int, seconds: float, *, ingest: bool) -> None:
        self._child(self.requests, surface, str(status)).inc()
        if status == 429:
            # Refused by a limit and answered late on purpose (api/refusals.py): counted, not timed, or a
            # throttled client would look like a slow server.
            return
        self._child(self.request_seconds, surface).observe(seconds)
        if ingest:
            self._child(self.ingest_seconds, surface).observe(seconds)

    def events_dispatched(self, names: Mapping[str, int]) -> None:
        for name, count in names.items():
            self._child(self.events, event_label(name)).inc(count)

    def commit(self, size: int) -> None:
        self.commit_batch.observe(size)

    def steps_claimed(self, lateness: Iterable[float]) -> None:
        for seconds in lateness:
            self.step_lateness.observe(max(0.0, seconds))

    def message_outcome(self, outcome: str) -> None:
        self._child(self.messages, outcome).inc()

    def smtp_sent(self, seconds: float) -> None:
        self.smtp_seconds.observe(seconds)

    def webhook_outcome(self, ok: bool, status_code: int | None) -> None:
        outcome = "delivered" if ok else "error" if status_code is None else "rejected"
        self._child(self.webhooks, outcome).inc()

    # -- scrape-time gauges ----------------------------------------------------------------------

    def add_enrollment_gauge(
        self, count_by_status: Callable[[], Mapping[str, int]], *, cache_seconds: float = 5.0
    ) -> None:
        """Export `cartback_enrollments{status}`, computed at scrape time by `count_by_status`."""
        self._scraped.register(_EnrollmentCollector(count_by_status, cache_seconds))

    def add_hash_gauges(self, gate: Any) -> None:
        """Export the password-hash gate (core/signins.HashGate): hashes running now, the most that ever
        ran at once, and sign-ins refused because no slot or budget share came in time."""
        self._scraped.register(_HashGateCollector(gate))


class _HashGateCollector:
    def __init__(self, gate: Any) -> None:
        self._gate = gate

    def collect(self) -> list[Metric]:
        running = GaugeMetricFamily(
            "cartback_password_hashes_running", "Password hashes (dashboard sign-in) running now."
        )
        running.add_metric([], self._gate.running)
        peak = GaugeMetricFamily(
            "cartback_password_hashes_peak",
            "The most password hashes that ran at once since the process started (at most "
            "CARTBACK_SIGN_IN_HASHES).",
        )
        peak.add_metric([], self._gate.peak)
        busy = CounterMetricFamily(
            "cartback_sign_in_busy",
            "Sign-ins refused with 503 because no password-hash slot, or share of the hash budget, "
            "came in time.",
        )
        busy.add_metric([], self._gate.refused)
        return [running, peak, busy]


class _EnrollmentCollector:
    """Counts enrollments by status when scraped, at most once per `cache_seconds`: several Prometheus
    servers, or a dashboard refreshing, must not turn into a grouped count each."""

    def __init__(self, count: Callable[[], Mapping[str, int]], cache_seconds: float) -> None:
        self._count = count
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, Mapping[str, int]] | None = None
        self._lock = threading.Lock()

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "cartback_enrollments",
            "Enrollments by status, all workspaces (the same on every process: aggregate with max()).",
            labels=["status"],
        )

    def describe(self) -> list[Metric]:
        # Given, registration does not call collect() (which would query the database at start-up).
        return [self._family()]

    def collect(self) -> list[Metric]:
        family = self._family()
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._cache_seconds:
                try:
                    self._cached = (now, dict(self._count()))
                except Exception:
                    log.warning("could not count enrollments for /metrics", exc_info=True)
                    return [family]
            counts = self._cached[1]
        for status, n in sorted(counts.items()):
            family.add_metric([status], n)
        return [family]
