"""Helpers for dashboard tests over HTTP: create users, sign in, read a page's CSRF token."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import httpx

from cartback.core import users
from cartback.core.clock import system_clock
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
