"""A dashboard user sees only their own workspace: figures, lists, and (by direct URL) no object of
another workspace."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cartback.core import sequences
from cartback.store import sequences as sequence_store
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, csrf_of, make_user, open_app, sign_in

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def stored_sequences(s):
    return s["db"].read_sync(lambda tx: sequence_store.listing(tx, s["b"].id, limit=10)[0])


def figure(html: str, name: str) -> str:
    marker = f'data-figure="{name}">'
    return html.split(marker, 1)[1].split("<", 1)[0]


@pytest.fixture
def two_shops(db, db_url, make_workspace):
    """Workspace B with a person, an enrollment and a sent message; a client signed in to workspace A."""
    clock = FrozenClock(T0)
    a, b = make_workspace(), make_workspace()
    seq_b = db.write_sync(lambda tx: sequences.create(tx, b.id, ABANDONED, clock.now(), status="active"))
    seq_a = db.write_sync(lambda tx: sequences.create(tx, a.id, ABANDONED, clock.now(), status="active"))
    clock.advance(seconds=1)
    with open_app(db_url, clock) as client:
        reply = client.post(
            "/api/v1/checkouts",
            json=checkout_body("co-b", "victim@example.com"),
            headers={"Authorization": f"Bearer {b.key}"},
        )
        assert reply.status_code == 200
        person_b = reply.json()["subscriberId"]
        mine = client.post(
            "/api/v1/checkouts",
            json=checkout_body("co-a", "mine@example.com"),
            headers={"Authorization": f"Bearer {a.key}"},
        )
        person_a = mine.json()["subscriberId"]
        run_until_idle(db, clock)
        clock.advance(hours=2)
        run_until_idle(db, clock)
        user_b = make_user(db, b.name)
        sign_in(client, user_b)
        message_b = client.get("/app/messages").text.split('href="/app/messages/', 1)[1].split('"', 1)[0]
        client.cookies.clear()
        sign_in(client, make_user(db, a.name))
        yield {
            "client": client,
            "a": a,
            "b": b,
            "user_b": user_b,
            "person_a": person_a,
            "person_b": person_b,
            "seq_a": seq_a.id,
            "seq_b": seq_b.id,
            "message_b": message_b,
            "db": db,
        }


def test_dashboard_overview_counts_only_the_viewers_workspace(two_shops):
    client = two_shops["client"]
    assert figure(client.get("/app/").text, "checkouts_started") == "1"


def test_dashboard_lists_show_only_the_viewers_workspace(two_shops):
    client = two_shops["client"]
    people = client.get("/app/people").text
    assert "mine@example.com" in people and "victim@example.com" not in people
    outbox = client.get("/app/messages").text
    assert "mine@example.com" in outbox and "victim@example.com" not in outbox
    assert "0 messages." in client.get("/app/messages", params={"to": "victim@example.com"}).text
    log = client.get("/app/events/rows").text
    assert "ecommerce.checkout_started" in log and "co-b" not in log and "co-a" in log
    assert (
        "Nobody with the address" in client.get("/app/events", params={"person": "victim@example.com"}).text
    )
    assert "victim@example.com" not in client.get("/app/people", params={"q": "victim"}).text


def test_dashboard_objects_of_another_workspace_are_404_by_direct_url(two_shops):
    client, s = two_shops["client"], two_shops
    urls = [
        f"/app/people/{s['person_b']}",
        f"/app/people/{s['person_b']}/explain?sequence={s['seq_b']}",
        f"/app/people/{s['person_b']}/explain?sequence={s['seq_a']}",
        # My own person, explained against their sequence.
        f"/app/people/{s['person_a']}/explain?sequence={s['seq_b']}",
        f"/app/people/{s['person_a']}?sequence={s['seq_b']}",
        f"/app/messages/{s['message_b']}",
        f"/app/messages/{s['message_b']}/preview",
        f"/app/sequences/{s['seq_b']}",
    ]
    for url in urls:
        reply = client.get(url)
        assert reply.status_code == 404, url
        assert "victim@example.com" not in reply.text
    assert (
        s["seq_b"] not in client.get("/app/sequences").text
        and s["seq_a"] in client.get("/app/sequences").text
    )
    # Writes to their objects are refused the same way and change nothing.
    token = csrf_of(client.get("/app/").text)
    for url, data in (
        (f"/app/sequences/{s['seq_b']}", {"name": "Hijacked", "action": "save"}),
        (f"/app/sequences/{s['seq_b']}/status", {"status": "paused"}),
    ):
        reply = client.post(url, data={**data, "csrf_token": token})
        assert reply.status_code == 404, url
    [theirs] = [q for q in stored_sequences(s) if q.id == s["seq_b"]]
    assert theirs.name == "Abandoned checkout" and theirs.status == "active" and theirs.revision == 1
    # The same URLs work for the owner of workspace B.
    client.cookies.clear()
    sign_in(client, s["user_b"])
    assert client.get(f"/app/people/{s['person_b']}").status_code == 200
    assert client.get(f"/app/messages/{s['message_b']}/preview").status_code == 200
    assert client.get(f"/app/sequences/{s['seq_b']}").status_code == 200
    assert client.get(f"/app/people/{s['person_b']}/explain?sequence={s['seq_b']}").status_code == 200
