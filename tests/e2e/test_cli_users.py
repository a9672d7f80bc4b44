"""`cartback user create`: a dashboard user who can sign in; only a hash of the password is stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import DashboardUser, sign_in


def cartback(db_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARTBACK_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "cartback", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_user_create_makes_a_user_who_signs_in(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    given = cartback(
        url,
        "user",
        "create",
        "--workspace",
        "shop",
        "--email",
        "Owner@Shop.example",
        "--password",
        "s3cret-enough",
    )
    assert given.returncode == 0, given.stderr
    assert given.stdout.strip().startswith("usr_")
    # Without --password it prompts (twice, to confirm).
    prompted = cartback(
        url,
        "user",
        "create",
        "--workspace",
        "shop",
        "--email",
        "clerk@shop.example",
        stdin="typed-password\ntyped-password\n",
    )
    assert prompted.returncode == 0, prompted.stderr

    assert b"s3cret-enough" not in (tmp_path / "users.db").read_bytes()
    assert b"typed-password" not in (tmp_path / "users.db").read_bytes()

    server = start_server(url)
    with httpx.Client(base_url=server.url) as client:
        sign_in(client, DashboardUser("owner@shop.example", "s3cret-enough", "shop"))
    with httpx.Client(base_url=server.url) as client:
        sign_in(client, DashboardUser("clerk@shop.example", "typed-password", "shop"))


def test_cli_user_create_refuses_bad_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    short = cartback(
        url, "user", "create", "--workspace", "shop", "--email", "a@shop.example", "--password", "short"
    )
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    unknown = cartback(
        url, "user", "create", "--workspace", "nope", "--email", "a@shop.example", "--password", "long-enough"
    )
    assert unknown.returncode == 1 and "no workspace named 'nope'" in unknown.stderr
    not_email = cartback(
        url, "user", "create", "--workspace", "shop", "--email", "not-an-address", "--password", "long-enough"
    )
    assert not_email.returncode == 1 and "not an email address" in not_email.stderr
    assert (
        cartback(
            url,
            "user",
            "create",
            "--workspace",
            "shop",
            "--email",
            "a@shop.example",
            "--password",
            "long-enough",
        ).returncode
        == 0
    )
    again = cartback(
        url, "user", "create", "--workspace", "shop", "--email", "A@shop.example", "--password", "long-enough"
    )
    assert again.returncode == 1 and "already exists" in again.stderr


def test_cli_user_set_password_replaces_the_password_and_ends_sessions(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'users.db'}"
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    args = (
        "user",
        "create",
        "--workspace",
        "shop",
        "--email",
        "owner@shop.example",
        "--password",
        "first-pass",
    )
    assert cartback(url, *args).returncode == 0
    server = start_server(url)
    with httpx.Client(base_url=server.url) as signed_in:
        sign_in(signed_in, DashboardUser("owner@shop.example", "first-pass", "shop"))
        changed = cartback(
            url, "user", "set-password", "--email", "owner@shop.example", stdin="second-pass\n" * 2
        )
        assert changed.returncode == 0, changed.stderr
        assert signed_in.get("/app/", follow_redirects=False).status_code == 303  # signed out
    with httpx.Client(base_url=server.url) as client:
        sign_in(client, DashboardUser("owner@shop.example", "second-pass", "shop"))
    unknown = cartback(
        url, "user", "set-password", "--email", "nobody@shop.example", "--password", "whatever1"
    )
    assert unknown.returncode != 0 and "nobody@shop.example" in unknown.stderr
