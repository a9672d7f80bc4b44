"""The Klaviyo surface on both databases: event filters and pages, profile filters, the order metrics'
mapping, and workspace isolation of profiles, events and metrics."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cartback.store.tables import events as events_table
from cartback.store.tables import orders as orders_table

REVISION = "2026-10-15"


def event(metric: str, email: str, properties: dict | None = None, **attributes) -> dict:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": properties or {},
                "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
                **attributes,
            },
        }
    }


@pytest.fixture
def kl(app_client):
    def call(method, path, *, key=None, headers=None, **kwargs):
        sent = {"Authorization": f"Klaviyo-API-Key {key or app_client.tenant.key}", "revision": REVISION}
        return app_client.http.request(method, path, headers={**sent, **(headers or {})}, **kwargs)

    return call


def post(kl, body, **kwargs):
    response = kl("POST", "/api/events", json=body, **kwargs)
    assert response.status_code == 202, response.text
    return response


def metric_id(kl, name, **kwargs):
    listed = kl("GET", "/api/metrics", **kwargs).json()["data"]
    return next(m["id"] for m in listed if m["attributes"]["name"] == name)


def test_klaviyo_events_filter_by_metric_and_datetime_bounds(kl):
    for day in (1, 2, 3, 4):
        post(kl, event("Viewed Product", "a@example.com", {"d": day}, time=f"2026-01-0{day}T12:00:00Z"))
    post(kl, event("Other", "a@example.com", time="2026-01-02T12:00:00Z"))
    mid = metric_id(kl, "Viewed Product")

    def days(expr, **params):
        response = kl("GET", "/api/events", params={"filter": expr, **params})
        assert response.status_code == 200, response.text
        return [e["attributes"]["event_properties"]["d"] for e in response.json()["data"]]

    assert days(f'equals(metric_id,"{mid}")') == [1, 2, 3, 4]
    assert days(f'equals(metric_id,"{mid}")', sort="-datetime") == [4, 3, 2, 1]
    window = (
        f'and(equals(metric_id,"{mid}"),'
        "greater-or-equal(datetime,2026-01-02T12:00:00Z),less-than(datetime,2026-01-04))"
    )
    assert days(window) == [2, 3]
    assert days(f'equals(metric_id,"{mid}"),greater-than(datetime,2026-01-02T12:00:00Z)') == [3, 4]
    assert days(f'equals(metric_id,"{mid}"),less-or-equal(timestamp,1767268800)') == [1]
    assert days('equals(metric_id,"000000")') == []


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "equals(metric_id"},
        {"filter": 'equals(email,"x@example.com")'},
        {"filter": 'or(equals(metric_id,"a"),equals(metric_id,"b"))'},
        {"sort": "name"},
        {"include": "campaigns"},
        {"page[size]": "0"},
        {"page[size]": "1001"},
        {"page[cursor]": "garbage"},
        {"page[cursor]": "https://[::1/api/events?page[cursor]=x"},  # a link urlsplit cannot read
    ],
)
def test_klaviyo_events_bad_parameters_are_400_naming_them(kl, params):
    response = kl("GET", "/api/events", params=params)
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["source"]["parameter"] == next(iter(params))


def test_klaviyo_events_cursor_forms_all_continue_the_same_page(kl):
    for i in range(3):
        post(kl, event("Paged", "p@example.com", {"i": i}, unique_id=f"p{i}"))
    first = kl("GET", "/api/events", params={"page[size]": "2", "sort": "datetime"}).json()
    nxt = first["links"]["next"]
    assert nxt.startswith("http://testserver/api/events?")
    token = nxt.split("page%5Bcursor%5D=")[1]
    pages = [
        kl("GET", "/api/events", params={"page[size]": "2", "page[cursor]": form}).json()
        for form in (token, "=" + token, nxt)
    ]
    assert len({tuple(e["id"] for e in p["data"]) for p in pages}) == 1
    seen = [e["id"] for e in first["data"]] + [e["id"] for e in pages[0]["data"]]
    assert len(set(seen)) == len(seen)


def test_klaviyo_profiles_filters_any_and_time_bounds(kl):
    for name in ("a", "b", "c"):
        body = {"data": {"type": "profile", "attributes": {"email": f"{name}@example.com"}}}
        assert kl("POST", "/api/profiles", json=body).status_code == 201
    response = kl("GET", "/api/profiles", params={"filter": 'any(email,["A@example.com","c@example.com"])'})
    assert sorted(p["attributes"]["email"] for p in response.json()["data"]) == [
        "a@example.com",
        "c@example.com",
    ]
    later = kl("GET", "/api/profiles", params={"filter": "greater-than(created,2100-01-01T00:00:00Z)"})
    assert later.json()["data"] == []
    paged = kl("GET", "/api/profiles", params={"page[size]": "2", "sort": "-email"}).json()
    assert [p["attributes"]["email"] for p in paged["data"]] == ["c@example.com", "b@example.com"]
    rest = kl(
        "GET",
        "/api/profiles",
        params={"page[size]": "2", "sort": "-email", "page[cursor]": paged["links"]["next"]},
    )
    assert [p["attributes"]["email"] for p in rest.json()["data"]] == ["a@example.com"]
    assert "next" not in rest.json()["links"]
    bad = kl("GET", "/api/profiles", params={"filter": 'contains(email,"a")'})
    assert bad.status_code == 400 and bad.json()["errors"][0]["source"] == {"parameter": "filter"}


def test_klaviyo_profile_import_conflicting_identifiers_is_409(kl):
    for email, ext in (("one@example.com", "ext-1"), ("two@example.com", "ext-2")):
        body = {"data": {"type": "profile", "attributes": {"email": email, "external_id": ext}}}
        assert kl("POST", "/api/profile-import", json=body).status_code == 201
    clash = {"data": {"type": "profile", "attributes": {"email": "one@example.com", "external_id": "ext-2"}}}
    response = kl("POST", "/api/profile-import", json=clash)
    assert response.status_code == 409, response.text
    assert response.json()["errors"][0]["code"] == "duplicate_profile"


def test_klaviyo_order_metrics_map_to_order_statuses(kl, app_client, db):
    props = {
        "order_id": "ord-9",
        "checkout_id": "chk-9",
        "items": [{"ProductName": "Mug", "Quantity": 2, "ItemPrice": 7.25}],
    }
    post(
        kl,
        event(
            "Placed Order", "buyer@example.com", props, value=14.5, value_currency="EUR", unique_id="ord-9"
        ),
    )
    post(
        kl,
        event(
            "Placed Order", "buyer@example.com", props, value=14.5, value_currency="EUR", unique_id="ord-9"
        ),
    )
    post(kl, event("Refunded Order", "buyer@example.com", {"order_id": "ord-9"}, value=7.25, unique_id="r-9"))
    ws = app_client.tenant.id
    (order,) = db.read_sync(
        lambda tx: tx.execute(sa.select(orders_table).where(orders_table.c.workspace_id == ws)).all()
    )
    assert (order.status, order.total_cents, order.refund_amount_cents, order.currency) == (
        "refunded",
        1450,
        725,
        "EUR",
    )
    assert order.checkout_id == "chk-9"
    names = db.read_sync(
        lambda tx: tx.execute(
            sa.select(events_table.c.name, events_table.c.properties).where(
                events_table.c.workspace_id == ws, events_table.c.name.like("ecommerce.%")
            )
        ).all()
    )
    assert sorted(n for n, _ in names) == ["ecommerce.order_placed", "ecommerce.order_refunded"]
    placed = next(p for n, p in names if n == "ecommerce.order_placed")
    assert placed["items"][0]["title"] == "Mug" and placed["items"][0]["priceCents"] == 725
    assert placed["checkoutId"] == "chk-9"


def test_klaviyo_workspaces_see_only_their_own_profiles_events_and_metrics(kl, app_client):
    other = app_client.make_workspace()
    post(kl, event("Secret Metric", "mine@example.com", {"s": 1}))
    mine_metric = metric_id(kl, "Secret Metric")
    (profile,) = kl("GET", "/api/profiles").json()["data"]
    mine = kl("GET", "/api/events", params={"filter": f'equals(metric_id,"{mine_metric}")'}).json()["data"]
    (event_row,) = mine

    as_other = {"key": other.key}
    assert kl("GET", "/api/profiles", **as_other).json()["data"] == []
    assert kl("GET", "/api/events", **as_other).json()["data"] == []
    assert kl("GET", "/api/metrics", **as_other).json()["data"] == []
    assert kl("GET", f"/api/metrics/{mine_metric}", **as_other).status_code == 404
    assert kl("GET", f"/api/profiles/{profile['id']}", **as_other).status_code == 404
    assert kl("GET", f"/api/events/{event_row['id']}", **as_other).status_code == 404
    by_email = kl("GET", "/api/profiles", params={"filter": 'equals(email,"mine@example.com")'}, **as_other)
    assert by_email.json()["data"] == []
    # The same metric name in the other workspace is another metric, with another id.
    post(kl, event("Secret Metric", "theirs@example.com"), **as_other)
    assert metric_id(kl, "Secret Metric", **as_other) != mine_metric
    importing = {"data": {"type": "profile", "id": profile["id"], "attributes": {"first_name": "X"}}}
    assert kl("POST", "/api/profile-import", json=importing, **as_other).status_code == 404
    assert kl("GET", f"/api/profiles/{profile['id']}").json()["data"]["attributes"]["first_name"] is None


def test_klaviyo_seed_curl_payload_in_its_flat_form_is_accepted(kl, app_client, db):
    # The seed guide's cURL body: `profile` and `metric` without the JSON:API `data` wrapper.
    body = {
        "data": {
            "type": "event",
            "attributes": {
                "profile": {"email": "customer@example.com"},
                "metric": {"name": "Started Checkout"},
                "properties": {
                    "value": 129.98,
                    "currency": "USD",
                    "checkout_url": "https://store.example.com/checkout?cart=abcd1234",
                    "item_names": ["Blue Tee - M", "White Jeans - 32"],
                },
                "time": "2026-05-31T12:00:00Z",
                "unique_id": "cart-abcd1234",
            },
        }
    }
    post(kl, body, headers={"Content-Type": "application/json"})
    ws = app_client.tenant.id
    (props,) = db.read_sync(
        lambda tx: (
            tx.execute(
                sa.select(events_table.c.properties).where(
                    events_table.c.workspace_id == ws, events_table.c.name == "ecommerce.checkout_started"
                )
            )
            .scalars()
            .all()
        )
    )
    assert props["checkoutId"] == "cart-abcd1234" and props["totalCents"] == 12998
    assert [i["title"] for i in props["items"]] == ["Blue Tee - M", "White Jeans - 32"]


@pytest.mark.parametrize(
    "identifier",
    [{"phone_number": "+1 (500) 555-0006"}, {"external_id": "cust-77"}, {"anonymous_id": "device-abc"}],
)
def test_klaviyo_event_profile_by_other_identifiers_creates_then_finds_one_profile(kl, identifier):
    for uid in ("a", "b"):
        body = event("Viewed Product", "unused@example.com", {"u": uid}, unique_id=uid)
        body["data"]["attributes"]["profile"]["data"]["attributes"] = identifier
        post(kl, body)
    (profile,) = kl("GET", "/api/profiles").json()["data"]
    (name, value), *_ = identifier.items()
    expected = "+15005550006" if name == "phone_number" else value
    assert profile["attributes"][name] == expected
    assert profile["attributes"]["email"] is None
    pid = profile["id"]
    by_id = event("Viewed Product", "unused@example.com", {"u": "c"}, unique_id="c")
    by_id["data"]["attributes"]["profile"]["data"] = {"type": "profile", "id": pid, "attributes": {}}
    post(kl, by_id)
    listed = kl("GET", "/api/events", params={"filter": f'equals(profile_id,"{pid}")'}).json()["data"]
    assert sorted(
        e["attributes"]["event_properties"]["u"] for e in listed if "u" in e["attributes"]["event_properties"]
    ) == ["a", "b", "c"]
    unknown = event("Viewed Product", "x@example.com")
    unknown["data"]["attributes"]["profile"]["data"] = {"type": "profile", "id": "sub_nope", "attributes": {}}
    assert kl("POST", "/api/events", json=unknown).status_code == 400


def test_klaviyo_negative_values_are_fine_for_custom_events_not_for_checkouts(kl):
    post(
        kl,
        event("Credit Issued", "n@example.com", {"items": [{"ProductName": "X", "ItemPrice": -3}]}, value=-5),
    )
    refused = kl("POST", "/api/events", json=event("Started Checkout", "n@example.com", value=-5))
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["source"] == {"pointer": "/data/attributes/value"}


def test_klaviyo_currency_must_be_an_iso_4217_code(kl):
    """Whether it comes as value_currency or as a property, a code that is no currency is a 400 pointing
    at it; nothing is stored."""
    as_attribute = kl(
        "POST", "/api/events", json=event("Placed Order", "c@example.com", value=5, value_currency="XYZ")
    )
    assert as_attribute.status_code == 400, as_attribute.text
    assert as_attribute.json()["errors"][0]["source"] == {"pointer": "/data/attributes/value_currency"}
    as_property = kl(
        "POST", "/api/events", json=event("Started Checkout", "c@example.com", {"currency": "XYZ"})
    )
    assert as_property.status_code == 400, as_property.text
    assert as_property.json()["errors"][0]["source"] == {"pointer": "/data/attributes/properties/currency"}
    assert kl("GET", "/api/profiles").json()["data"] == []
    post(kl, event("Placed Order", "c@example.com", value=5, value_currency="chf"))


def test_klaviyo_anonymous_profile_becomes_the_person_who_identifies(kl):
    anon = event("Viewed Product", "unused@example.com", {"step": 1}, unique_id="s1")
    anon["data"]["attributes"]["profile"]["data"]["attributes"] = {"anonymous_id": "dev-9"}
    post(kl, anon)
    known = event("Viewed Product", "known@example.com", {"step": 2}, unique_id="s2")
    post(kl, known)
    both = event("Viewed Product", "known@example.com", {"step": 3}, unique_id="s3")
    both["data"]["attributes"]["profile"]["data"]["attributes"]["anonymous_id"] = "dev-9"
    post(kl, both)
    (profile,) = kl("GET", "/api/profiles").json()["data"]
    assert profile["attributes"]["email"] == "known@example.com"
    assert profile["attributes"]["anonymous_id"] == "dev-9"
    listed = kl("GET", "/api/events", params={"filter": f'equals(profile_id,"{profile["id"]}")'}).json()[
        "data"
    ]
    steps = sorted(e["attributes"]["event_properties"].get("step", 0) for e in listed)
    assert [s for s in steps if s] == [1, 2, 3]


def test_klaviyo_reads_see_events_from_other_surfaces_under_klaviyo_names(kl, app_client):
    checkout = {
        "checkoutId": "chk-s",
        "customer": {"email": "seq@example.com"},
        "totalCents": 5400,
        "currency": "USD",
        "checkoutUrl": "https://shop.example.com/c/chk-s",
        "items": [{"productId": "p1", "title": "Slim Jeans", "quantity": 1, "priceCents": 5400}],
    }
    assert app_client.post("/checkouts", checkout).status_code == 200
    mid = metric_id(kl, "Started Checkout")
    (item,) = kl("GET", "/api/events", params={"filter": f'equals(metric_id,"{mid}")'}).json()["data"]
    props = item["attributes"]["event_properties"]
    assert props["checkoutId"] == "chk-s" and props["items"][0]["title"] == "Slim Jeans"
    (profile,) = kl("GET", "/api/profiles", params={"filter": 'equals(email,"seq@example.com")'}).json()[
        "data"
    ]
    assert item["relationships"]["profile"]["data"]["id"] == profile["id"]
