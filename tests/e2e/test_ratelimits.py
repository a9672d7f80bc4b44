"""Two `cartback serve` processes on one PostgreSQL database spend one key's budget together: a limiter
that counted per process would let each node grant the whole budget."""

from __future__ import annotations

import time

import httpx
import pytest

BODY = {"checkoutId": "chk-shared", "customer": {"email": "shared@example.com"}, "totalCents": 100}
STEADY = 10  # requests per minute per key: the binding limit here


def _wait_for_room_in_this_minute() -> None:
    """The burst below takes about a second; keep it inside one minute window."""
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.1)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_ratelimits_two_api_processes_on_postgresql_share_one_budget(start_server, db_url, make_workspace):
    # Refusals answered at once: twenty of them a second late each would carry the burst into the next
    # minute's window.
    env = {
        "CARTBACK_RATE_LIMIT_BURST": "1000",
        "CARTBACK_RATE_LIMIT_STEADY": str(STEADY),
        "CARTBACK_REFUSAL_DELAY_SECONDS": "0",
    }
    nodes = [start_server(db_url, env=env, args=["--no-worker"]) for _ in range(2)]
    tenant, other = make_workspace(), make_workspace()
    headers = {"Authorization": f"Bearer {tenant.key}"}
    _wait_for_room_in_this_minute()
    answers = [
        httpx.post(nodes[i % 2].api + "/checkouts", json=BODY, headers=headers, timeout=10) for i in range(30)
    ]
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {200, 429}
    assert statuses.count(200) == STEADY  # not 2 x STEADY
    by_node = [statuses[i::2].count(200) for i in range(2)]
    assert all(n > 0 for n in by_node), by_node  # both nodes granted part of the one budget
    for refused in (r for r in answers if r.status_code == 429):
        assert refused.headers["retry-after"].isdigit() and 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["ratelimit-limit"] == str(STEADY)
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["code"] == "rate_limited"
    # Another key has its own budget on both nodes.
    for node in nodes:
        res = httpx.post(node.api + "/checkouts", json=BODY, headers={"Authorization": f"Bearer {other.key}"})
        assert res.status_code == 200
