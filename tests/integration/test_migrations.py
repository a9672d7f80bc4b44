"""`alembic upgrade head` must build exactly the schema tables.py describes, on both databases."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from tests.conftest import PG_URL

from cartback.core import orders as core_orders
from cartback.core.subscribers import Identity
from cartback.store import db as db_module
from cartback.store import tables
from cartback.store.db import Database, sqlalchemy_url
from cartback.store.tables import events, metadata, orders, workspaces


def test_migrations_match_tables(db):
    with db.write_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_migrate_twice_is_a_no_op(db):
    db.migrate()
    db.migrate()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each kind, for migrating step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'steps.db'}"
        return
    admin = sa.create_engine(sqlalchemy_url(PG_URL), isolation_level="AUTOCOMMIT")
    name = f"cartback_steps_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(db_module.__file__).parent / "migrations"))
    return config


def _upgrade(engine: sa.Engine, revision: str) -> None:
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_migration_0017_makes_refunds_an_amount(empty_url):
    """A full refund used to be a refunded order without an amount: after 0017 it is the order's total,
    an order never refunded has 0, and a partial refund keeps its amount."""
    engine = sa.create_engine(sqlalchemy_url(empty_url))
    try:
        _upgrade(engine, "0016")
        now = datetime(2026, 11, 1, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(workspaces.insert().values(id="ws_1", name="one", secret="s", created_at=now))
            for order_id, status, total, refund in [
                ("full", "refunded", 10000, None),
                ("partial", "refunded", 3000, 1000),
                ("placed", "placed", 500, None),
                ("over", "refunded", 400, 900),
            ]:
                conn.execute(
                    sa.text(
                        "INSERT INTO orders (id, workspace_id, order_id, subscriber_id, status, currency,"
                        " total_cents, refund_amount_cents, items, properties, ordered_at, created_at,"
                        " updated_at) VALUES (:id, 'ws_1', :order_id, 'sub_1', :status, 'USD', :total,"
                        " :refund, '[]', '{}', :now, :now, :now)"
                    ),
                    {
                        "id": f"ord_{order_id}",
                        "order_id": order_id,
                        "status": status,
                        "total": total,
                        "refund": refund,
                        "now": now,
                    },
                )
            # The one refund event a Sequenzy push recorded before, under the key of those days.
            conn.execute(
                sa.text(
                    "INSERT INTO events (id, workspace_id, subscriber_id, name, source, properties,"
                    " occurred_at, received_at, idempotency_key, historical) VALUES ('evt_old', 'ws_1',"
                    " 'sub_1', 'ecommerce.order_refunded', 'sequenzy', '{}', :now, :now,"
                    " 'order:full:refunded', false)"
                ),
                {"now": now},
            )
        _upgrade(engine, "head")
        with engine.connect() as conn:
            found = dict(conn.execute(sa.select(orders.c.order_id, orders.c.refund_amount_cents)).all())
        assert found == {"full": 10000, "partial": 1000, "placed": 0, "over": 400}
    finally:
        engine.dispose()

    # The same push sent again after the upgrade is the refund already recorded, not a new one.
    database = Database(empty_url)
    try:
        replay = core_orders.OrderInput(
            order_id="full",
            customer=Identity(email="jane@example.com"),
            currency="USD",
            total_cents=10000,
            status="refunded",
        )
        recorded = database.write_sync(
            lambda tx: core_orders.record_order(tx, "ws_1", replay, now + timedelta(days=1))
        )
        assert recorded.duplicate is True and "evt_old" in recorded.event_ids
        refunds = database.read_sync(
            lambda tx: tx.execute(
                sa.select(sa.func.count()).where(events.c.name == "ecommerce.order_refunded")
            ).scalar_one()
        )
        assert refunds == 1
    finally:
        database.close()


def _rows(now: datetime) -> dict[sa.Table, dict[str, Any]]:
    """A workspace with one subscriber, sequence, enrollment and its history, and one sent sequence
    message with its body and delivery row: real rows for the revisions that rebuild these tables."""
    return {
        tables.workspaces: {"id": "ws_1", "name": "shop", "secret": "s" * 32, "created_at": now},
        tables.subscribers: {
            "id": "sub_1",
            "workspace_id": "ws_1",
            "email": "jane@example.com",
            "email_key": "jane@example.com",
            "attributes": {"firstName": "Jane"},
            "created_at": now,
            "updated_at": now,
        },
        tables.sequences: {
            "id": "seq_1",
            "workspace_id": "ws_1",
            "name": "Abandoned",
            "status": "active",
            "trigger": "event_received",
            "definition": {"nodes": []},
            "created_at": now,
            "updated_at": now,
        },
        tables.enrollments: {
            "id": "enr_1",
            "workspace_id": "ws_1",
            "sequence_id": "seq_1",
            "subscriber_id": "sub_1",
            "trigger_received_at": now,
            "context": {"event": {"checkoutId": "c1"}},
            "status": "completed",
            "created_at": now,
            "updated_at": now,
        },
        tables.enrollment_history: {
            "id": "eh_1",
            "workspace_id": "ws_1",
            "enrollment_id": "enr_1",
            "sequence_id": "seq_1",
            "action": "completed",
            "at": now,
        },
        tables.messages: {
            "id": "msg_1",
            "workspace_id": "ws_1",
            "subscriber_id": "sub_1",
            "sequence_id": "seq_1",
            "enrollment_id": "enr_1",
            "node_id": "n1",
            "kind": "sequence",
            "to_email": "jane@example.com",
            "from_email": "shop@example.com",
            "subject": "Still there?",
            "status": "sent",
            "created_at": now,
            "updated_at": now,
        },
        tables.message_bodies: {"message_id": "msg_1", "workspace_id": "ws_1", "html": "<p>Hi</p>"},
        tables.message_delivery: {
            "message_id": "msg_1",
            "workspace_id": "ws_1",
            "rfc_message_id": "<msg_1@example.com>",
            "transport": "smtp",
        },
    }


def test_migration_0018_keeps_every_row_of_the_tables_it_rebuilds(empty_url):
    """Seed real rows at 0017 (the revision before 0018), upgrade to head and find them all. 0018
    rebuilds messages and enrollments on SQLite; with foreign keys enforced, that rebuild would delete every
    row referring to them (bodies, deliveries, an enrollment's history) by ON DELETE CASCADE."""
    db = Database(empty_url)
    # As `serve` migrates (store/db.py: foreign keys off on SQLite while tables are rebuilt), to 0017 only.
    db_module.migrate(db.write_engine, "0017")
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    rows = _rows(now)
    with db.write_engine.begin() as conn:
        for table, row in rows.items():
            conn.execute(table.insert(), row)
    db.migrate()
    with db.read_engine.connect() as conn:
        head = ScriptDirectory.from_config(_config()).get_current_head()
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head
        for table, row in rows.items():
            [found] = conn.execute(sa.select(*(table.c[n] for n in row))).mappings().all()
            assert dict(found) == row, table.name
    db.close()


# The revision before head, where test_the_latest_migration_keeps_every_row_seeded_before_it seeds its rows.
BEFORE_HEAD = "0021"


def test_the_latest_migration_keeps_every_row_seeded_before_it(empty_url):
    """Seed real rows at the revision before head, in every table the last migrations touch (0019 rekeyed
    subscribers and suppressions, 0020 added connectors and their webhooks, 0021 alters workspaces, 0022
    rebuilds messages on SQLite) and in the tables that hang off a workspace or a message by ON DELETE
    CASCADE, then upgrade to head as `serve` does and find every row unchanged. A migration that rebuilt
    workspaces or messages on SQLite with foreign keys enforced would empty all of them."""
    script = ScriptDirectory.from_config(_config())
    head = script.get_current_head()
    assert head is not None
    # A new migration moves the seed point: seed its tables' rows at the revision before it here.
    assert script.get_revision(head).down_revision == BEFORE_HEAD
    db = Database(empty_url)
    db_module.migrate(db.write_engine, BEFORE_HEAD)
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    rows: dict[sa.Table, dict[str, Any]] = {
        tables.workspaces: {
            "id": "ws_1",
            "name": "shop",
            "secret": "s" * 32,
            "created_at": now,
            "from_address": "Shop <shop@example.com>",
        },
        tables.api_keys: {
            "id": "key_1",
            "workspace_id": "ws_1",
            "name": "server",
            "prefix": "cb_live_ab",
            "key_hash": "0" * 64,
            "scopes": ["*"],
            "created_at": now,
        },
        tables.users: {
            "id": "usr_1",
            "workspace_id": "ws_1",
            "email": "owner@example.com",
            "email_key": "owner@example.com",
            "password_hash": "scrypt$14$8$1$salt$hash",
            "created_at": now,
            "session_version": 2,
        },
        # Keyed as 0019 left it: the domain in its A-label form.
        tables.subscribers: {
            "id": "sub_1",
            "workspace_id": "ws_1",
            "email": "jane@bücher.example",
            "email_key": "jane@xn--bcher-kva.example",
            "first_name": "Jane",
            "attributes": {"orders": 1},
            "created_at": now,
            "updated_at": now,
        },
        tables.suppressions: {
            "id": "sup_1",
            "workspace_id": "ws_1",
            "email": "ann@bücher.example",
            "email_key": "ann@xn--bcher-kva.example",
            "reason": "unsubscribed",
            "source": "link",
            "created_at": now,
        },
        tables.connectors: {
            "id": "con_1",
            "workspace_id": "ws_1",
            "platform": "shopify",
            "name": "Main store",
            "secret": "encrypted-secret",
            "previous_secret": "encrypted-previous",
            "previous_expires_at": now,
            "created_at": now,
        },
        tables.connector_webhooks: {
            "connector_id": "con_1",
            "webhook_id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            "topic": "checkouts/create",
            "received_at": now,
        },
    }
    # A sequence email with its body and delivery row (0022 rebuilds messages), of the same workspace and
    # subscriber.
    rows.update({t: r for t, r in _rows(now).items() if t not in (tables.workspaces, tables.subscribers)})
    try:
        with db.write_engine.begin() as conn:
            for table, row in rows.items():
                conn.execute(table.insert(), row)
        db.migrate()
        with db.read_engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head
            for table, row in rows.items():
                [found] = conn.execute(sa.select(*(table.c[n] for n in row))).mappings().all()
                assert dict(found) == row, table.name
            # The shop's identity is new at 0021: unset, so mail keeps naming the workspace.
            shop = conn.execute(sa.select(tables.workspaces.c.shop_name, tables.workspaces.c.shop_address))
            assert shop.one() == (None, None)
    finally:
        db.close()


def test_migration_0022_allows_kept_and_keeps_every_row(empty_url):
    """0022 replaces the CHECK on messages.status so that `kept` (the outbox) is allowed: a row written
    before it keeps its status and its bodies and deliveries (SQLite rebuilds the table), a stored message
    can then be `kept`, and a status cartback does not know is still refused."""
    db = Database(empty_url)
    db_module.migrate(db.write_engine, "0021")
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    rows = _rows(now)
    with db.write_engine.begin() as conn:
        for table, row in rows.items():
            conn.execute(table.insert(), row)
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(tables.messages.update().values(status="kept"))
    db.migrate()
    with db.read_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0022"
        for table, row in rows.items():
            [found] = conn.execute(sa.select(*(table.c[n] for n in row))).mappings().all()
            assert dict(found) == row, table.name
    with db.write_engine.begin() as conn:
        conn.execute(tables.messages.update().values(status="kept"))
        with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
            conn.execute(tables.messages.update().values(status="delivered"))
    with db.read_engine.connect() as conn:
        assert conn.execute(sa.select(tables.messages.c.status)).scalar() == "kept"
    # Back to 0021: a kept message is what that schema called it, `sent`, and nothing else is lost.
    with db.write_engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            # As store.db.migrate does: SQLite's rebuild must not cascade to the message's body.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            config = _config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0021")
    with db.read_engine.connect() as conn:
        assert conn.execute(sa.select(tables.messages.c.status)).scalar() == "sent"
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.message_bodies)).scalar() == 1
    db.close()
