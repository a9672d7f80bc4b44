"""store/leases.py on real SQLite and PostgreSQL, for each kind of leased work (enrollments, message
deliveries, webhook deliveries): a live lease keeps the work with its worker, an expired one is taken over,
and the worker that lost it can no longer finish it (LeaseLost)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from cartback import errors, ids
from cartback.store import enrollments as enrollment_store
from cartback.store import leases
from cartback.store.db import Database
from cartback.store.tables import (
    enrollments,
    message_delivery,
    messages,
    sequences,
    webhook_deliveries,
    webhook_endpoints,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def _due_row(tx: sa.Connection, kind: leases.Leased, ws: str) -> str:
    """One row of `kind` due at T0, with the parent rows it needs."""
    common = {"workspace_id": ws, "created_at": T0, "updated_at": T0}
    key = ids.new_id("row")
    if kind is leases.ENROLLMENTS:
        sequence = ids.new_id("seq")
        tx.execute(
            sequences.insert().values(
                id=sequence, name="s", status="active", trigger="event_received", definition={}, **common
            )
        )
        tx.execute(
            enrollments.insert().values(
                id=key, sequence_id=sequence, subscriber_id="sub", trigger_received_at=T0, context={},
                status="active", next_run_at=T0, **common,
            )
        )  # fmt: skip
    elif kind is leases.MESSAGES:
        tx.execute(
            messages.insert().values(
                id=key, kind="marketing", to_email="a@example.com", from_email="shop@example.com",
                subject="s", status="queued", **common,
            )
        )  # fmt: skip
        tx.execute(
            message_delivery.insert().values(
                message_id=key, workspace_id=ws, rfc_message_id=f"<{key}@example.com>", transport="smtp",
                attempts=0, next_attempt_at=T0,
            )
        )  # fmt: skip
    else:
        endpoint = ids.new_id("whe")
        tx.execute(
            webhook_endpoints.insert().values(
                id=endpoint, name="e", url="https://example.com/h", events=[], status="enabled", **common
            )
        )
        tx.execute(
            webhook_deliveries.insert().values(
                id=key, endpoint_id=endpoint, event_id="evt", event_type="email.sent", payload={},
                status="pending", next_attempt_at=T0, **common,
            )
        )  # fmt: skip
    return key


def _finish(kind: leases.Leased, key: str) -> sa.Update:
    """The write that ends a piece of work: its lease given back, restricted to rows the worker holds."""
    return (
        kind.table.update()
        .where(kind.table.c[kind.key] == key, leases.held_by(kind, sa.bindparam("owner")))
        .values(dict(leases.RELEASED))
    )


@pytest.mark.parametrize("kind", leases.KINDS, ids=lambda k: k.table.name)
def test_a_lease_is_taken_over_only_once_expired_and_its_old_owner_cannot_finish(
    db: Database, make_workspace, kind: leases.Leased
) -> None:
    ws = make_workspace().id
    key = db.write_sync(lambda tx: _due_row(tx, kind, ws))

    def claim(owner: str, at: datetime) -> list[str]:
        return db.write_sync(lambda tx: leases.claim(tx, kind, owner, at, lease=LEASE, limit=10))

    assert claim("a", T0 - timedelta(seconds=1)) == []  # not due yet
    assert claim("a", T0) == [key]
    assert claim("b", T0 + LEASE - timedelta(seconds=1)) == []  # a's lease is live
    assert claim("b", T0 + LEASE + timedelta(seconds=1)) == [key]  # expired: fair game
    owner = db.read_sync(lambda tx: tx.execute(sa.select(kind.owner)).scalar_one())
    assert owner == "b"

    with pytest.raises(errors.LeaseLost) as lost:
        db.write_sync(lambda tx: leases.write_held(tx, _finish(kind, key), {"owner": "a"}, key))
    assert lost.value.item_id == key
    db.write_sync(lambda tx: leases.write_held(tx, _finish(kind, key), {"owner": "b"}, key))
    assert db.read_sync(lambda tx: tx.execute(sa.select(kind.owner, kind.until)).one()) == (None, None)


def test_an_enrollment_taken_over_is_not_written_by_its_old_owner(db: Database, make_workspace) -> None:
    ws = make_workspace().id
    key = db.write_sync(lambda tx: _due_row(tx, leases.ENROLLMENTS, ws))
    for owner, at in (("a", T0), ("b", T0 + 2 * LEASE)):
        db.write_sync(
            lambda tx, o=owner, t=at: leases.claim(tx, leases.ENROLLMENTS, o, t, lease=LEASE, limit=10)
        )
    taken = db.read_sync(lambda tx: enrollment_store.get_leased(tx, key, "b"))
    assert taken is not None
    assert db.read_sync(lambda tx: enrollment_store.get_leased(tx, key, "a")) is None
    with pytest.raises(errors.LeaseLost):
        db.write_sync(lambda tx: enrollment_store.update_held(tx, replace(taken, status="completed"), "a"))
    assert db.read_sync(lambda tx: tx.execute(sa.select(enrollments.c.status)).scalar_one()) == "active"


def test_release_gives_back_only_the_owners_leases(db: Database, make_workspace) -> None:
    ws = make_workspace().id
    for kind in leases.KINDS:
        db.write_sync(lambda tx, k=kind: _due_row(tx, k, ws))
        db.write_sync(lambda tx, k=kind: _due_row(tx, k, ws))
        db.write_sync(lambda tx, k=kind: leases.claim(tx, k, "a", T0, lease=LEASE, limit=1))
        db.write_sync(lambda tx, k=kind: leases.claim(tx, k, "b", T0, lease=LEASE, limit=1))
    released = db.write_sync(lambda tx: [leases.release(tx, k, "a") for k in leases.KINDS])
    assert released == [1, 1, 1]
    for kind in leases.KINDS:
        owners = db.read_sync(lambda tx, k=kind: list(tx.execute(sa.select(k.owner)).scalars()))
        assert sorted(owners, key=str) == [None, "b"]
