"""The `cartback` command. Settings are built here once and passed down; no other module reads
the environment."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console

from cartback import errors, logs
from cartback.core import connectors, shops
from cartback.core.clock import system_clock
from cartback.settings import Settings
from cartback.store import workspaces
from cartback.store.db import Database

app = typer.Typer(help="cartback: win back abandoned checkouts from your own server.", no_args_is_help=True)
workspace_app = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
user_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(user_app, name="user")
connector_app = typer.Typer(
    help="Store connectors: a platform's own webhooks (docs/connectors.md).", no_args_is_help=True
)
app.add_typer(connector_app, name="connector")

err = Console(stderr=True)


def _database(settings: Settings) -> Database:
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    db.migrate()
    return db


def _fail(exc: errors.CartbackError) -> None:
    err.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only: run `cartback worker` processes beside it.")
    ] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Server processes answering on the port, to use more than one core "
            "(CARTBACK_PROCESSES, default 1).",
        ),
    ] = None,
) -> None:
    """Run the HTTP API and, unless --no-worker, the scheduler in the same process. Migrates the database
    first (CARTBACK_DATABASE_URL; scheduler tick: CARTBACK_TICK_SECONDS). SIGTERM stops it gracefully
    within CARTBACK_SHUTDOWN_SECONDS; logs go to stderr as CARTBACK_LOG_FORMAT says."""
    from cartback import server, supervisor
    from cartback.app import create_app

    settings = Settings().listening_on(host, port)
    if processes is not None:
        settings = settings.model_copy(update={"processes": processes})
    logs.configure(settings.log_format, settings.log_level)
    db = _database(settings)
    _first_start(db)
    db.write_engine.dispose()
    if settings.processes > 1:
        status = supervisor.run(
            settings, host=host, port=port, processes=settings.processes, run_worker=not no_worker
        )
        raise typer.Exit(status)
    application = create_app(settings, migrate=False, run_worker=not no_worker)
    server.run(application, settings, host=host, port=port)


def _first_start(db: Database) -> None:
    """On an empty database, create the `default` workspace and show its key once."""

    shown = sys.stdout.isatty()

    def create(tx: workspaces.Tx) -> str | None:
        if workspaces.count_workspaces(tx) > 0:
            return None
        ws = workspaces.create_workspace(tx, "default", system_clock.now())
        if not shown:
            return ""
        _, secret = workspaces.create_api_key(tx, ws.id, system_clock.now(), name="default")
        return secret

    secret = db.write_sync(create)
    if secret is None:
        return
    if secret:
        # Shown once, to the person at the terminal: only its hash is stored.
        print(f"Created workspace 'default'. API key (shown only this once): {secret}", flush=True)
    else:
        # Output that is not a terminal is usually a log (systemd, Docker, a file), kept and shipped far
        # longer than a secret should be: no key is made here, and one is a command away.
        print(
            "Created workspace 'default'. No API key is shown here, since this output is not a terminal "
            "(a log would keep it): make one with `cartback apikey create --workspace default`.",
            flush=True,
        )


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(help="Enrollments claimed and run per round (CARTBACK_WORKER_BATCH).")
    ] = 0,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus metrics on this port at /metrics (0: off).")
    ] = 0,
    metrics_host: Annotated[
        str, typer.Option(help="Interface for --metrics-port; 0.0.0.0 to let a scraper on another host in.")
    ] = "127.0.0.1",
) -> None:
    """Run the scheduler alone: dispatch events and run due steps. Start several next to
    `serve --no-worker` nodes on PostgreSQL; they share the work through leases. SIGTERM finishes the
    current round, gives back its leases and exits within CARTBACK_SHUTDOWN_SECONDS."""
    import asyncio
    import signal
    import time

    import prometheus_client

    from cartback.app import build_worker, process_metrics, worker_budget
    from cartback.core.clock import system_clock as clock

    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    if concurrency:
        settings = settings.model_copy(update={"worker_batch": concurrency})
    db = _database(settings)
    metrics = process_metrics(db)
    if metrics_port:
        prometheus_client.start_http_server(metrics_port, addr=metrics_host, registry=metrics.registry)

    async def main() -> None:
        await db.start()
        runner = build_worker(settings, db, clock, metrics)
        task = asyncio.create_task(runner.run(), name="cartback-worker")
        signalled = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signalled.set)
        stop_wait = asyncio.create_task(signalled.wait())
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            began = time.monotonic()
            if not task.done():
                await runner.stop_within(task, worker_budget(settings, began))
            else:
                task.result()  # the loop ended on its own: an error is worth seeing
        finally:
            stop_wait.cancel()
            await db.stop()

    asyncio.run(main())


@app.command()
def explain(
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    sequence: Annotated[str, typer.Option(help="Sequence id (seq_...).")],
    email: Annotated[str, typer.Option(help="The subscriber's email.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw explanation as JSON.")] = False,
) -> None:
    """Why a subscriber was or was not enrolled in a sequence, and what happened to each of their runs."""
    import json

    from cartback.core import automations
    from cartback.store import sequences as sequence_store
    from cartback.store import subscribers as subscriber_store

    db = _database(Settings())

    def read(tx: workspaces.Tx) -> dict[str, object]:
        ws = workspaces.get_workspace_by_name(tx, workspace)
        seq = sequence_store.get(tx, ws.id, sequence)
        if seq is None:
            raise errors.NotFound(f"no sequence {sequence!r} in workspace {workspace!r}")
        sub = subscriber_store.find_by_email(tx, ws.id, email)
        if sub is None:
            raise errors.NotFound(f"no subscriber {email!r} in workspace {workspace!r}")
        return automations.explain(tx, seq, sub)

    try:
        result = db.read_sync(read)
    except errors.CartbackError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"[bold]{email}[/bold] and sequence {sequence} (trigger {result['triggerEvent']}):")
    for item in result["events"]:  # type: ignore[attr-defined]
        mark = "[green]enrolled[/green]" if item["enrolled"] else "[yellow]not enrolled[/yellow]"
        out.print(f"  event {item['eventId']} at {item.get('occurredAt')}: {mark} - {item['reason']}")
    for run in result["enrollments"]:  # type: ignore[attr-defined]
        out.print(
            f"  run {run['enrollmentId']}: {run['status']}"
            + (f" ({run['stopReason']})" if run["stopReason"] else "")
        )
        for h in run["history"]:
            out.print(
                f"    {h['at']} {h['nodeId'] or '':8} {h['action']}"
                + (f": {h['detail']}" if h["detail"] else "")
            )


@app.command()
def migrate() -> None:
    """Apply database migrations (CARTBACK_DATABASE_URL)."""
    _database(Settings())
    err.print("database is up to date")


@workspace_app.command("create")
def workspace_create(name: Annotated[str, typer.Argument(help="A unique name.")]) -> None:
    """Create a workspace and print its id."""
    db = _database(Settings())
    try:
        ws = db.write_sync(lambda tx: workspaces.create_workspace(tx, name, system_clock.now()))
    except errors.CartbackError as exc:
        _fail(exc)
    print(ws.id)


@workspace_app.command("update")
def workspace_update(
    name: Annotated[str, typer.Argument(help="The workspace's name.")],
    shop_name: Annotated[
        str | None,
        typer.Option(help="The shop's name in mail, previews and the unsubscribe page ('' resets)."),
    ] = None,
    shop_address: Annotated[
        str | None, typer.Option(help="A postal address line for the footer of the emails ('' removes it).")
    ] = None,
) -> None:
    """Set the shop's identity: the name customers see and an optional address line."""
    db = _database(Settings())

    def change(tx: workspaces.Tx) -> workspaces.Workspace:
        ws = workspaces.get_workspace_by_name(tx, name)
        return shops.update(
            tx,
            ws.id,
            ws.shop_name if shop_name is None else shop_name,
            ws.shop_address if shop_address is None else shop_address,
        )

    try:
        ws = db.write_sync(change)
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(
        f"Workspace {name!r}: mail is signed {ws.display_name!r}"
        + (f", {ws.shop_address}" if ws.shop_address else "")
        + "."
    )


_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: datetime) -> datetime:
    """`30d`, `12h`, `90m`, `2w` from now, or an ISO 8601 date or time (UTC unless it says otherwise)."""
    if match := _DURATION.match(text):
        return now + timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise errors.InvalidInput(
            f"--expires {text!r}: give a duration such as 30d, 12h, 90m, 2w or an ISO date such as 2027-01-31"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@apikey_app.command("create")
def apikey_create(
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help=f"Repeatable; one of {', '.join(workspaces.ALL_SCOPES)} (admin implies the others). "
            "Default: all."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            "--expires-in",
            help="When the key stops working: a duration from now (30d, 12h, 90m, 2w) or an ISO date/time.",
        ),
    ] = None,
) -> None:
    """Create an API key. The secret is printed alone on the last line; only its hash is stored."""
    db = _database(Settings())
    now = system_clock.now()

    def create(tx: workspaces.Tx) -> tuple[workspaces.ApiKey, str]:
        ws = workspaces.get_workspace_by_name(tx, workspace)
        expires_at = parse_expiry(expires, now) if expires else None
        return workspaces.create_api_key(
            tx, ws.id, now, scopes=tuple(scope or workspaces.ALL_SCOPES), name=name, expires_at=expires_at
        )

    try:
        key, secret = db.write_sync(create)
    except errors.CartbackError as exc:
        _fail(exc)
    until = f", expires {key.expires_at.isoformat()}" if key.expires_at else ""
    err.print(
        f"API key {key.id} for workspace {workspace!r} (scopes {', '.join(key.scopes)}{until}); "
        "the secret is shown only this once:",
        highlight=False,
    )
    print(secret)


@user_app.command("create")
def user_create(
    workspace: Annotated[str, typer.Option(help="Workspace name; the user sees only this workspace.")],
    email: Annotated[str, typer.Option(help="The address the user signs in with.")],
    password: Annotated[
        str | None,
        typer.Option(help="Prompted for (hidden, twice) when not given; at least 8 characters."),
    ] = None,
) -> None:
    """Create a dashboard user. Only a scrypt hash of the password is stored."""
    from cartback.core import users

    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = _database(Settings())
    try:
        users.check_password(password)
        user = db.write_sync(lambda tx: users.create_user(tx, workspace, email, password, system_clock.now()))
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(f"Created dashboard user {user.email!r} in workspace {workspace!r}.")
    print(user.id)


@user_app.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Option(help="The address the user signs in with.")],
    password: Annotated[
        str | None,
        typer.Option(help="Prompted for (hidden, twice) when not given; at least 8 characters."),
    ] = None,
) -> None:
    """Give a dashboard user a new password. Every session signed in before ends."""
    from cartback.core import users

    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    db = _database(Settings())
    try:
        users.check_password(password)
        user = db.write_sync(lambda tx: users.change_password(tx, email, password))
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(f"New password set for {user.email!r}; their earlier sessions are signed out.")


@apikey_app.command("list")
def apikey_list(workspace: Annotated[str, typer.Option(help="Workspace name.")]) -> None:
    """List a workspace's keys: id, prefix, name, scopes, created, expires, state. Secrets are never shown."""
    db = _database(Settings())

    def read(tx: workspaces.Tx) -> list[workspaces.ApiKey]:
        return workspaces.list_api_keys(tx, workspaces.get_workspace_by_name(tx, workspace).id)

    try:
        keys = db.read_sync(read)
    except errors.CartbackError as exc:
        _fail(exc)
    now = system_clock.now()
    for key in keys:
        if key.revoked_at is not None:
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
        elif key.expires_at is not None and key.expires_at <= now:
            state = "expired"
        else:
            state = "active"
        expiry = f"{key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "never"
        created = f"{key.created_at:%Y-%m-%d %H:%M}"
        print("\t".join([key.id, key.prefix, key.name or "-", ",".join(key.scopes), created, expiry, state]))


@apikey_app.command("revoke")
def apikey_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (key_...) or prefix, as `apikey list` shows it.")],
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
) -> None:
    """Revoke a key: requests with it get 401 (running servers notice within a few seconds)."""
    db = _database(Settings())

    def revoke(tx: workspaces.Tx) -> workspaces.ApiKey:
        ws = workspaces.get_workspace_by_name(tx, workspace)
        return workspaces.revoke_api_key(tx, ws.id, key, system_clock.now())

    try:
        revoked = db.write_sync(revoke)
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(f"revoked API key {revoked.id} ({revoked.prefix}) of workspace {workspace!r}", highlight=False)


def _sealer(settings: Settings, db: Database) -> connectors.Sealer:
    from cartback.app import secret_key

    return connectors.Sealer(secret_key(settings, db))


def hook_url(settings: Settings, platform: str, connector_id: str) -> str:
    return f"{settings.public_url.rstrip('/')}/hooks/{platform}/{connector_id}"


@connector_app.command("add")
def connector_add(
    platform: Annotated[str, typer.Argument(help="shopify, stripe, woocommerce or bigcommerce.")],
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    secret: Annotated[
        str | None,
        typer.Option(
            help="The secret the platform signs with (Shopify's, Stripe's whsec_...); when not given one is "
            "made and printed once, for platforms where you choose it (WooCommerce, BigCommerce)."
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the connector by.")] = "",
) -> None:
    """Add a connector. The webhook URL to give the platform (under CARTBACK_PUBLIC_URL) is printed alone on
    the last line; the secret is stored encrypted and never shown again."""
    settings = Settings()
    db = _database(settings)
    made = secret is None
    chosen = secret if secret is not None else connectors.new_secret()
    try:
        sealer = _sealer(settings, db)
        added = db.write_sync(
            lambda tx: connectors.add(tx, sealer, workspace, platform, chosen, name, system_clock.now())
        )
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(f"{platform} connector {added.id} for workspace {workspace!r}.", highlight=False)
    if made:
        err.print("Its secret, shown only this once:", highlight=False)
        print(chosen)
    err.print("The webhook URL:", highlight=False)
    print(hook_url(settings, added.platform, added.id))


@connector_app.command("list")
def connector_list(workspace: Annotated[str, typer.Option(help="Workspace name.")]) -> None:
    """A workspace's connectors: id, platform, name, created, webhook URL. Secrets are never shown."""
    settings = Settings()
    db = _database(settings)
    try:
        found = db.read_sync(lambda tx: connectors.list_connectors(tx, workspace))
    except errors.CartbackError as exc:
        _fail(exc)
    for c in found:
        created = f"{c.created_at:%Y-%m-%d %H:%M}"
        print("\t".join([c.id, c.platform, c.name or "-", created, hook_url(settings, c.platform, c.id)]))


@connector_app.command("remove")
def connector_remove(
    connector: Annotated[str, typer.Argument(help="The connector's id (con_...).")],
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
) -> None:
    """Remove a connector: its webhooks get 404 from then on."""
    db = _database(Settings())
    try:
        db.write_sync(lambda tx: connectors.remove(tx, workspace, connector))
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(f"removed connector {connector} of workspace {workspace!r}", highlight=False)


@connector_app.command("rotate")
def connector_rotate(
    connector: Annotated[str, typer.Argument(help="The connector's id (con_...).")],
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    secret: Annotated[str, typer.Option(help="The new secret the platform signs with.")],
    grace: Annotated[
        str, typer.Option(help="How long the previous secret stays valid: 24h, 90m, 2d; 0m for not at all.")
    ] = "24h",
) -> None:
    """Give a connector a new secret; the previous one stays valid for the grace period."""
    settings = Settings()
    db = _database(settings)
    now = system_clock.now()
    match = _DURATION.match(grace)
    if match is None:
        _fail(errors.InvalidInput(f"--grace {grace!r}: give a duration such as 24h, 90m, 2d"))
        return
    period = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    try:
        sealer = _sealer(settings, db)
        rotated = db.write_sync(
            lambda tx: connectors.rotate(tx, sealer, workspace, connector, secret, now, period)
        )
    except errors.CartbackError as exc:
        _fail(exc)
    until = rotated.previous_expires_at
    kept = (
        f"the previous secret is valid until {until.isoformat()}" if until else "the previous secret is void"
    )
    err.print(f"new secret for connector {rotated.id}; {kept}", highlight=False)


@app.command()
def demo(
    checkouts: Annotated[
        int, typer.Option(help="How many checkouts the simulated week has.", min=10, max=5000)
    ] = 300,
    seed: Annotated[int | None, typer.Option(help="Random seed, for the same data every time.")] = None,
) -> None:
    """Seed a `demo` workspace: a dashboard user, the abandoned-checkout sequence from the shipped template,
    and a week of checkouts, emails, opens, clicks and orders replayed through the engine. Then run
    `cartback serve` and sign in with the printed address and password (CARTBACK_DATABASE_URL)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cartback import demo as demo_module

    settings = Settings()
    with Progress(
        TextColumn("[bold]Replaying a week of shop traffic"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("demo", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            result = demo_module.run(settings, checkouts_count=checkouts, seed=seed, progress=advance)
        except errors.CartbackError as exc:
            bar.stop()
            _fail(exc)
    url = settings.public_url.rstrip("/") + "/app/"
    where = (
        "Run `cartback serve`"
        if "public_url" in settings.model_fields_set
        else "Run `cartback serve` (port 8000; with `--port P`, use port P in the URL below)"
    )
    out = Console(highlight=False)
    out.print(
        f"Demo workspace [bold]{result.workspace}[/bold]: {result.checkouts} checkouts, "
        f"{result.orders} orders, {result.emails} emails sent."
    )
    out.print(f"{where}, then open the dashboard:")
    out.print(f"  URL:      {url}")
    out.print(f"  Email:    {result.email}")
    out.print(f"  Password: {result.password}")
    out.print(f"  API key:  {result.api_key}")
