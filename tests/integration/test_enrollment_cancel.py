"""POST /api/v1/sequences/{id}/enrollments/cancel cancels one page of the live enrollments a request names
(CARTBACK_CANCEL_PAGE_SIZE, small here) and answers how many still match: a caller repeats it while
`hasMore`, and a dry run says what the call would do."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.core import sequences
from cartback.settings import Settings
from cartback.store import enrollments as enrollment_store
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PAGE = 2


@pytest.fixture
def shop(db, db_url, make_workspace):
    """Five live runs of the abandoned-checkout sequence, one per checkout (c0..c4)."""
    clock = FrozenClock(T0)
    tenant = make_workspace()
    settings = Settings(database_url=db_url, rate_limit_burst=0, rate_limit_steady=0, cancel_page_size=PAGE)
    app = create_app(settings, clock=clock, run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {tenant.key}"
        seq = db.write_sync(
            lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active")
        )
        for i in range(5):
            body = checkout_body(f"c{i}", f"p{i}@example.com")
            assert client.post("/api/v1/checkouts", json=body).status_code == 200
        run_until_idle(db, clock)
        yield client, tenant, seq.id


def live(db, workspace_id, sequence_id):
    return db.read_sync(lambda tx: enrollment_store.count_live(tx, workspace_id, sequence_id))


def cancel(client, sequence_id, **body):
    reply = client.post(f"/api/v1/sequences/{sequence_id}/enrollments/cancel", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def counts(answer):
    return (answer["matchedCount"], answer["cancelledCount"], answer["remainingCount"], answer["hasMore"])


def test_cancel_all_pages_through_and_answers_the_true_remaining_count(shop, db):
    client, tenant, seq_id = shop
    assert live(db, tenant.id, seq_id) == 5

    dry = cancel(client, seq_id, cancelAll=True, dryRun=True)
    assert counts(dry) == (2, 0, 3, True)
    assert {e["status"] for e in dry["enrollments"]} <= {"active", "waiting"}
    assert live(db, tenant.id, seq_id) == 5

    first = cancel(client, seq_id, cancelAll=True, reason="store closed")
    assert counts(first) == (2, 2, 3, True)
    assert [e["status"] for e in first["enrollments"]] == ["cancelled", "cancelled"]
    assert all(e["subscriberEmail"].endswith("@example.com") for e in first["enrollments"])
    assert live(db, tenant.id, seq_id) == 3

    second = cancel(client, seq_id, cancelAll=True)
    assert counts(second) == (2, 2, 1, True)
    assert not {e["tokenId"] for e in second["enrollments"]} & {e["tokenId"] for e in first["enrollments"]}
    assert counts(cancel(client, seq_id, cancelAll=True)) == (1, 1, 0, False)
    assert counts(cancel(client, seq_id, cancelAll=True)) == (0, 0, 0, False)
    assert live(db, tenant.id, seq_id) == 0


def test_cancel_by_field_value_and_by_subscriber_page_the_same_way(shop, db):
    client, tenant, seq_id = shop
    by_field = cancel(client, seq_id, fieldPath="checkoutId", fieldValues=["c0", "c1", "c2"])
    assert counts(by_field) == (2, 2, 1, True)
    assert counts(cancel(client, seq_id, fieldPath="checkoutId", fieldValues=["c0", "c1", "c2"])) == (
        1,
        1,
        0,
        False,
    )
    assert live(db, tenant.id, seq_id) == 2

    left = db.read_sync(lambda tx: enrollment_store.live_page(tx, tenant.id, seq_id, limit=10))
    subscriber_ids = [e.subscriber_id for e in left]
    assert counts(cancel(client, seq_id, subscriberIds=subscriber_ids, dryRun=True)) == (2, 0, 0, False)
    assert counts(cancel(client, seq_id, subscriberId=subscriber_ids[0])) == (1, 1, 0, False)
    assert live(db, tenant.id, seq_id) == 1


def test_cancel_without_a_selection_is_a_400_in_the_sequenzy_envelope(shop):
    client, _, seq_id = shop
    reply = client.post(f"/api/v1/sequences/{seq_id}/enrollments/cancel", json={"reason": "x"})
    assert reply.status_code == 400
    assert reply.json()["success"] is False and "cancelAll" in reply.json()["error"]
    missing = client.post("/api/v1/sequences/seq_nope/enrollments/cancel", json={"cancelAll": True})
    assert missing.status_code == 404 and missing.json()["success"] is False
