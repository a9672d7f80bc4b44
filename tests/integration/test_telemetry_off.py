"""Requests do not pay for FastAPI's OpenTelemetry bridge, which cartback does not use."""

from __future__ import annotations

import pytest
from opentelemetry import trace


def test_a_request_does_not_ask_for_a_tracer_provider(app_client, monkeypatch: pytest.MonkeyPatch):
    asked: list[int] = []
    real = trace.get_tracer_provider

    def counting() -> trace.TracerProvider:
        asked.append(1)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", counting)
    body = {"checkoutId": "t1", "customer": {"email": "t1@x.io"}, "currency": "USD", "totalCents": 100}
    for _ in range(3):
        assert app_client.http.post("/api/v1/checkouts", json=body).status_code < 300
    assert asked == []
