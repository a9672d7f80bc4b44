"""The writer tells a race from a bug by the constraint a write broke (store/db.py, tables.RACE_CONSTRAINTS):
a race on a natural key is re-run (the re-run finds the other writer's row); any other violation is an
IntegrityViolation, a 500 that names the constraint, run once and never retried."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from cartback import errors, ids
from cartback.store.db import constraint_of
from cartback.store.tables import RACE_CONSTRAINTS, SQLITE_KEYS, messages, metadata, tags

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def _tag(workspace_id: str, name: str) -> dict[str, object]:
    return {"id": ids.new_id("tag"), "workspace_id": workspace_id, "name": name, "created_at": NOW}


def test_integrity_race_on_a_natural_key_is_run_again(db, make_workspace):
    ws = make_workspace().id
    db.write_sync(lambda tx: tx.execute(tags.insert(), _tag(ws, "vip")))
    calls = []

    def add_if_missing(tx: sa.Connection) -> str:
        calls.append(1)
        if len(calls) == 1:
            # As if another writer's row had not been visible when this one looked.
            tx.execute(tags.insert(), _tag(ws, "vip"))
        return str(tx.execute(sa.select(tags.c.id).where(tags.c.workspace_id == ws)).scalar_one())

    assert db.write_sync(add_if_missing)
    assert len(calls) == 2


@pytest.mark.parametrize("kind", ["foreign key", "check"])
def test_integrity_violation_that_is_no_race_is_a_500_naming_it_and_not_retried(db, make_workspace, kind):
    ws = make_workspace().id
    calls = []

    def broken(tx: sa.Connection) -> None:
        calls.append(1)
        if kind == "foreign key":
            tx.execute(tags.insert(), _tag("ws_does_not_exist", "vip"))
        else:
            tx.execute(
                messages.insert(),
                {
                    "id": ids.new_id("msg"),
                    "workspace_id": ws,
                    "kind": "transactional",
                    "to_email": "a@example.com",
                    "from_email": "b@example.com",
                    "subject": "s",
                    "status": "bogus",
                    "created_at": NOW,
                    "updated_at": NOW,
                },
            )

    with pytest.raises(errors.IntegrityViolation) as raised:
        db.write_sync(broken)
    assert len(calls) == 1
    assert raised.value.status_code == 500
    if kind == "check":
        assert raised.value.constraint == "ck_messages_status"
    elif db.dialect == "postgresql":
        assert raised.value.constraint == "fk_tags_workspace_id_workspaces"
    else:
        assert raised.value.constraint == "FOREIGN KEY constraint failed"  # SQLite names no foreign key
    assert raised.value.constraint in str(raised.value)


def test_integrity_constraint_names_agree_on_both_databases(db, make_workspace):
    ws = make_workspace().id
    db.write_sync(lambda tx: tx.execute(tags.insert(), _tag(ws, "vip")))
    with db.write_engine.connect() as conn, pytest.raises(IntegrityError) as raised:
        conn.execute(tags.insert(), _tag(ws, "vip"))
    assert constraint_of(raised.value) == "uq_tags_workspace_id_name"


def test_integrity_race_constraints_all_exist():
    names = {str(c.name) for t in metadata.tables.values() for c in t.constraints}
    assert names >= RACE_CONSTRAINTS
    assert set(SQLITE_KEYS.values()) >= {n for n in RACE_CONSTRAINTS if n.startswith("uq_")}


def test_integrity_race_that_keeps_recurring_is_a_conflict(db, make_workspace):
    """A race constraint broken at every re-run (another writer wins each time) ends as Conflict, which
    every surface answers as retryable, after a bounded number of runs."""
    ws = make_workspace().id
    db.write_sync(lambda tx: tx.execute(tags.insert(), _tag(ws, "vip")))
    calls = []

    def always_racing(tx: sa.Connection) -> None:
        calls.append(1)
        tx.execute(tags.insert(), _tag(ws, "vip"))

    with pytest.raises(errors.Conflict):
        db.write_sync(always_racing)
    assert 1 < len(calls) <= 10


def test_integrity_violation_over_http_is_a_500_naming_it_and_segment_asks_for_no_retry(db, app_client):
    """A constraint no race explains (a bug) answers 500 with its name on the Sequenzy API and on Segment's,
    where it is not the 503 the SDKs retry forever. The bug here: a unique index allowing one event per
    workspace, which a checkout breaks (a new person's subscriber.created, then checkout_started), and
    so does any event after it."""
    bug = "uq_events_one_per_workspace"
    db.write_sync(lambda tx: tx.exec_driver_sql(f"CREATE UNIQUE INDEX {bug} ON events (workspace_id)"))
    # PostgreSQL reports the index's name; SQLite only its columns.
    named = bug if db.dialect == "postgresql" else "events.workspace_id"
    try:
        checkout = {"customer": {"email": "jane@example.com"}, "currency": "USD", "totalCents": 100}
        sequenzy = app_client.post("/checkouts", {"checkoutId": "c1", **checkout})
        assert sequenzy.status_code == 500 and named in sequenzy.json()["error"], sequenzy.text

        track = {"type": "track", "event": "Viewed Product", "userId": "u1", "messageId": "m1"}
        segment = app_client.http.post(
            "/v1/track", json=track, headers={"Authorization": f"Bearer {app_client.tenant.key}"}
        )
        assert segment.status_code == 500 and named in segment.json()["message"], segment.text
    finally:
        # The index is schema, which the next test's database would keep (tests/conftest.py empties rows).
        db.write_sync(lambda tx: tx.exec_driver_sql(f"DROP INDEX {bug}"))
