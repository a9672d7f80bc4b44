"""A dashboard user sees only their own workspace: figures, and (direct URLs) any object of another one."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cartback.app import create_app
from cartback.settings import Settings

sys.path.insert(0, str(Path(__file__).parent.parent))
from dashboard_client import make_user, sign_in

CHECKOUT = {
    "checkoutId": "co-iso-1",
    "totalCents": 4200,
    "currency": "EUR",
    "checkoutUrl": "https://shop.example/c/1",
    "customer": {"email": "buyer@example.com"},
    "items": [{"productId": "SKU-1", "title": "Mug", "quantity": 1, "priceCents": 4200}],
}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, secret_key="s" * 48), run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


def figure(html: str, name: str) -> str:
    marker = f'data-figure="{name}">'
    return html.split(marker, 1)[1].split("<", 1)[0]


def test_dashboard_overview_counts_only_the_viewers_workspace(client, db, make_workspace):
    a, b = make_workspace(), make_workspace()
    sent = client.post("/api/v1/checkouts", json=CHECKOUT, headers={"Authorization": f"Bearer {b.key}"})
    assert sent.status_code == 200, sent.text
    sign_in(client, make_user(db, a.name))
    assert figure(client.get("/app/").text, "checkouts_started") == "0"
    client.cookies.clear()
    sign_in(client, make_user(db, b.name))
    assert figure(client.get("/app/").text, "checkouts_started") == "1"
