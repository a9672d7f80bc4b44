"""Dashboard sign-in, sessions and CSRF, against the app in-process on both databases."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.core import users
from cartback.dashboard import sessions
from cartback.settings import Settings
from cartback.store import workspaces

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import PASSWORD, DashboardUser, csrf_of, make_user, sign_in

SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, secret_key=SECRET), run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


def test_dashboard_sign_in_sets_a_signed_httponly_lax_session_cookie(client, db, make_workspace):
    tenant = make_workspace()
    user = make_user(db, tenant.name)
    page = client.get("/app/login")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    reply = client.post(
        "/app/login",
        data={"email": user.email.upper(), "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/app/"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(sessions.COOKIE + "=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/app" in cookie
    home = client.get("/app/")
    assert home.status_code == 200
    assert tenant.name in home.text and user.email in home.text


def test_dashboard_wrong_password_or_unknown_address_is_refused(client, db, make_workspace):
    user = make_user(db, make_workspace().name)
    for email, password in ((user.email, "wrong password"), ("nobody@example.com", PASSWORD)):
        page = client.get("/app/login")
        reply = client.post(
            "/app/login",
            data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert reply.status_code == 401
        assert "Wrong email address or password" in reply.text
        assert client.get("/app/", follow_redirects=False).status_code == 303


def test_dashboard_pages_send_a_visitor_without_session_to_sign_in(client):
    reply = client.get("/app/", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/app/login"
    assert client.get("/app", follow_redirects=True).url.path == "/app/login"


def test_dashboard_post_without_or_with_a_wrong_csrf_token_is_refused(client, db, make_workspace):
    user = make_user(db, make_workspace().name)
    client.get("/app/login")
    no_token = client.post("/app/login", data={"email": user.email, "password": PASSWORD})
    assert no_token.status_code == 403 and "security token" in no_token.text
    wrong = client.post(
        "/app/login", data={"email": user.email, "password": PASSWORD, "csrf_token": "x" * 43}
    )
    assert wrong.status_code == 403
    assert client.get("/app/", follow_redirects=False).status_code == 303

    token = sign_in(client, user)
    # Signed in, a post without the token (sign-out here) changes nothing; with it, it works.
    assert client.post("/app/logout", follow_redirects=False).status_code == 403
    assert client.get("/app/").status_code == 200
    assert client.post("/app/logout", headers={"X-CSRF-Token": "nope"}).status_code == 403
    out = client.post("/app/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/app/", follow_redirects=False).status_code == 303


def test_dashboard_session_token_changes_at_sign_in(client, db, make_workspace):
    user = make_user(db, make_workspace().name)
    before = csrf_of(client.get("/app/login").text)
    after = sign_in(client, user)
    assert before != after
    # The pre-sign-in token no longer authorises anything.
    assert client.post("/app/logout", data={"csrf_token": before}).status_code == 403


def test_dashboard_forged_or_foreign_cookie_is_a_visitor_without_session(client, db, make_workspace):
    user = make_user(db, make_workspace().name)
    sign_in(client, user)
    real = client.cookies.get(sessions.COOKIE)
    assert real
    client.cookies.clear()
    client.cookies.set(sessions.COOKIE, real[:-2] + ("AA" if not real.endswith("AA") else "BB"), path="/app")
    assert client.get("/app/", follow_redirects=False).status_code == 303
    # A cookie signed with another secret (another installation) is not accepted either.
    other = sessions.Codec("another-secret").dumps(sessions.Session("c" * 43, "usr_x"))
    client.cookies.clear()
    client.cookies.set(sessions.COOKIE, other, path="/app")
    assert client.get("/app/", follow_redirects=False).status_code == 303


def test_dashboard_sign_in_never_redirects_off_the_dashboard(client, db, make_workspace):
    user = make_user(db, make_workspace().name)
    for target, expected in (
        ("https://evil.example/", "/app/"),
        ("//evil.example/app/", "/app/"),
        ("/app/\\evil", "/app/"),
        ("/app/?range=7d", "/app/?range=7d"),
    ):
        page = client.get("/app/login")
        reply = client.post(
            "/app/login",
            data={
                "email": user.email,
                "password": PASSWORD,
                "csrf_token": csrf_of(page.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert reply.headers["location"] == expected
        client.cookies.clear()


def test_dashboard_unknown_page_is_an_html_404(client, db, make_workspace):
    sign_in(client, make_user(db, make_workspace().name))
    reply = client.get("/app/no-such-page")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("text/html")


def _copy_of_session(client: TestClient) -> TestClient:
    """A second client holding a copy of `client`'s session cookie (a stolen cookie, another tab)."""
    copy = TestClient(client.app, raise_server_exceptions=False)
    copy.portal = client.portal  # the app's database runs on the first client's event loop
    copy.cookies.set(sessions.COOKIE, client.cookies.get(sessions.COOKIE), path="/app")
    return copy


def _create_key(client: TestClient, token: str) -> int:
    return client.post(
        "/app/settings/keys", data={"csrf_token": token, "name": "copied"}, follow_redirects=False
    ).status_code


def test_dashboard_sign_out_ends_copies_of_the_session_cookie(client, db, make_workspace):
    tenant = make_workspace()
    user = make_user(db, tenant.name)
    token = sign_in(client, user)
    copy = _copy_of_session(client)
    assert copy.get("/app/people").status_code == 200  # the copy works while the session lasts
    assert client.post("/app/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    page = copy.get("/app/people", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/app/login"
    assert _create_key(copy, token) == 303  # sent to sign in
    keys = db.read_sync(lambda tx: workspaces.list_api_keys(tx, tenant.id))
    assert [k for k in keys if k.name == "copied"] == []
    # Signing in again works, and the new session is not ended by the old one's copies.
    token = sign_in(client, user)
    assert _create_key(client, token) == 200


def test_dashboard_password_change_ends_every_session(client, db, make_workspace):
    user = make_user(db, make_workspace().name)
    sign_in(client, user)
    db.write_sync(lambda tx: users.change_password(tx, user.email, "a brand new password"))
    assert client.get("/app/", follow_redirects=False).status_code == 303
    sign_in(client, DashboardUser(user.email, "a brand new password", user.workspace_name))
