"""`alembic upgrade head` must build exactly the schema tables.py describes, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cartback.store.tables import metadata


def test_migrations_match_tables(db):
    with db.write_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_migrate_twice_is_a_no_op(db):
    db.migrate()
    db.migrate()
