"""A workspace that keeps the render processes busy with previews is refused (429 with Retry-After, in
the Sequenzy envelope) once its render budget is spent, while another workspace renders as before."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.delivery import render_budget
from cartback.settings import Settings

HEAVY = "{% for i in (1..99) %}{% for j in (1..99) %}x{% endfor %}{% endfor %}"


@contextlib.contextmanager
def _app(db_url: str, seconds_per_minute: float) -> Iterator[TestClient]:
    settings = Settings(
        database_url=db_url,
        rate_limit_burst=0,
        rate_limit_steady=0,
        render_seconds_per_minute=seconds_per_minute,
    )
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as http:
            yield http
    finally:
        render_budget.BUDGET.configure(0)


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    # 3 s of render CPU a minute per workspace, 0.5 s held: a few dozen renders of the template above
    # (10-25 ms each on the machines the suite runs on) at most.
    with _app(db_url, 3) as http:
        yield http


def _preview(http: TestClient, key: str, body: str) -> object:
    return http.post(
        "/api/v1/transactional/send",
        json={"to": "me@example.com", "subject": "t", "body": body, "preview": True},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_render_budget_refuses_the_workspace_that_spent_it_and_no_other(
    client: TestClient, make_workspace: Callable
) -> None:
    heavy, other = make_workspace(), make_workspace()
    answers = []
    for _ in range(400):
        answers.append(_preview(client, heavy.key, HEAVY))
        if answers[-1].status_code != 200:
            break
    refused = answers[-1]
    assert refused.status_code == 429, [a.status_code for a in answers]
    assert len(answers) > 2  # the budget let it render before it ran out
    assert refused.json()["success"] is False and refused.json()["code"] == "rate_limited"
    assert "CARTBACK_RENDER_SECONDS_PER_MINUTE" in refused.json()["error"]
    assert int(refused.headers["Retry-After"]) >= 1
    # Another workspace's preview renders; the spent one still ingests, it only may not render.
    assert _preview(client, other.key, "Hi {{ 1 | plus: 1 }}").status_code == 200
    checkout = client.post(
        "/api/v1/checkouts",
        json={"customer": {"email": "shopper@example.com"}, "checkoutId": "c-1"},
        headers={"Authorization": f"Bearer {heavy.key}"},
    )
    assert checkout.status_code < 300, checkout.text


def test_a_send_that_spends_the_budget_is_refused_not_rendered_in_the_write(
    db_url: str, make_workspace: Callable
) -> None:
    """A send's emails are composed before its write, charged to the workspace. When the budget runs out
    partway, the send is refused (429) and stores nothing: the emails not yet composed are not rendered
    in the write instead, uncharged, holding the writer every workspace's commits wait for."""
    ws = make_workspace()
    # 0.1 s of render CPU held: 40 renders of the template above are four to ten times that. At 0.5 s
    # held, a machine rendering it in 12 ms composed the whole send within the budget.
    with _app(db_url, 0.6) as client:
        send = client.post(
            "/api/v1/transactional/send",
            json={"to": [f"x{i}@example.com" for i in range(40)], "subject": "t", "body": HEAVY},
            headers={"Authorization": f"Bearer {ws.key}"},
        )
        assert send.status_code == 429, send.text
        assert send.json()["code"] == "rate_limited"
        assert int(send.headers["Retry-After"]) >= 1
        assert render_budget.BUDGET.refused >= 1
