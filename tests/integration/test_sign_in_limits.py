"""Sign-in attempts are limited per address and per client address, in the app in-process on both
databases (the counter is in memory on SQLite and a shared row on PostgreSQL), with a frozen clock so the
window never ends mid-test."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.settings import Settings
from cartback.testing import FrozenClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import PASSWORD, csrf_of, make_user

PER_ADDRESS = 3
PER_CLIENT = 6
WINDOW = 300


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def clients(db_url: str, clock: FrozenClock) -> Iterator[Callable[[], TestClient]]:
    """Clients of one app, each from a client address of its own."""
    app = create_app(
        Settings(
            database_url=db_url,
            secret_key="s" * 48,
            sign_in_failures_per_address=PER_ADDRESS,
            sign_in_failures_per_client=PER_CLIENT,
            sign_in_window_seconds=WINDOW,
        ),
        clock=clock,
        run_worker=False,
    )
    opened: list[TestClient] = []
    with TestClient(app) as first:
        opened.append(first)

        def make() -> TestClient:
            host = f"198.51.100.{secrets.randbelow(250)}-{secrets.token_hex(3)}"
            client = TestClient(app, client=(host, 50000), raise_server_exceptions=False)
            # Requests run on the entered client's event loop, where the app's database was started.
            client.portal = first.portal
            opened.append(client)
            return client

        yield make


def _attempt(client: TestClient, email: str, password: str):
    page = client.get("/app/login")
    return client.post(
        "/app/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


def test_sign_in_after_failures_for_an_address_is_429_even_with_the_right_password(
    clients, db, make_workspace, clock
):
    tenant = make_workspace()
    victim, bystander = make_user(db, tenant.name), make_user(db, tenant.name)
    attacker = clients()
    for _ in range(PER_ADDRESS):
        assert _attempt(attacker, victim.email, "wrong password").status_code == 401
    started = time.perf_counter()
    locked = _attempt(attacker, victim.email.upper(), PASSWORD)  # any spelling of the address
    assert locked.status_code == 429
    # Answered a second late (CARTBACK_REFUSAL_DELAY_SECONDS): a guessing loop is slowed down.
    assert time.perf_counter() - started >= 1
    assert 1 <= int(locked.headers["retry-after"]) <= WINDOW
    assert "Too many failed sign-ins for this address" in locked.text
    # The owner, from elsewhere, is refused too while the address is locked (a guesser learns nothing).
    owner = clients()
    assert _attempt(owner, victim.email, PASSWORD).status_code == 429
    # Another address, even from the attacker's client, is unaffected.
    assert _attempt(attacker, bystander.email, PASSWORD).status_code == 303
    # Once the window has passed, the right password works again.
    clock.advance(seconds=WINDOW)
    assert _attempt(owner, victim.email, PASSWORD).status_code == 303


def test_sign_in_after_failures_from_a_client_is_429_for_every_address(clients, db, make_workspace):
    tenant = make_workspace()
    user = make_user(db, tenant.name)
    sprayer = clients()
    for _ in range(PER_CLIENT):
        # A different made-up address each time: only the per-client count can stop this.
        assert _attempt(sprayer, f"x{secrets.token_hex(4)}@example.com", "guess guess").status_code == 401
    locked = _attempt(sprayer, user.email, PASSWORD)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert "Too many failed sign-ins for this network address" in locked.text
    # The same user from another client signs in.
    assert _attempt(clients(), user.email, PASSWORD).status_code == 303


def test_sign_in_successes_are_not_counted(clients, db, make_workspace):
    user = make_user(db, make_workspace().name)
    client = clients()
    for _ in range(PER_ADDRESS + 2):
        assert _attempt(client, user.email, PASSWORD).status_code == 303
