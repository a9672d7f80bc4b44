"""The dashboard in real headless Chromium against `cartback serve`: sign in, see the overview, sign out."""

from __future__ import annotations

import sys
from pathlib import Path

from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user


def test_browser_sign_in_overview_and_sign_out(tmp_path, start_server, chromium, screenshots):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    db = Database(url)
    db.migrate()
    db.write_sync(lambda tx: workspaces.create_workspace(tx, "shop", system_clock.now()))
    user = make_user(db, "shop")
    db.close()
    server = start_server(url)

    context = chromium.new_context()
    page = context.new_page()
    problems: list[str] = []
    # Anything the page logs as an error, except the 401 of the deliberately wrong password below.
    page.on(
        "console", lambda m: problems.append(m.text) if m.type == "error" and "401" not in m.text else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(server.url + "/app/")
    assert page.url.endswith("/app/login")
    screenshots(page, "sign-in")
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong email address or password."

    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(server.url + "/app/")
    assert page.get_by_role("heading", level=1).inner_text() == "Overview"
    assert page.locator("[data-figure=checkouts_started]").inner_text() == "0"
    screenshots(page, "overview")

    cookie = next(c for c in context.cookies() if c["name"] == "cartback_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""
    # htmx is served by cartback itself and loaded.
    assert page.evaluate("typeof htmx") == "object"

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(server.url + "/app/login")
    page.goto(server.url + "/app/")
    assert page.url.endswith("/app/login")
    assert problems == []
    context.close()
