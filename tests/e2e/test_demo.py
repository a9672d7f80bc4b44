"""`cartback demo` on a fresh database, then `cartback serve`: the printed credentials sign in, the
overview shows recovered revenue and a sequence with sent emails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import DashboardUser, sign_in


def cartback(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARTBACK_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "cartback", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_demo_seeds_a_workspace_whose_overview_shows_recovered_revenue(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    seeded = cartback(url, "demo", "--checkouts", "80", "--seed", "7")
    assert seeded.returncode == 0, seeded.stderr
    assert "Replaying a week of shop traffic" in seeded.stderr
    out = seeded.stdout
    assert "80 checkouts" in out
    email = re.search(r"Email:\s+(\S+)", out).group(1)
    password = re.search(r"Password:\s+(\S+)", out).group(1)
    api_key = re.search(r"API key:\s+(cb_\S+)", out).group(1)
    assert "URL:      http://127.0.0.1:8000/app/" in out
    assert "with `--port P`, use port P in the URL below" in out

    server = start_server(url)
    with httpx.Client(base_url=server.url) as client:
        sign_in(client, DashboardUser(email, password, "demo"))
        page = client.get("/app/").text
        revenue = re.findall(r'data-revenue="([A-Z]{3})">([^<]+)<', page)
        assert revenue, "no recovered revenue on the overview"
        assert all(amount not in ("$0.00", "€0.00") for _, amount in revenue)
        assert int(re.search(r'data-figure="emails_sent">([\d,]+)<', page).group(1).replace(",", "")) > 0
        assert int(re.search(r'data-figure="checkouts_started">([\d,]+)<', page).group(1)) == 80
        listing = client.get("/app/sequences").text
        assert "Abandoned checkout" in listing and ">live<" in listing
        sent = re.search(r'<li title="Email: [^"]*">1\. ([\d,]+) /', listing)
        assert sent and int(sent.group(1).replace(",", "")) > 0
    # The printed key works against the API.
    reply = httpx.get(server.api + "/sequences", headers={"Authorization": f"Bearer {api_key}"})
    assert reply.status_code == 200 and reply.json()["sequences"][0]["name"] == "Abandoned checkout"


def test_demo_refuses_to_run_twice_on_one_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    assert cartback(url, "demo", "--checkouts", "10", "--seed", "1").returncode == 0
    again = cartback(url, "demo", "--checkouts", "10")
    assert again.returncode == 1
    assert "already holds data (workspace 'demo')" in again.stderr.replace("\n", "")


def test_demo_refuses_a_database_that_holds_data_naming_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    # A first start's untouched `default` workspace (and its key) is no data: the demo runs beside it.
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert cartback(fresh, "workspace", "create", "default").returncode == 0
    assert cartback(fresh, "apikey", "create", "--workspace", "default").returncode == 0
    assert cartback(fresh, "demo", "--checkouts", "10", "--seed", "1").returncode == 0
    # Any other workspace, or a default one with a user, is a live shop's database.
    assert cartback(url, "workspace", "create", "shop").returncode == 0
    refused = cartback(url, "demo", "--checkouts", "10")
    assert refused.returncode == 1
    said = refused.stderr.replace("\n", "")
    assert str(tmp_path / "shop.db") in said and "already holds data (workspace 'shop')" in said
    used = f"sqlite:///{tmp_path / 'used.db'}"
    assert cartback(used, "workspace", "create", "default").returncode == 0
    made = cartback(
        used,
        "user",
        "create",
        "--workspace",
        "default",
        "--email",
        "o@example.com",
        "--password",
        "pw-12345678",
    )
    assert made.returncode == 0, made.stderr
    assert cartback(used, "demo", "--checkouts", "10").returncode == 1
    # Nothing was written into the refused databases.
    listed = cartback(url, "apikey", "list", "--workspace", "demo")
    assert listed.returncode == 1 and "no workspace named 'demo'" in listed.stderr


def test_demo_data_has_engagement_on_every_step_and_a_key_made_today(tmp_path, start_server):
    url = f"sqlite:///{tmp_path / 'engaged.db'}"
    seeded = cartback(url, "demo", "--checkouts", "300", "--seed", "3")
    assert seeded.returncode == 0, seeded.stderr
    api_key = re.search(r"API key:\s+(cb_\S+)", seeded.stdout).group(1)
    # The key and the user are made when the command runs, not when the replayed week starts.
    (key_row,) = cartback(url, "apikey", "list", "--workspace", "demo").stdout.strip().splitlines()
    created = datetime.strptime(key_row.split("\t")[4], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=15)

    server = start_server(url)
    start = (datetime.now(UTC) - timedelta(days=9)).isoformat()
    reply = httpx.get(
        server.api + "/analytics/recovery",
        params={"start": start},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert reply.status_code == 200, reply.text
    (sequence,) = reply.json()["sequences"]
    steps = sequence["steps"]
    assert [s["step"] for s in steps] == [1, 2]
    for step in steps:
        figures = {k: step[k] for k in ("sent", "opened", "clicked", "unsubscribed", "bounced")}
        assert all(n > 0 for n in figures.values()), (step["step"], figures)
        assert step["opened"] < step["sent"] and step["clicked"] <= step["opened"]
