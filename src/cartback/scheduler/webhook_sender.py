"""Sending webhook deliveries: a worker duty that leases due deliveries, POSTs each signed body outside any
transaction, and records the outcome in a second write.

Claim → commit → POST → record. A worker that dies after the POST and before the record leaves the lease
to expire, and the delivery is sent again: delivery is at least once, and receivers deduplicate on the
`webhook-id` header, which is the same on every attempt of a delivery.

A delivery whose request cannot be built from what is stored (a payload that is not a JSON object, an
endpoint URL that cannot be requested, a secret that is not base64) is failed alone with the reason; the
rest of its batch is sent as usual (docs/delivery.md, "Poison isolation").

The request itself (body, signatures, the checks of URL and secrets) is built by `delivery/webhooks.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from cartback.core import webhooks
from cartback.core.clock import Clock
from cartback.delivery import targets
from cartback.delivery import webhooks as requests
from cartback.scheduler.duty import Runner, any_due
from cartback.store import leases
from cartback.store import webhooks as store
from cartback.store.db import Tx

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 2048


@dataclass(frozen=True)
class Job:
    delivery_id: str
    url: str
    secrets: list[str]
    body: bytes


@dataclass(frozen=True)
class Unbuildable:
    """A claimed delivery whose request cannot be built: why. What is stored fails the same way every
    time, so it is failed, not retried."""

    delivery_id: str
    reason: str


def claim(tx: Tx, owner: str, now: datetime, *, lease: timedelta, limit: int) -> list[Job | Unbuildable]:
    """Lease due deliveries and read what sending them needs, in one transaction; each request is built
    here, and one that cannot be comes back as Unbuildable without holding up the others."""
    claimed = store.claim_due(tx, owner, now, lease=lease, limit=limit)
    if not claimed:
        return []
    endpoint_ids = list({d.endpoint_id for d in claimed})
    secrets = store.secrets_for(tx, endpoint_ids)
    endpoints = {i: store.endpoint_by_id(tx, i) for i in endpoint_ids}
    jobs: list[Job | Unbuildable] = []
    for delivery in claimed:
        endpoint = endpoints.get(delivery.endpoint_id)
        if endpoint is None:
            continue
        try:
            job = Job(
                delivery.id,
                requests.check_target(endpoint.url),
                requests.check_secrets([s.secret for s in secrets.get(delivery.endpoint_id, [])]),
                requests.body_of(delivery.payload),
            )
        except ValueError as exc:
            log.warning("webhook delivery %s cannot be built: %s", delivery.id, exc)
            jobs.append(Unbuildable(delivery.id, f"cannot build the request: {exc}"))
            continue
        jobs.append(job)
    return jobs


class Sender:
    """The worker duty. Sends run as tasks beside the worker loop, at most `max_in_flight` at once, so a
    slow receiver never holds up the automation steps; each records its own outcome when done."""

    def __init__(
        self,
        policy: webhooks.Policy = webhooks.DEFAULT_POLICY,
        *,
        timeout: float = 10.0,
        max_in_flight: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_private: bool = False,
    ) -> None:
        """`allow_private`: CARTBACK_WEBHOOK_ALLOW_PRIVATE; otherwise every connection goes through
        targets.GuardedBackend (public addresses only, checked and pinned per connection)."""
        self.policy = policy
        self.allow_private = allow_private
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.transport = transport
        self._in_flight: set[asyncio.Task[None]] = set()

    async def __call__(self, worker: Runner) -> int:
        capacity = self.max_in_flight - len(self._in_flight)
        if capacity <= 0 or worker.stopping:  # stopping: finish what is in flight, claim nothing new
            return 0
        # The lease outlives the longest possible attempt, so a slow POST is never sent twice at once.
        lease = max(worker.lease, timedelta(seconds=self.timeout * 3))
        now = worker.clock.now()
        if not await any_due(worker, leases.WEBHOOKS, now):
            return 0
        jobs = await worker.db.write(
            lambda tx: claim(tx, worker.owner, now, lease=lease, limit=capacity), notify=False
        )
        unbuildable = [j for j in jobs if isinstance(j, Unbuildable)]
        for job in jobs:
            if isinstance(job, Job):
                task = asyncio.create_task(self._deliver(worker, job), name=f"webhook-{job.delivery_id}")
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        for broken in unbuildable:
            await self._fail(worker, broken)
        return len(jobs)

    async def _fail(self, worker: Runner, broken: Unbuildable) -> None:
        """Record an unbuildable delivery as a failed attempt with the reason, and fail it."""
        now = worker.clock.now()
        outcome = webhooks.Outcome(None, broken.reason, None, 0, at=now)
        worker.metrics.webhook_outcome(False, None)
        try:
            await worker.db.write(
                lambda tx: webhooks.record_outcome(
                    tx, broken.delivery_id, worker.owner, outcome, now, self.policy, permanent=True
                ),
                notify=False,
            )
        except Exception:  # the lease runs out and the next claim finds it unbuildable again
            log.exception("could not record webhook delivery %s", broken.delivery_id)

    async def wait_idle(self) -> None:
        """Wait for the sends in flight (tests, and a graceful stop)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _deliver(self, worker: Runner, job: Job) -> None:
        try:
            outcome = await self.post(job, worker.clock)
        except Exception as exc:  # a bug before the request went out: an attempt retried by the policy
            log.exception("webhook delivery %s could not be sent", job.delivery_id)
            outcome = webhooks.Outcome(None, f"{type(exc).__name__}: {exc}", None, 0, at=worker.clock.now())
        worker.metrics.webhook_outcome(outcome.ok, outcome.status_code)
        try:
            await worker.db.write(
                lambda tx: webhooks.record_outcome(
                    tx, job.delivery_id, worker.owner, outcome, worker.clock.now(), self.policy
                ),
                notify=False,
            )
        except Exception:
            # The lease runs out and the delivery is sent again: at least once.
            log.exception("could not record webhook delivery %s", job.delivery_id)

    def _transport(self) -> httpx.AsyncBaseTransport | None:
        if self.transport is not None:
            return self.transport
        return None if self.allow_private else targets.guarded_transport()

    async def post(self, job: Job, clock: Clock) -> webhooks.Outcome:
        """POST one delivery. Never raises for what a receiver or the network can do: those are outcomes.
        No redirects are followed (a 3xx is a failure). The first 2 KB of the reply is kept only when the
        connection went to a public address: what an internal service answers (a target allowed by
        CARTBACK_WEBHOOK_ALLOW_PRIVATE) is never read back through the attempts API."""
        sent_at = clock.now()
        sent_headers = requests.headers(job.secrets, job.delivery_id, int(sent_at.timestamp()), job.body)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        text: str | None = None
        try:
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(
                    timeout=self.timeout, follow_redirects=False, transport=self._transport(), trust_env=False
                ) as client,
                client.stream("POST", job.url, content=job.body, headers=sent_headers) as response,
            ):
                status = response.status_code
                if targets.peer_is_public(response.extensions):
                    kept = b""
                    async for chunk in response.aiter_bytes():
                        kept += chunk
                        if len(kept) >= RESPONSE_BODY_LIMIT:
                            break
                    text = kept[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")
        except TimeoutError:
            error = f"timed out after {self.timeout:g}s"
        except httpx.TimeoutException:
            error = f"timed out after {self.timeout:g}s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a malformed URL that slipped past validation, an SSL oddity
            error = f"{type(exc).__name__}: {exc}"
        if status is not None and not 200 <= status < 300 and error is None:
            error = f"HTTP {status}"
        duration = int((time.monotonic() - started) * 1000)
        return webhooks.Outcome(status, error, text, duration, at=sent_at)
