"""A flood of sign-ins through a real `cartback serve`: password hashes (scrypt, 32 MiB each) never run
more than CARTBACK_SIGN_IN_HASHES at once, as the server's own gauge of running hashes shows, nor more
than CARTBACK_SIGN_IN_HASHES_PER_SECOND after a burst, and sign-ins that find no free slot or share in time
get 503 with Retry-After instead of queueing without bound."""

from __future__ import annotations

import hashlib
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from cartback.core import users
from cartback.core.clock import system_clock

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NO_LIMITS = {
    "CARTBACK_SIGN_IN_FAILURES_PER_ADDRESS": "0",
    "CARTBACK_SIGN_IN_FAILURES_PER_CLIENT": "0",
    "CARTBACK_SIGN_IN_HASHES_PER_SECOND": "0",
}


def _wrong_sign_in(url: str, email: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as client:
        page = client.get("/app/login")
        match = CSRF.search(page.text)
        assert match
        return client.post(
            "/app/login", data={"email": email, "password": "not the password", "csrf_token": match.group(1)}
        )


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


def _flood(url: str, email: str, n: int) -> list[httpx.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: _wrong_sign_in(url, email), range(n)))


def _distributed_flood(url: str, n: int) -> list[httpx.Response]:
    """`n` at once, each for an address of its own, as from many clients: no per-address or per-client
    limit stops it."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: _wrong_sign_in(url, f"guess-{i}@example.com"), range(n)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sign_in_flood_runs_at_most_the_configured_hashes_at_once(start_server, db_url, db, make_workspace):
    email = f"owner-{secrets.token_hex(4)}@example.com"
    name = make_workspace().name
    db.write_sync(lambda tx: users.create_user(tx, name, email, "right password", system_clock.now()))
    server = start_server(
        db_url, env={**NO_LIMITS, "CARTBACK_SIGN_IN_HASHES": "2", "CARTBACK_SIGN_IN_WAIT_SECONDS": "60"}
    )
    answers = _flood(server.url, email, 24)
    assert [r.status_code for r in answers] == [401] * 24  # each waited its turn and was checked
    assert _metric(server.url, "cartback_password_hashes_peak") == 2  # 24 at once, never more than 2
    assert _metric(server.url, "cartback_password_hashes_running") == 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sign_in_flood_beyond_the_wait_is_503_with_retry_after(start_server, db_url, make_workspace):
    server = start_server(
        db_url, env={**NO_LIMITS, "CARTBACK_SIGN_IN_HASHES": "1", "CARTBACK_SIGN_IN_WAIT_SECONDS": "0.2"}
    )
    answers = _flood(server.url, "nobody@example.com", 16)
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {401, 503}, statuses
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "Too many sign-ins at once" in busy.text
    assert _metric(server.url, "cartback_password_hashes_peak") == 1
    assert _metric(server.url, "cartback_sign_in_busy_total") == statuses.count(503)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sign_in_flood_on_one_address_never_checks_more_than_the_limit(start_server, db_url):
    """All at once, so that none of the attempts has failed yet when the others are checked."""
    server = start_server(
        db_url, env={"CARTBACK_SIGN_IN_FAILURES_PER_ADDRESS": "5", "CARTBACK_SIGN_IN_WAIT_SECONDS": "60"}
    )
    statuses = [r.status_code for r in _flood(server.url, "victim@example.com", 16)]
    assert statuses.count(401) == 5 and statuses.count(429) == 11, statuses


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sign_in_flood_from_many_addresses_hashes_no_more_than_the_budget(start_server, db_url):
    """Half a hash a second after a burst of 5, waiting at most 4 s: of 20 at once, the burst and the two
    shares due within 4 s are checked (401), every other is refused without hashing, once it has waited
    those 4 s (a flood retrying at once is slowed down, not answered faster). With slots and time enough
    for all 20, only the budget stops them."""
    env = {
        **NO_LIMITS,
        "CARTBACK_SIGN_IN_HASHES": "2",
        "CARTBACK_SIGN_IN_WAIT_SECONDS": "4",
        "CARTBACK_SIGN_IN_HASHES_PER_SECOND": "0.5",
    }
    server = start_server(db_url, env=env)
    answers = _distributed_flood(server.url, 20)
    statuses = [r.status_code for r in answers]
    # 7 when all 20 arrive within a second of each other; 8 if they straggle over more than 2 s.
    assert 7 <= statuses.count(401) <= 8, statuses
    assert statuses.count(503) == 20 - statuses.count(401)
    assert all(r.elapsed.total_seconds() >= 3.9 for r in answers if r.status_code == 503)
    assert _metric(server.url, "cartback_sign_in_busy_total") == statuses.count(503)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_flood_refused_as_busy_costs_no_counting(start_server, db_url, db):
    """Once the hash budget is spent, an attempt is refused before it is counted or its address looked up:
    on PostgreSQL counting is a transaction on the shared counter per bucket, and taking it back another,
    which a flood of attempts that never reach a hash would otherwise pay for in full."""
    server = start_server(
        db_url,
        env={
            **NO_LIMITS,
            "CARTBACK_SIGN_IN_FAILURES_PER_ADDRESS": "5",
            "CARTBACK_SIGN_IN_HASHES": "1",
            "CARTBACK_SIGN_IN_HASHES_PER_SECOND": "0.01",  # a burst of 5, then one each 100 s
            "CARTBACK_SIGN_IN_WAIT_SECONDS": "3",
        },
    )
    addresses = [f"guess-{i}-{secrets.token_hex(3)}@example.com" for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda a: _wrong_sign_in(server.url, a), addresses))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * 5 + [503] * 11, statuses
    buckets = [f"signin address {hashlib.sha256(a.encode()).hexdigest()[:32]}" for a in addresses]
    counted = db.read_sync(
        lambda tx: tx.execute(
            sa.text("SELECT count(*) FROM rate_limits WHERE bucket = ANY(:b)"), {"b": buckets}
        ).scalar_one()
    )
    assert counted == 5  # the hashed ones only
