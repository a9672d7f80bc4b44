"""Malformed requests to /api/v1 are refused in the Sequenzy error envelope, never with a 500, and change
nothing: every table keeps its row count and the workspace's rows, a previously accepted checkout and
order included, stay byte for byte what they were.

The bad bodies are mutations of a *changed* version of the seeded checkout and order (same checkoutId and
orderId, different totals and cart), so a request that slipped through would visibly rewrite the seed
rather than merely add a row.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from cartback.store.db import Database
from cartback.store.tables import metadata

SEED_CHECKOUT = {
    "checkoutId": "chk-seed",
    "customer": {"email": "seed@example.com", "firstName": "Seed"},
    "totalCents": 8850,
    "currency": "USD",
    "checkoutUrl": "https://shop.example.com/checkout/seed",
    "items": [{"productId": "SKU-1", "title": "Protein Powder", "quantity": 1, "priceCents": 8850}],
}
SEED_ORDER = {
    "orderId": "ord-seed",
    "currency": "USD",
    "totalCents": 6450,
    "customer": {"email": "seed@example.com"},
    "items": [{"productId": "SKU-2", "title": "Shaker", "quantity": 2, "priceCents": 3225}],
}

# What a client would send to change the seeds; every bad case below is one of these, broken one way.
CHECKOUT = {
    **SEED_CHECKOUT,
    "customer": {"email": "seed@example.com", "firstName": "Changed", "attributes": {"vip": True}},
    "totalCents": 1,
    "items": [{"productId": "SKU-9", "title": "Other", "quantity": 3, "priceCents": 1}],
    "properties": {"campaign": "changed"},
}
ORDER = {
    **SEED_ORDER,
    "totalCents": 2,
    "status": "fulfilled",
    "customer": {"email": "seed@example.com", "lastName": "Changed"},
    "properties": {"checkoutId": "chk-seed"},
}

_MISSING = object()


def mutate(body: dict[str, Any], path: str, value: object = _MISSING) -> dict[str, Any]:
    """A deep copy of `body` with the dotted `path` (list indexes allowed) set to `value`, or removed."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _MISSING:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def raw(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def chunks(data: bytes, size: int = 64 * 1024) -> Callable[[], Iterator[bytes]]:
    """A body sent with Transfer-Encoding: chunked (no Content-Length)."""

    def stream() -> Iterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return stream


OVER_1_MIB = json.dumps({**CHECKOUT, "properties": {"blob": "x" * (1024 * 1024 + 10)}}).encode()
DEEP_JSON = (
    b'{"checkoutId": "chk-seed", "customer": {"email": "seed@example.com"}, "properties": {"a": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}"
)


@dataclass(frozen=True)
class Case:
    says: str  # a fragment the error message must contain: what is wrong, or where
    status: int = 400
    path: str = "/checkouts"
    method: str = "POST"
    json: object = _MISSING
    content: bytes | Callable[[], Iterator[bytes]] | None = None
    # None removes the header.
    headers: dict[str, str | None] = field(default_factory=dict)


JSON_TYPE = {"Content-Type": "application/json"}


def bad(case_id: str, says: str, status: int = 400, marks: Any = (), **fields: Any) -> Any:
    return pytest.param(Case(says, status, **fields), id=case_id, marks=marks)


def bad_checkout(case_id: str, where: str, value: object = _MISSING, marks: Any = ()) -> Any:
    """CHECKOUT with the field at `where` set to `value` (removed when no value); the error must name it."""
    return bad(case_id, where, json=mutate(CHECKOUT, where, value), marks=marks)


def bad_order(case_id: str, where: str, value: object = _MISSING, marks: Any = ()) -> Any:
    return bad(case_id, where, path="/orders", json=mutate(ORDER, where, value), marks=marks)


def auth(case_id: str, header: str | None, path: str = "/checkouts") -> Any:
    body = ORDER if path == "/orders" else CHECKOUT
    return bad(case_id, "API key", 401, path=path, json=body, headers={"Authorization": header})


def media(case_id: str, content_type: str | None, content: Any = None, path: str = "/checkouts") -> Any:
    body = json.dumps(ORDER if path == "/orders" else CHECKOUT).encode()
    headers = {"Content-Type": content_type}
    return bad(case_id, "Content-Type", 415, path=path, content=content or body, headers=headers)


NAN_TOTAL = json.dumps(CHECKOUT).replace('"totalCents": 1', '"totalCents": NaN').encode()
FORM = b"checkoutId=chk-seed&customer.email=seed%40example.com"

CASES = [
    # The body is not a JSON object.
    bad("malformed-json", "malformed JSON", content=b'{"checkoutId": "chk-seed", ', headers=JSON_TYPE),
    bad(
        "malformed-json-line-column",
        "Expecting ',' delimiter at line 2, column 19",
        content=b'{"checkoutId": "chk-seed",\n  "totalCents": 5 "x"}',
        headers=JSON_TYPE,
    ),
    bad("single-quoted-json", "malformed JSON", content=b"{'checkoutId': 'chk-seed'}", headers=JSON_TYPE),
    bad("invalid-utf8", "UTF-8", content=b'{"checkoutId": "\xff\xfe"}', headers=JSON_TYPE),
    bad("json-nested-100k-deep", "nested too deeply", content=DEEP_JSON, headers=JSON_TYPE),
    bad("json-array", "body", json=[CHECKOUT]),
    bad("json-string", "body", json="chk-seed"),
    bad("json-number", "body", json=42),
    bad("json-null", "body", content=b"null", headers=JSON_TYPE),
    bad("empty-body", "body", content=b"", headers=JSON_TYPE),
    # POST /checkouts: required fields.
    bad_checkout("checkout-missing-checkoutId", "checkoutId"),
    bad_checkout("checkout-empty-checkoutId", "checkoutId", ""),
    bad_checkout("checkout-null-checkoutId", "checkoutId", None),
    bad_checkout("checkout-checkoutId-too-long", "checkoutId", "c" * 256),
    bad_checkout("checkout-checkoutId-number", "checkoutId", 123),
    bad_checkout("checkout-missing-customer", "customer"),
    bad_checkout("checkout-customer-string", "customer", "seed@example.com"),
    bad_checkout("checkout-missing-email", "customer.email"),
    bad_checkout("checkout-null-email", "customer.email", None),
    bad_checkout("checkout-email-no-at", "customer.email", "not-an-email"),
    bad_checkout("checkout-email-space", "customer.email", "a b@example.com"),
    bad_checkout("checkout-email-no-dot", "customer.email", "seed@localhost"),
    # POST /checkouts: wrong types and out-of-range values.
    bad_checkout("checkout-totalCents-decimal-string", "totalCents", "88.50"),
    bad_checkout("checkout-totalCents-word", "totalCents", "lots"),
    bad_checkout("checkout-totalCents-float", "totalCents", 88.5),
    bad_checkout("checkout-totalCents-negative", "totalCents", -1),
    bad_checkout("checkout-totalCents-too-large", "totalCents", 10**16),
    bad("checkout-totalCents-nan", "totalCents", content=NAN_TOTAL, headers=JSON_TYPE),
    # pydantic's lax mode turns these into integers; the wire contract says integer (reported, not fixed).
    bad_checkout("checkout-totalCents-numeric-string", "totalCents", "8850"),
    bad_checkout("checkout-totalCents-bool", "totalCents", True),
    bad_checkout("checkout-currency-two-letters", "currency", "US"),
    bad_checkout("checkout-currency-symbol", "currency", "U$D"),
    bad_checkout("checkout-items-string", "items", "SKU-9"),
    bad_checkout("checkout-items-object", "items", {"productId": "SKU-9"}),
    bad_checkout("checkout-item-not-object", "items.0", "SKU-9"),
    bad_checkout("checkout-item-missing-productId", "items.0.productId"),
    bad_checkout("checkout-item-missing-title", "items.0.title"),
    bad_checkout("checkout-item-missing-quantity", "items.0.quantity"),
    bad_checkout("checkout-item-negative-quantity", "items.0.quantity", -1),
    bad_checkout("checkout-item-fractional-quantity", "items.0.quantity", 1.5),
    bad_checkout("checkout-item-negative-priceCents", "items.0.priceCents", -100),
    bad_checkout("checkout-item-float-priceCents", "items.0.priceCents", 9.99),
    bad_checkout("checkout-properties-list", "properties", ["a", "b"]),
    # PostgreSQL text cannot hold NUL: refused at the edge, not a 5xx from the store.
    bad("checkout-nul-in-checkoutId", "NUL", json=mutate(CHECKOUT, "checkoutId", "chk-seed\u0000")),
    bad("checkout-nul-in-property", "NUL", json=mutate(CHECKOUT, "properties", {"note": "a\u0000b"})),
    bad("checkout-nul-in-query", "NUL", path="/checkouts?ref=%00", json=CHECKOUT),
    # POST /orders.
    bad_order("order-missing-orderId", "orderId"),
    bad_order("order-missing-currency", "currency"),
    bad_order("order-currency-word", "currency", "dollars"),
    bad_order("order-missing-totalCents", "totalCents"),
    bad_order("order-totalCents-word", "totalCents", "two"),
    bad_order("order-totalCents-numeric-string", "totalCents", "2.00"),
    bad_order("order-missing-customer", "customer"),
    bad_order("order-invalid-email", "customer.email", "@"),
    bad_order("order-status-unknown", "status", "shipped"),
    bad_order("order-status-wrong-case", "status", "PLACED"),
    bad_order("order-orderedAt-word", "orderedAt", "yesterday"),
    bad_order("order-orderedAt-impossible-date", "orderedAt", "2024-13-45T25:00:00Z"),
    bad_order("order-negative-refund", "refundAmountCents", -5),
    bad_order("order-customerTotals-not-object", "customerTotals", 3),
    bad(
        "order-negative-ordersCount",
        "customerTotals.ordersCount",
        path="/orders",
        json=mutate(ORDER, "customerTotals", {"ordersCount": -1}),
    ),
    bad_order("order-item-quantity-word", "items.0.quantity", "two"),
    # Paging: a row offset beyond 64 bits was a 500 from the store (GET /subscribers?page=2**63-1).
    bad("subscribers-page-beyond-64-bit-offset", "page", method="GET", path=f"/subscribers?page={2**63 - 1}"),
    bad("subscribers-page-over-maximum", "page", method="GET", path="/subscribers?page=1000001"),
    # Size limits (CARTBACK_MAX_BODY_BYTES, 1 MiB by default).
    bad("oversized-body", "limit", 413, content=OVER_1_MIB, headers=JSON_TYPE),
    bad("oversized-chunked-body", "limit", 413, content=chunks(OVER_1_MIB), headers=JSON_TYPE),
    # Content type.
    media("content-type-text-plain", "text/plain"),
    media("content-type-form", "application/x-www-form-urlencoded", FORM),
    media("content-type-missing", None),
    media("content-type-text-plain-chunked", "text/plain", chunks(json.dumps(CHECKOUT).encode(), 50)),
    media("order-content-type-multipart", "multipart/form-data; boundary=x", path="/orders"),
    # Authentication.
    auth("auth-no-header", None),
    auth("auth-basic", "Basic eDp4"),
    auth("auth-bearer-no-token", "Bearer"),
    auth("auth-bearer-blank-token", "Bearer    "),
    auth("auth-bearer-wrong", "Bearer wrong"),
    auth("auth-unknown-scheme", "Token sk_x"),
    auth("order-auth-bearer-wrong", "Bearer wrong", "/orders"),
    # Routing.
    bad("unknown-route", "/api/v1/checkout", 404, path="/checkout", json=CHECKOUT),
    bad("unknown-subpath", "/api/v1/checkouts/chk-seed", 404, path="/checkouts/chk-seed", json=CHECKOUT),
    bad("wrong-method-get", "method not allowed", 405, method="GET"),
    bad("wrong-method-put", "method not allowed", 405, method="PUT", path="/orders", json=ORDER),
]


def snapshot(db: Database, workspace_id: str) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Every table's row count, and every row the workspace owns (all columns)."""

    def read(tx: sa.Connection) -> tuple[dict[str, int], dict[str, list[str]]]:
        counts = {
            t.name: tx.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }
        rows = {
            t.name: sorted(
                repr(tuple(r)) for r in tx.execute(sa.select(t).where(t.c.workspace_id == workspace_id))
            )
            for t in metadata.sorted_tables
            if "workspace_id" in t.c
        }
        return counts, rows

    return db.read_sync(read)


def send(http: Any, case: Case) -> httpx.Response:
    kwargs: dict[str, Any] = {}
    if case.json is not _MISSING:
        kwargs["json"] = case.json
    if case.content is not None:
        kwargs["content"] = case.content() if callable(case.content) else case.content
    request = http.build_request(case.method, "/api/v1" + case.path, **kwargs)
    for name, value in case.headers.items():
        if value is None:
            request.headers.pop(name, None)
        else:
            request.headers[name] = value
    return http.send(request)


@dataclass
class Target:
    """One app on one database for the whole module: the cases change nothing, so they can share it."""

    http: Any
    db: Database
    workspace_id: str
    seeds: dict[str, Any]

    def post(self, path: str, body: object) -> httpx.Response:
        return self.http.post("/api/v1" + path, json=body)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    from fastapi.testclient import TestClient

    from cartback.app import create_app
    from cartback.core.clock import system_clock
    from cartback.settings import Settings
    from cartback.store import workspaces

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('bad_input') / 'cartback.db'}"
    else:
        url = str(request.getfixturevalue("pg_module_database"))
    db = Database(url)
    db.migrate()

    def create(tx: sa.Connection) -> tuple[str, str]:
        ws = workspaces.create_workspace(tx, f"bad-input-{secrets.token_hex(4)}", system_clock.now())
        _, secret = workspaces.create_api_key(tx, ws.id, system_clock.now())
        return ws.id, secret

    workspace_id, key = db.write_sync(create)
    # No worker: the engine's own bookkeeping (dispatching events, due steps of other tests' workspaces on
    # the shared PostgreSQL) would move the counts this test holds still.
    app = create_app(Settings(database_url=url), run_worker=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        http.headers["Authorization"] = f"Bearer {key}"
        target = Target(http, db, workspace_id, {})
        checkout = target.post("/checkouts", SEED_CHECKOUT)
        order = target.post("/orders", SEED_ORDER)
        assert checkout.status_code == order.status_code == 200, (checkout.text, order.text)
        target.seeds.update(checkout=checkout.json(), order=order.json())
        yield target
    db.close()


def test_bad_input_cases_are_many_and_distinct() -> None:
    ids = [p.id for p in CASES]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_in_envelope_and_changes_nothing(target: Target, case: Case) -> None:
    before = snapshot(target.db, target.workspace_id)
    assert before[1]["checkouts"] and before[1]["orders"]

    res = send(target.http, case)

    assert res.status_code < 500, res.text
    assert res.status_code == case.status, res.text
    assert res.headers["content-type"].startswith("application/json")
    body = res.json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"].strip()
    assert case.says.lower() in body["error"].lower(), body["error"]
    assert isinstance(body.get("code"), str) and body["code"]
    assert snapshot(target.db, target.workspace_id) == before

    # The server is still healthy and the seeds still answer with their original ids.
    assert target.post("/checkouts", SEED_CHECKOUT).json() == target.seeds["checkout"]
    replay = target.post("/orders", SEED_ORDER).json()
    assert replay["eventIds"] == target.seeds["order"]["eventIds"]
    assert replay["duplicate"] is True
