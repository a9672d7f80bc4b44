"""The `cartback` command. Settings are built here once and passed down; no other module reads
the environment."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cartback import errors
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
) -> None:
    """Run the HTTP API and, unless --no-worker, the scheduler in the same process. Migrates the database
    first (CARTBACK_DATABASE_URL; scheduler tick: CARTBACK_TICK_SECONDS)."""
    import uvicorn

    from cartback.app import create_app

    settings = Settings()
    db = _database(settings)
    _first_start(db)
    db.write_engine.dispose()
    application = create_app(settings, migrate=False, run_worker=not no_worker)
    # cartback's own loggers (the writer's batch summary, worker notices) go where uvicorn's go.
    log_config = dict(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"] = {
        **log_config["loggers"],
        "cartback": {"handlers": ["default"], "level": settings.log_level.upper(), "propagate": False},
    }
    uvicorn.run(
        application,
        host=host,
        port=port,
        access_log=False,
        log_level=settings.log_level,
        log_config=log_config,
    )


def _first_start(db: Database) -> None:
    """On an empty database, create the `default` workspace and show its key once."""

    def create(tx: workspaces.Tx) -> str | None:
        if workspaces.count_workspaces(tx) > 0:
            return None
        ws = workspaces.create_workspace(tx, "default", system_clock.now())
        _, secret = workspaces.create_api_key(tx, ws.id, system_clock.now(), name="default")
        return secret

    secret = db.write_sync(create)
    if secret is not None:
        # Shown once: only its hash is stored. stdout, so a script can capture it.
        print(f"Created workspace 'default'. API key (shown only this once): {secret}", flush=True)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(help="Enrollments claimed and run per round (CARTBACK_WORKER_BATCH).")
    ] = 0,
) -> None:
    """Run the scheduler alone: dispatch events and run due steps. Start several next to
    `serve --no-worker` nodes on PostgreSQL; they share the work through leases."""
    import asyncio
    import signal

    from cartback.app import build_worker
    from cartback.core.clock import system_clock as clock

    settings = Settings()
    if concurrency:
        settings = settings.model_copy(update={"worker_batch": concurrency})
    db = _database(settings)

    async def main() -> None:
        await db.start()
        runner = build_worker(settings, db, clock)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        try:
            await runner.run()
        finally:
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


@apikey_app.command("create")
def apikey_create(
    workspace: Annotated[str, typer.Option(help="Workspace name.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help=f"Repeatable; one of {', '.join(workspaces.ALL_SCOPES)}. Default: all."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key. The secret is printed alone on the last line; only its hash is stored."""
    db = _database(Settings())

    def create(tx: workspaces.Tx) -> str:
        ws = workspaces.get_workspace_by_name(tx, workspace)
        _, secret = workspaces.create_api_key(
            tx, ws.id, system_clock.now(), scopes=tuple(scope or workspaces.ALL_SCOPES), name=name
        )
        return secret

    try:
        secret = db.write_sync(create)
    except errors.CartbackError as exc:
        _fail(exc)
    err.print(f"API key for workspace {workspace!r} (shown only this once):")
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
