"""Helpers for dashboard tests over HTTP: create users, sign in, read a page's CSRF token."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient

from cartback.core import users
from cartback.core.clock import Clock, system_clock
from cartback.store.db import Database

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class DashboardUser:
    email: str
    password: str
    workspace_name: str


def make_user(db: Database, workspace_name: str) -> DashboardUser:
    email = f"owner-{secrets.token_hex(4)}@example.com"
    db.write_sync(lambda tx: users.create_user(tx, workspace_name, email, PASSWORD, system_clock.now()))
    return DashboardUser(email, PASSWORD, workspace_name)


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def sign_in(client: httpx.Client, user: DashboardUser) -> str:
    """Sign `client` in as `user`; return the session's CSRF token."""
    page = client.get("/app/login")
    assert page.status_code == 200
    reply = client.post(
        "/app/login",
        data={"email": user.email, "password": user.password, "csrf_token": csrf_of(page.text), "next": ""},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    home = client.get("/app/")
    assert home.status_code == 200
    return csrf_of(home.text)


@contextlib.contextmanager
def open_app(db_url: str, clock: Clock = system_clock) -> Iterator[TestClient]:
    """The app in-process without its worker (tests drive the scheduler with run_until_idle)."""
    from cartback.app import create_app
    from cartback.settings import Settings

    app = create_app(Settings(database_url=db_url, secret_key="s" * 48), clock=clock, run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


ABANDONED = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "ecommerce.checkout_started",
    "enrollmentMode": "matching_field",
    "enrollmentFieldPath": "checkoutId",
    "stopCondition": {
        "type": "event_received",
        "value": "ecommerce.order_placed",
        "matchConfig": {
            "mode": "event_property",
            "rules": [{"entryFieldPath": "checkoutId", "eventFieldPath": "checkoutId"}],
        },
    },
    "steps": [
        {
            "type": "email",
            "delay": {"hours": 1},
            "subject": "You left {{ event.items[0].title }}",
            "html": "<p>Hi {{ subscriber.firstName | default: 'there' }}</p>"
            "<ul>{% for item in event.items %}<li>{{ item.title }}</li>{% endfor %}</ul>"
            "<a href='{{ event.checkoutUrl }}'>back</a>",
        },
        {"type": "email", "delay": {"days": 1}, "subject": "Still thinking?", "html": "<p>Come back</p>"},
    ],
}


def checkout_body(
    checkout_id: str, email: str = "jane@example.com", title: str = "Logo tee", first_name: str = "Jane"
) -> dict:
    return {
        "checkoutId": checkout_id,
        "totalCents": 6450,
        "currency": "USD",
        "checkoutUrl": f"https://shop.example.com/c/{checkout_id}",
        "customer": {"email": email, "firstName": first_name},
        "items": [{"productId": "SKU-1", "title": title, "quantity": 1, "priceCents": 6450}],
    }
