"""create_app(settings): the one place the HTTP application and its services are assembled."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from cartback import __version__, dashboard
from cartback import metrics as metrics_module
from cartback.api import (
    access,
    deps,
    hooks,
    klaviyo,
    lean,
    limits,
    links,
    operations,
    public,
    ratelimits,
    segment,
    sequenzy,
)
from cartback.api import errors as api_errors
from cartback.core import attribution, mail, signins, webhooks
from cartback.core import ratelimits as budgets
from cartback.core.clock import Clock, system_clock
from cartback.core.units import Transactions
from cartback.delivery import render, render_budget
from cartback.scheduler import mail_sender, webhook_sender
from cartback.scheduler.worker import Worker
from cartback.settings import Settings
from cartback.store import enrollments, workspaces
from cartback.store.db import Database
from cartback.wakeups import Wakeups

# Of the shutdown budget, what is kept for giving back leases and the writer's last commit.
_SHUTDOWN_RESERVE_SECONDS = 1.0


def mail_options(settings: Settings) -> mail.Options:
    """How every email is composed and queued (core/mail), for the API's sends and the worker's steps."""
    return mail.Options(
        public_url=settings.public_url,
        default_from=settings.from_,
        transport="smtp" if settings.smtp_url else "outbox",
    )


def build_worker(
    settings: Settings,
    db: Database,
    clock: Clock,
    metrics: metrics_module.Metrics | None = None,
    *,
    options: mail.Options | None = None,
) -> Worker:
    worker = Worker(
        db,
        clock,
        options=options or mail_options(settings),
        tick_seconds=settings.tick_seconds,
        batch_size=settings.worker_batch,
        lease_seconds=settings.lease_seconds,
        metrics=metrics,
    )
    worker.event_hooks.append(webhooks.queue_for_event)
    worker.event_hooks.append(attribution.hook(attribution_rules(settings)))
    sender = mail_sender.sender_for(settings, worker.metrics)
    worker.duties.append(sender.duty)
    worker.on_stop.append(sender.close)
    hooks = webhook_sender.Sender(
        webhook_policy(settings),
        timeout=settings.webhook_timeout_seconds,
        allow_private=settings.webhook_allow_private,
    )
    worker.duties.append(hooks)
    worker.on_stop.append(hooks.wait_idle)
    return worker


def attribution_rules(settings: Settings) -> attribution.Rules:
    return attribution.Rules(
        engagement_window=timedelta(days=settings.attribution_window_days),
        receipt_window=timedelta(hours=settings.attribution_receipt_hours),
    )


def process_metrics(db: Database, *, shared: bool = False) -> metrics_module.Metrics:
    """The metrics of one process: its own registry, the writer's batch sizes and the enrollment gauge.
    `shared`: one of the processes of `serve --processes`, whose scrapes sum every process's series."""
    metrics = metrics_module.Metrics(shared=shared)
    db.batch_observers.append(metrics.commit)
    metrics.add_enrollment_gauge(lambda: db.read_sync(enrollments.count_by_status))
    return metrics


def worker_budget(settings: Settings, began: float | None) -> float:
    """Seconds the worker may still take to stop, of the shutdown budget counted from `began`."""
    deadline = (began if began is not None else time.monotonic()) + settings.shutdown_seconds
    return max(0.0, deadline - _SHUTDOWN_RESERVE_SECONDS - time.monotonic())


def webhook_policy(settings: Settings) -> webhooks.Policy:
    return webhooks.Policy(
        retry_base=timedelta(seconds=settings.webhook_retry_base_seconds),
        retry_window=timedelta(seconds=settings.webhook_retry_window_seconds),
        disable_after_failures=settings.webhook_disable_after_failures,
        disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
    )


def secret_key(settings: Settings, db: Transactions) -> str:
    """The configured secret, else the one generated on first start and kept in the database."""
    if settings.secret_key:
        return settings.secret_key
    return db.write_sync(
        lambda tx: workspaces.put_setting_if_absent(tx, "secret_key", secrets.token_urlsafe(48))
    )


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    migrate: bool = True,
    run_worker: bool = True,
    wakeups: Wakeups | None = None,
) -> FastAPI:
    """The application. With `run_worker`, the scheduler runs in the same process (the embedded default).
    `wakeups`: this is one of the processes of `serve --processes`, whose commits wake the worker running
    in another (or, with `run_worker`, whose worker the others' commits wake)."""
    db = Database(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        batch_max=settings.commit_batch_max,
        writers=settings.commit_writers,
    )
    metrics = process_metrics(db, shared=settings.processes > 1)
    # Sign-in failures and API rate limits count in one store: their bucket names never meet.
    counter = budgets.counter_for(db, processes=settings.processes)
    options = mail_options(settings)
    render.PROCESSES.resize(settings.render_processes)
    render_budget.BUDGET.configure(settings.render_seconds_per_minute)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            db.migrate()
        await db.start()
        worker = build_worker(settings, db, clock, metrics, options=options) if run_worker else None
        loop = asyncio.get_running_loop()
        stop_listening: Callable[[], None] | None = None
        if worker is not None:
            db.commit_listeners.append(worker.wake)
            if wakeups is not None:
                stop_listening = wakeups.listen(loop, worker.wake)
        elif wakeups is not None:
            db.commit_listeners.append(wakeups.notify)
        task = asyncio.create_task(worker.run(), name="cartback-worker") if worker else None
        app.state.worker = worker
        began: list[float] = []

        def begin_shutdown() -> None:
            """Called from the signal handler (`cartback serve`): the worker stops while the server drains
            its requests, rather than after."""
            if not began:
                began.append(time.monotonic())
                if worker is not None:
                    loop.call_soon_threadsafe(worker.stop)

        app.state.begin_shutdown = begin_shutdown
        try:
            yield
        finally:
            if stop_listening is not None:
                stop_listening()
            if worker is not None and task is not None:
                await worker.stop_within(task, worker_budget(settings, began[0] if began else None))
            # Commits what in-flight requests and the worker queued, then stops the writer.
            await db.stop()

    app = FastAPI(
        title="cartback",
        version=__version__,
        summary="Abandoned-checkout recovery: Sequenzy-, Klaviyo- and Segment-compatible APIs.",
        lifespan=lifespan,
        # /docs is served below from local assets; no page of cartback loads anything from a CDN.
        docs_url=None,
        redoc_url=None,
        # cartback reports through its own /metrics and logs. FastAPI's OpenTelemetry bridge, left on,
        # asks on every request whether a provider was configured: about 5 % of a checkout's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _mount_docs(app)
    keys = deps.KeyCache(db, clock)
    app.state.services = deps.Services(settings=settings, db=db, clock=clock, keys=keys, mail=options)
    app.state.metrics = metrics
    app.state.sign_ins = signins.Guard(
        signins.Attempts(
            signins.Limits(
                settings.sign_in_failures_per_address,
                settings.sign_in_failures_per_client,
                settings.sign_in_window_seconds,
            ),
            counter,
            clock,
        ),
        signins.HashGate(
            settings.sign_in_hashes,
            settings.sign_in_wait_seconds,
            signins.HashBudget(settings.sign_in_hashes_per_second, signins.HASH_BURST),
        ),
    )
    metrics.add_hash_gauges(app.state.sign_ins.gate)
    app.state.refusal_delay = settings.refusal_delay_seconds
    api_errors.install(app)
    links.install(app)
    sequenzy.install(app)
    segment.install(app)
    klaviyo.install(app)
    public.install(app)
    hooks.install(app)
    dashboard.install(app)
    app.add_middleware(limits.BodyLimits, max_bytes=settings.max_body_bytes)
    policy = budgets.Policy(burst=settings.rate_limit_burst, steady=settings.rate_limit_steady)
    limiter = budgets.Limiter(policy, counter, clock) if policy.enabled else None
    if limiter is not None:
        # Added last, so it runs first: a throttled request costs no body read.
        app.state.limiter = limiter
        app.add_middleware(
            ratelimits.RateLimits, keys=keys, limiter=limiter, delay=settings.refusal_delay_seconds
        )
    # Outside the limits, so a browser can read their answers on /v1 too; a preflight costs nothing.
    app.add_middleware(segment.BrowserAccess)
    # Outside every other layer but the access log: what it answers skips them (api/lean.py).
    app.add_middleware(
        lean.LeanFront,
        routes=app.state.lean_routes,
        max_bytes=settings.max_body_bytes,
        limiter=limiter,
        refusal_delay=settings.refusal_delay_seconds,
    )
    # Last added, so outermost: it sees every answer, the rate limits' 429s and the body limits' 413s too.
    app.add_middleware(access.AccessLog, metrics=metrics)

    operations.install(app, db)
    return app


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its script and stylesheet from cartback's own copy (api/swagger/), so the
    page works on a machine without internet access and tells no CDN who reads it."""
    from fastapi.staticfiles import StaticFiles

    app.mount(
        "/docs/assets", StaticFiles(directory=Path(__file__).parent / "api" / "swagger"), name="docs-assets"
    )
    app.get("/docs", include_in_schema=False)(_swagger_ui)


async def _swagger_ui() -> HTMLResponse:
    # Module-level, like every endpoint: see api/operations.py for why no endpoint is a closure.
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="cartback API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css",
        swagger_favicon_url="/app/static/favicon.svg",
    )
