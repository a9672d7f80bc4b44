"""One meaning of "sent": every surface that shows how many emails a step sent reads the same read model
(core/analytics), and counts the emails handed to the transport (statuses.HANDED), not those still queued.
The Sequenzy API (sequence stats, both fields; sequence metrics; the recovery report) and the dashboard
(overview, sequence list, sequence page), before and after the sender ran."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cartback.core import sequences
from cartback.testing import FrozenClock, run_until_idle

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import ABANDONED, checkout_body, make_user, open_app, sign_in
from delivering import Refusing, deliver

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def dashboard_list_sent(page: str, sequence_id: str) -> list[int]:
    row = page.split(f'data-sequence="{sequence_id}"', 1)[1].split("</tr>", 1)[0]
    return [int(n) for n in re.findall(r"<li [^>]*>\d+\. (\d+) / \d+ / \d+</li>", row)]


def dashboard_page_sent(page: str) -> list[int]:
    figures = page.split('id="figures-h"', 1)[1].split("</table>", 1)[0]
    return [
        int(n) for n in re.findall(r'</td>\s*<td class="num">(\d+)</td><td class="num">\d+</td>', figures)
    ]


@pytest.fixture
def shop(db, db_url, make_workspace):
    clock = FrozenClock(T0)
    tenant = make_workspace()
    with open_app(db_url, clock) as client:
        sign_in(client, make_user(db, tenant.name))
        yield client, tenant, clock


def sent_everywhere(client, tenant, seq_id: str) -> dict[str, list[int]]:
    """Sent per email step, as each surface shows it."""
    auth = {"Authorization": f"Bearer {tenant.key}"}
    stats = client.get(f"/api/v1/sequences/{seq_id}/stats", headers=auth).json()
    email_steps = [s for s in stats["steps"] if s["type"] == "email"]
    metrics_reply = client.get(f"/api/v1/metrics/sequences/{seq_id}", headers=auth).json()
    recovery = client.get("/api/v1/analytics/recovery", headers=auth).json()
    [listed] = [s for s in recovery["sequences"] if s["sequenceId"] == seq_id] or [{"steps": []}]
    overview = client.get("/app/").text
    return {
        "stats steps[].sent": [s["sent"] for s in email_steps],
        "stats steps[].stats.sent": [s["stats"]["sent"] for s in email_steps],
        "metrics steps[].stats.sent": [s["stats"]["sent"] for s in metrics_reply["steps"]],
        "recovery steps[].sent": [s["sent"] for s in listed["steps"]] or [0, 0],
        "dashboard list": dashboard_list_sent(client.get("/app/sequences").text, seq_id),
        "dashboard page": dashboard_page_sent(client.get(f"/app/sequences/{seq_id}").text),
        "overview total": [int(overview.split('data-figure="emails_sent">', 1)[1].split("<", 1)[0])],
    }


def test_sent_per_step_is_the_same_figure_on_every_surface(shop, db):
    client, tenant, clock = shop
    seq = db.write_sync(lambda tx: sequences.create(tx, tenant.id, ABANDONED, clock.now(), status="active"))
    auth = {"Authorization": f"Bearer {tenant.key}"}
    for i, email in enumerate(("ann@example.com", "bob@example.com")):
        reply = client.post("/api/v1/checkouts", json=checkout_body(f"c{i}", email), headers=auth)
        assert reply.status_code == 200, reply.text
    run_until_idle(db, clock)
    clock.advance(hours=1, seconds=1)
    run_until_idle(db, clock)
    clock.advance(seconds=1)  # the overview's range ends at now, exclusive

    # Two first-step emails queued, none handed to the transport yet: "sent" is 0 everywhere.
    queued = sent_everywhere(client, tenant, seq.id)
    assert queued == {
        "stats steps[].sent": [0, 0],
        "stats steps[].stats.sent": [0, 0],
        "metrics steps[].stats.sent": [0, 0],
        "recovery steps[].sent": [0, 0],
        "dashboard list": [0, 0],
        "dashboard page": [0, 0],
        "overview total": [0],
    }

    # The transport accepts one and refuses the other for good: both were sent (handed over), one delivered.
    assert deliver(db.url, clock, Refusing({"bob@example.com"})) >= 2
    handed = sent_everywhere(client, tenant, seq.id)
    assert handed == {
        "stats steps[].sent": [2, 0],
        "stats steps[].stats.sent": [2, 0],
        "metrics steps[].stats.sent": [2, 0],
        "recovery steps[].sent": [2, 0],
        "dashboard list": [2, 0],
        "dashboard page": [2, 0],
        "overview total": [2],
    }
    stats = client.get(f"/api/v1/sequences/{seq.id}/stats", headers=auth).json()
    first = next(s for s in stats["steps"] if s["type"] == "email")
    assert first["stats"]["delivered"] == 1 and stats["stats"]["sent"] == 2
