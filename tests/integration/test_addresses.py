"""Email addresses are parsed as one mailbox on every surface, in-process on real SQLite and PostgreSQL.

A string that is not exactly one address (`a@x.example;b@y.example` and kin, which an SMTP library would
cut down to its first address) is a 400 naming the field in the surface's envelope, and nothing is stored.
An address is kept in one normal form (domain lowercased, in its ASCII form) and suppressions are keyed by
it, so no other spelling of a suppressed address gets mail.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
import sqlalchemy as sa

from cartback.store.tables import checkouts, events, messages, subscribers, suppressions

VICTIM = "unsubbed@victim.example"
HOSTILE = [f"{VICTIM};x@shop.example", f"{VICTIM},x@shop.example", f"{VICTIM}<x@shop.example>"]
# RFC 5321 allows 64 octets before the "@"; the whole address (80 characters) is short enough.
LONG_LOCAL_PART = "a" * 65 + "@shop.example"
KLAVIYO = {"revision": "2026-10-15"}


def _stored(app_client: Any) -> dict[str, int]:
    ws = app_client.tenant.id

    def count(tx: Any) -> dict[str, int]:
        return {
            t.name: tx.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.workspace_id == ws)
            ).scalar()
            for t in (subscribers, events, checkouts, messages, suppressions)
        }

    return app_client.http.app.state.services.db.read_sync(count)


def _checkout(email: str, url: str = "https://shop.example.com/c/1") -> dict[str, Any]:
    return {
        "checkoutId": "chk-1",
        "customer": {"email": email},
        "currency": "USD",
        "totalCents": 100,
        "checkoutUrl": url,
        "items": [{"productId": "p1", "title": "Thing", "quantity": 1, "priceCents": 100}],
    }


def _klaviyo_event(email: str) -> dict[str, Any]:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"checkout_url": "https://shop.example.com/c/1"},
                "metric": {"data": {"type": "metric", "attributes": {"name": "Started Checkout"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
            },
        }
    }


def _klaviyo_profile(email: str) -> dict[str, Any]:
    return {"data": {"type": "profile", "attributes": {"email": email}}}


def _sequenzy(app_client: Any, path: str, body: dict[str, Any]) -> tuple[int, str]:
    res = app_client.post(path, body)
    if res.status_code == 400:
        assert res.json()["success"] is False
        return 400, res.json()["error"]
    return res.status_code, res.text


def _klaviyo(app_client: Any, path: str, body: dict[str, Any]) -> tuple[int, str]:
    res = app_client.http.post(
        path, json=body, headers={"Authorization": f"Klaviyo-API-Key {app_client.tenant.key}", **KLAVIYO}
    )
    if res.status_code == 400:
        (error,) = res.json()["errors"]
        return 400, error["source"]["pointer"]
    return res.status_code, res.text


def _segment(app_client: Any, path: str, body: dict[str, Any]) -> tuple[int, str]:
    auth = "Basic " + base64.b64encode(f"{app_client.tenant.key}:".encode()).decode()
    res = app_client.http.post(path, json=body, headers={"Authorization": auth})
    return res.status_code, res.text


# (surface call, path, body for an address, what the 400 must name)
CASES = {
    "sequenzy-checkout": (_sequenzy, "/checkouts", _checkout, "customer.email"),
    "sequenzy-order": (
        _sequenzy,
        "/orders",
        lambda e: {"orderId": "o1", "currency": "USD", "totalCents": 100, "customer": {"email": e}},
        "customer.email",
    ),
    "sequenzy-subscriber": (_sequenzy, "/subscribers", lambda e: {"email": e}, "email"),
    "sequenzy-event": (_sequenzy, "/subscribers/events", lambda e: {"email": e, "event": "x"}, "email"),
    "sequenzy-transactional": (
        _sequenzy,
        "/transactional/send",
        lambda e: {"to": e, "subject": "Hi", "body": "<p>Hi</p>"},
        "to",
    ),
    "sequenzy-suppression": (
        _sequenzy,
        "/suppressions",
        lambda e: {"email": e, "reason": "unsubscribed"},
        "email",
    ),
    "klaviyo-event": (
        _klaviyo,
        "/api/events",
        _klaviyo_event,
        "/data/attributes/profile/data/attributes/email",
    ),
    "klaviyo-profile": (_klaviyo, "/api/profiles", _klaviyo_profile, "/data/attributes/email"),
    "klaviyo-profile-import": (_klaviyo, "/api/profile-import", _klaviyo_profile, "/data/attributes/email"),
    "segment-identify": (
        _segment,
        "/v1/identify",
        lambda e: {"userId": "u1", "traits": {"email": e}},
        "traits.email",
    ),
    "segment-track": (
        _segment,
        "/v1/track",
        lambda e: {
            "userId": "u1",
            "event": "Checkout Started",
            "properties": {"checkout_id": "c1", "checkout_url": "https://shop.example.com/c/1"},
            "context": {"traits": {"email": e}},
        },
        "traits.email",
    ),
}


@pytest.mark.parametrize(
    "spelling", [*HOSTILE, LONG_LOCAL_PART], ids=["semicolon", "comma", "angle", "local-part-65"]
)
@pytest.mark.parametrize("case", list(CASES))
def test_addresses_not_one_mailbox_is_400_naming_the_field_and_stores_nothing(
    app_client: Any, case: str, spelling: str
) -> None:
    call, path, body, field = CASES[case]
    status, said = call(app_client, path, body(spelling))
    assert status == 400, said
    assert field in said
    assert set(_stored(app_client).values()) == {0}


@pytest.mark.parametrize("case", list(CASES))
def test_addresses_a_plain_address_is_accepted_in_its_normal_form(app_client: Any, case: str) -> None:
    call, path, body, _ = CASES[case]
    status, said = call(app_client, path, body("Jane.Doe@Shop.EXAMPLE"))
    assert status < 300, said
    stored = app_client.http.app.state.services.db.read_sync(
        lambda tx: (
            tx.execute(
                sa.select(subscribers.c.email).where(subscribers.c.workspace_id == app_client.tenant.id)
            )
            .scalars()
            .all()
            + tx.execute(
                sa.select(suppressions.c.email).where(suppressions.c.workspace_id == app_client.tenant.id)
            )
            .scalars()
            .all()
            + tx.execute(
                sa.select(messages.c.to_email).where(messages.c.workspace_id == app_client.tenant.id)
            )
            .scalars()
            .all()
        )
    )
    assert stored and set(stored) == {"Jane.Doe@shop.example"}


@pytest.mark.parametrize("case", list(CASES))
def test_addresses_a_local_part_of_64_octets_is_accepted(app_client: Any, case: str) -> None:
    call, path, body, _ = CASES[case]
    status, said = call(app_client, path, body("a" * 64 + "@shop.example"))
    assert status < 300, said
    assert sum(_stored(app_client).values()) > 0


@pytest.mark.parametrize(
    "spelling", ["Unsubbed@VICTIM.Example", " unsubbed@victim.EXAMPLE ", "UNSUBBED@victim.example"]
)
def test_addresses_another_spelling_of_a_suppressed_address_is_suppressed(
    app_client: Any, spelling: str
) -> None:
    assert app_client.post("/suppressions", {"email": VICTIM, "reason": "unsubscribed"}).status_code == 200
    res = app_client.post(
        "/transactional/send",
        {"to": spelling, "subject": "Hi", "body": "<p>Hi</p>", "emailType": "marketing"},
    )
    assert res.status_code == 200, res.text
    (recipient,) = res.json()["recipients"]
    assert recipient["status"] == "suppressed"
    assert res.json()["suppressed"][0]["reason"].startswith("address unsubscribed")


def test_addresses_an_internationalised_domain_is_one_address_in_either_form(app_client: Any) -> None:
    res = app_client.post("/suppressions", {"email": "jane@Bücher.example", "reason": "bounced"})
    assert res.status_code == 200, res.text
    res = app_client.post(
        "/transactional/send", {"to": "jane@xn--bcher-kva.example", "subject": "Hi", "body": "<p>Hi</p>"}
    )
    assert res.json()["recipients"][0]["status"] == "suppressed", res.text
    assert app_client.get("/suppressions/jane@bücher.example").status_code == 200


@pytest.mark.parametrize(
    "spelling",
    [
        "jürgen@shop.example",
        "jane@localhost",
        "jane@shop.local",
        '"jane doe"@shop.example',
        "Jane <j@x.example>",
    ],
)
def test_addresses_non_ascii_local_parts_and_other_non_mailboxes_are_refused(
    app_client: Any, spelling: str
) -> None:
    status, said = _sequenzy(app_client, "/checkouts", _checkout(spelling))
    assert status == 400 and "customer.email" in said
    assert set(_stored(app_client).values()) == {0}


def _migration_0019() -> Any:
    import importlib.util
    from pathlib import Path

    import cartback.store

    path = next(Path(cartback.store.__file__).parent.glob("migrations/versions/0019_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0019", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_addresses_migration_rekeys_rows_stored_with_an_internationalised_domain(
    db: Any, make_workspace: Any
) -> None:
    """A subscriber and a suppression stored before the normal form (keyed `jane@bücher.example`) are
    found by either spelling after the migration; a row whose new key is taken keeps its own."""
    from datetime import UTC, datetime

    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    from cartback.core import suppressions as core_suppressions
    from cartback.store import subscribers as subscriber_store

    ws = make_workspace().id
    now = datetime.now(UTC)
    legacy = "Jane@Bücher.example"

    def store_legacy(tx: Any) -> None:
        for id_, email in (("sub_legacy1", legacy), ("sub_legacy2", "ann@bücher.example")):
            tx.execute(
                subscribers.insert().values(
                    id=f"{id_}_{ws[-6:]}", workspace_id=ws, email=email, email_key=email.lower(),
                    status="active", attributes={}, sms_consent=False, created_at=now, updated_at=now,
                )
            )  # fmt: skip
        tx.execute(
            subscribers.insert().values(
                id=f"sub_taken_{ws[-6:]}", workspace_id=ws, email="ann@xn--bcher-kva.example",
                email_key="ann@xn--bcher-kva.example", status="active", attributes={}, sms_consent=False,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
        tx.execute(
            suppressions.insert().values(
                id=f"sup_legacy_{ws[-6:]}", workspace_id=ws, email=legacy, email_key=legacy.lower(),
                reason="unsubscribed", source="api", created_at=now,
            )
        )  # fmt: skip

    db.write_sync(store_legacy)
    # Before the migration the new key misses the legacy rows.
    assert (
        db.read_sync(lambda tx: subscriber_store.find_by_email(tx, ws, "jane@xn--bcher-kva.example")) is None
    )
    migration = _migration_0019()
    with db.write_engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        migration.upgrade()
    for spelling in ("jane@bücher.example", "JANE@xn--bcher-kva.example"):
        found = db.read_sync(lambda tx, s=spelling: subscriber_store.find_by_email(tx, ws, s))
        assert found is not None and found.id.startswith("sub_legacy1")
        assert (
            db.read_sync(lambda tx, s=spelling: core_suppressions.blocking_reason(tx, ws, s, "marketing"))
            == "address unsubscribed (api)"
        )
    keys = db.read_sync(
        lambda tx: dict(
            tx.execute(
                sa.select(subscribers.c.id, subscribers.c.email_key).where(subscribers.c.workspace_id == ws)
            ).all()
        )
    )
    assert keys[f"sub_legacy2_{ws[-6:]}"] == "ann@bücher.example"
