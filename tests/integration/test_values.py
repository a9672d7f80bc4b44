"""Values cartback cannot store or compute exactly (integers beyond 64 bits, NaN and Infinity, lone
surrogates, nesting past `values.MAX_DEPTH`, amounts whose conversion to cents overflows, times outside
2000 .. now + 1 year) are a 400 in the envelope of the surface they came through, naming the field, and
store nothing; a record stored before the rule (nested ~300 levels, dated year 1) still reads and
dispatches. Each case was a 500, or a permanent 500 on later reads, before."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cartback import values
from cartback.api.klaviyo import SDK_REVISION
from cartback.core import attribution
from cartback.store import events as event_store
from cartback.store import tables
from cartback.store.db import Database
from cartback.store.tables import metadata

BIG = 13138818544782589034496  # what schemathesis sent in customAttributes: 500 from orjson before


def nest(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_pointer(depth: int) -> str:
    return "/a" * depth


class Surfaces:
    """The three APIs of one workspace, each with the authentication its SDK sends."""

    def __init__(self, app_client: Any) -> None:
        self.http = app_client.http
        self.tenant = app_client.tenant
        key = app_client.tenant.key
        self.bearer = {"Authorization": f"Bearer {key}"}
        self.klaviyo_headers = {"Authorization": f"Klaviyo-API-Key {key}", "revision": SDK_REVISION}
        basic = base64.b64encode(f"{key}:".encode()).decode()
        self.basic = {"Authorization": f"Basic {basic}"}

    def sequenzy(self, path: str, body: Any, *, raw: bytes | None = None) -> Any:
        if raw is not None:
            headers = {**self.bearer, "Content-Type": "application/json"}
            return self.http.post("/api/v1" + path, content=raw, headers=headers)
        return self.http.post("/api/v1" + path, json=body, headers=self.bearer)

    def klaviyo(self, path: str, body: Any, *, raw: bytes | None = None) -> Any:
        headers = {**self.klaviyo_headers, "Content-Type": "application/vnd.api+json"}
        content = raw if raw is not None else json.dumps(body).encode()
        return self.http.post("/api" + path, content=content, headers=headers)

    def segment(self, path: str, body: Any, *, raw: bytes | None = None) -> Any:
        headers = {**self.basic, "Content-Type": "application/json"}
        content = raw if raw is not None else json.dumps(body).encode()
        return self.http.post("/v1" + path, content=content, headers=headers)

    def rows(self, db: Database) -> dict[str, int]:
        """Every workspace-owned table's row count for this workspace."""

        def read(tx: sa.Connection) -> dict[str, int]:
            return {
                t.name: tx.execute(
                    sa.select(sa.func.count()).select_from(t).where(t.c.workspace_id == self.tenant.id)
                ).scalar_one()
                for t in metadata.sorted_tables
                if "workspace_id" in t.c
            }

        return db.read_sync(read)


@pytest.fixture
def api(app_client: Any) -> Surfaces:
    return Surfaces(app_client)


def sequenzy_error(response: Any) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["code"], body
    return str(body["error"])


def klaviyo_pointer(response: Any) -> str:
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["status"] == 400 and error["code"] == "invalid" and error["detail"], error
    return str(error["source"]["pointer"])


def segment_error(response: Any) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["code"], body
    return str(body["message"])


def klaviyo_event(properties: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": properties,
                "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "k@example.com"}}},
                **attributes,
            },
        }
    }


# -- the three cases schemathesis found --------------------------------------------------------------


def test_values_integer_beyond_64_bits_in_custom_attributes_is_a_sequenzy_400(api, db):
    before = api.rows(db)
    raw = b'{"email": "a@example.com", "event": "viewed", "customAttributes": {"n": %d}}' % BIG
    message = sequenzy_error(api.sequenzy("/subscribers/events", None, raw=raw))
    assert "customAttributes.n" in message and "64-bit" in message
    assert api.rows(db) == before


def test_values_huge_klaviyo_value_is_a_400_pointing_at_it(api, db):
    before = api.rows(db)
    response = api.klaviyo("/events", klaviyo_event({"order_id": "o1"}, value=1e300))
    assert klaviyo_pointer(response) == "/data/attributes/value"
    assert "out of range" in response.json()["errors"][0]["detail"]
    assert api.rows(db) == before


@pytest.mark.parametrize("amount", [1e300, "1e999999999", -1e300])
def test_values_huge_segment_total_is_a_400_naming_it(api, db, amount):
    before = api.rows(db)
    body = {"userId": "u1", "event": "Order Completed", "properties": {"order_id": "o1", "total": amount}}
    assert "properties.total" in segment_error(api.segment("/track", body))
    assert api.rows(db) == before


# -- the rule on every surface -----------------------------------------------------------------------

# (raw JSON of one property value, what the message says)
UNSTORABLE = [
    pytest.param(b"%d" % BIG, "64-bit", id="integer-beyond-64-bits"),
    pytest.param(b"%d" % -(2**63 + 1), "64-bit", id="negative-integer-beyond-64-bits"),
    pytest.param(b"NaN", "finite", id="nan"),
    pytest.param(b"Infinity", "finite", id="infinity"),
    pytest.param(b"-Infinity", "finite", id="minus-infinity"),
    pytest.param(b"1e400", "finite", id="float-overflowing-to-infinity"),
    pytest.param(b'"\\ud800"', "surrogate", id="lone-surrogate"),
    pytest.param(b'"ok \\udfff"', "surrogate", id="lone-low-surrogate"),
    pytest.param(json.dumps(nest(values.MAX_DEPTH)).encode(), "nested", id="nested-too-deep"),
]


@pytest.mark.parametrize(("value", "says"), UNSTORABLE)
def test_values_unstorable_sequenzy_checkout_property_is_a_400_naming_it(api, db, value, says):
    before = api.rows(db)
    raw = b'{"checkoutId": "c1", "customer": {"email": "a@example.com"}, "properties": {"p": %s}}' % value
    message = sequenzy_error(api.sequenzy("/checkouts", None, raw=raw))
    assert "properties.p" in message and says in message
    assert api.rows(db) == before


@pytest.mark.parametrize(("value", "says"), UNSTORABLE)
def test_values_unstorable_klaviyo_profile_property_is_a_400_pointing_at_it(api, db, value, says):
    before = api.rows(db)
    raw = (
        b'{"data": {"type": "profile", "attributes": {"email": "k@example.com", "properties": {"p": %s}}}}'
        % value
    )
    response = api.klaviyo("/profiles", None, raw=raw)
    pointer = klaviyo_pointer(response)
    assert pointer.startswith("/data/attributes/properties/p"), pointer
    assert says in response.json()["errors"][0]["detail"]
    assert api.rows(db) == before


@pytest.mark.parametrize(("value", "says"), UNSTORABLE)
def test_values_unstorable_segment_identify_trait_is_a_400_naming_it(api, db, value, says):
    before = api.rows(db)
    raw = b'{"batch": [{"type": "identify", "userId": "u1", "traits": {"p": %s}}]}' % value
    message = segment_error(api.segment("/batch", None, raw=raw))
    assert "batch.0.traits.p" in message and says in message
    assert api.rows(db) == before


def test_values_nesting_at_the_limit_is_accepted_and_read_back(api):
    # The body is level 1, `properties` level 2: its value may nest MAX_DEPTH - 2 more levels.
    deepest = nest(values.MAX_DEPTH - 2)
    body = {"checkoutId": "c1", "customer": {"email": "a@example.com"}, "properties": deepest}
    assert api.sequenzy("/checkouts", body).status_code == 200
    body = {"email": "b@example.com", "customAttributes": nest(values.MAX_DEPTH - 2)}
    created = api.sequenzy("/subscribers", body)
    assert created.status_code == 200, created.text
    read = api.http.get("/api/v1/subscribers/b@example.com", headers=api.bearer)
    assert read.json()["subscriber"]["customAttributes"] == nest(values.MAX_DEPTH - 2)


def test_values_klaviyo_pointer_escapes_slash_and_tilde_in_keys(api):
    raw = b'{"data": {"type": "profile", "attributes": {"email": "k@x.com", "properties": {"a/b~c": NaN}}}}'
    assert klaviyo_pointer(api.klaviyo("/profiles", None, raw=raw)) == "/data/attributes/properties/a~1b~0c"


def test_values_surrogate_in_a_key_is_refused_with_a_printable_answer(api, db):
    before = api.rows(db)
    raw = b'{"email": "a@example.com", "customAttributes": {"\\ud800": 1}}'
    message = sequenzy_error(api.sequenzy("/subscribers", None, raw=raw))
    assert "\\ud800" in message and "surrogate" in message
    assert api.rows(db) == before


# -- times outside 2000 .. now + 1 year ------------------------------------------------------------

YEAR_ONE = "0001-01-01T00:00:00Z"


def test_values_sequenzy_order_dated_year_one_is_a_400(api, db):
    before = api.rows(db)
    body = {
        "orderId": "o1",
        "currency": "USD",
        "totalCents": 100,
        "customer": {"email": "a@example.com"},
        "orderedAt": YEAR_ONE,
    }
    assert "orderedAt" in sequenzy_error(api.sequenzy("/orders", body))
    assert api.rows(db) == before


@pytest.mark.parametrize(
    "when", ["1999-12-31T23:59:59Z", (datetime.now(UTC) + timedelta(days=400)).isoformat()]
)
def test_values_sequenzy_event_time_outside_the_window_is_a_400(api, db, when):
    before = api.rows(db)
    body = {"email": "a@example.com", "event": "viewed", "occurredAt": when}
    assert "occurredAt" in sequenzy_error(api.sequenzy("/subscribers/events", body))
    bulk = {"email": "a@example.com", "events": [{"name": "ok"}, {"name": "viewed", "occurredAt": when}]}
    assert "events.1.occurredAt" in sequenzy_error(api.sequenzy("/subscribers/events/bulk", bulk))
    created = {"email": "a@example.com", "createdAt": when}
    assert "createdAt" in sequenzy_error(api.sequenzy("/subscribers", created))
    assert api.rows(db) == before


def test_values_segment_timestamp_before_2000_is_a_400(api, db):
    before = api.rows(db)
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Order Completed", "timestamp": YEAR_ONE}]}
    assert "batch[0].timestamp" in segment_error(api.segment("/batch", body))
    assert api.rows(db) == before


def test_values_klaviyo_event_dated_year_one_is_a_400(api, db):
    before = api.rows(db)
    response = api.klaviyo("/events", klaviyo_event({"order_id": "o1"}, value=10, time=YEAR_ONE))
    assert klaviyo_pointer(response) == "/data/attributes/time"
    assert api.rows(db) == before


# Year 1 at a positive offset is before the first moment a datetime holds in UTC: converting it raised
# OverflowError, a 500 (found by the stateful fuzz run, seed 4: POST /v1/group with this sentAt).
BEFORE_UTC = "0001-01-01T00:00:00.0+01:01"


def test_values_segment_sent_at_before_the_first_utc_moment_is_a_400(api, db):
    before = api.rows(db)
    body = {"type": "group", "userId": "u1", "groupId": "g1", "sentAt": BEFORE_UTC}
    assert "sentAt" in segment_error(api.segment("/group", body))
    batch = {"batch": [{"type": "track", "userId": "u1", "event": "Viewed", "timestamp": BEFORE_UTC}]}
    assert "timestamp" in segment_error(api.segment("/batch", batch))
    assert api.rows(db) == before


def test_values_sequenzy_time_before_the_first_utc_moment_is_a_400(api, db):
    before = api.rows(db)
    body = {"email": "a@example.com", "event": "viewed", "occurredAt": BEFORE_UTC}
    assert "occurredAt" in sequenzy_error(api.sequenzy("/subscribers/events", body))
    assert api.rows(db) == before


def test_values_klaviyo_time_before_the_first_utc_moment_is_a_400(api, db):
    before = api.rows(db)
    response = api.klaviyo("/events", klaviyo_event({"order_id": "o1"}, value=10, time=BEFORE_UTC))
    assert klaviyo_pointer(response) == "/data/attributes/time"
    assert api.rows(db) == before


# -- records stored before the rule ------------------------------------------------------------------

OLD_DEPTH = 300  # deeper than orjson (255 levels) and pydantic serialise


def _store_raw_json(db: Database, table: str, column: str, row_id: str, document: Any) -> None:
    """Write a JSON document the way an older server (or an operator's SQL) left it, bypassing the
    encoder, which refuses such depth."""
    text = json.dumps(document)

    def write(tx: sa.Connection) -> None:
        cast = "CAST(:doc AS jsonb)" if tx.dialect.name == "postgresql" else ":doc"
        tx.execute(
            sa.text(f"UPDATE {table} SET {column} = {cast} WHERE id = :id"), {"doc": text, "id": row_id}
        )

    db.write_sync(write)


def test_values_reads_of_an_old_deeply_nested_record_do_not_fail(api, db):
    body = {"checkoutId": "c1", "customer": {"email": "deep@example.com"}, "properties": {"k": 1}}
    answer = api.sequenzy("/checkouts", body).json()
    _store_raw_json(db, "subscribers", "attributes", answer["subscriberId"], {"deep": nest(OLD_DEPTH)})
    _store_raw_json(db, "events", "properties", answer["eventId"], {"deep": nest(OLD_DEPTH)})

    subscriber = api.http.get("/api/v1/subscribers/deep@example.com", headers=api.bearer)
    assert subscriber.status_code == 200, subscriber.text
    attrs = subscriber.json()["subscriber"]["customAttributes"]
    # Read up to the store's bound (the stored document is level 1), the rest as null.
    assert attrs["deep"] == nest(values.READ_DEPTH - 1, None)

    for path in ("/api/events", "/api/profiles", f"/api/events/{answer['eventId']}"):
        response = api.http.get(path, headers=api.klaviyo_headers)
        assert response.status_code == 200, (path, response.text[:300])


def test_values_old_order_dated_year_one_is_dispatched_without_attribution(api, db):
    body = {"orderId": "o1", "currency": "USD", "totalCents": 100, "customer": {"email": "a@example.com"}}
    [event_id] = api.sequenzy("/orders", body).json()["eventIds"]

    def backdate(tx: sa.Connection) -> None:
        year_one = datetime(1, 1, 1, 12, tzinfo=UTC)
        tx.execute(tables.events.update().where(tables.events.c.id == event_id).values(occurred_at=year_one))

    db.write_sync(backdate)
    event = db.read_sync(lambda tx: event_store.find_by_id(tx, api.tenant.id, event_id))
    assert event is not None and event.occurred_at.year == 1
    assert db.write_sync(lambda tx: attribution.attribute(tx, event, datetime.now(UTC))) is None
