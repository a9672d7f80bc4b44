"""The Klaviyo surface's answers checked against Klaviyo's published OpenAPI spec (revision 2026-07-15,
tests/klaviyo_spec.py) on both databases: every read with every include the spec lists, the paging links
both ways, a profile without a location; includes the spec does not list are refused alike everywhere."""

from __future__ import annotations

import pytest
from tests import klaviyo_spec

REVISION = "2026-07-15"


@pytest.fixture
def kl(app_client):
    def call(method, path, **kwargs):
        headers = {"Authorization": f"Klaviyo-API-Key {app_client.tenant.key}", "revision": REVISION}
        return app_client.http.request(method, path, headers=headers, **kwargs)

    return call


def answer(kl, operation: str, path: str, **kwargs):
    """The answer of `operation` (named as in the spec) at `path`, once checked against the spec."""
    method = operation.split()[0]
    response = kl(method, path, **kwargs)
    assert response.status_code == klaviyo_spec.status(operation), response.text
    body = response.json()
    assert klaviyo_spec.problems(operation, body) == [], body
    return body


def event(metric: str, email: str, **attributes) -> dict:
    return {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"n": 1},
                "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": email}}},
                **attributes,
            },
        }
    }


def test_klaviyo_reads_follow_the_published_spec_with_every_listed_include(kl, app_client):
    created = answer(
        kl,
        "POST /api/profiles",
        "/api/profiles",
        json={"data": {"type": "profile", "attributes": {"email": "nowhere@example.com"}}},
    )
    # No location given: still an object (the spec's ProfileLocation), every key null.
    assert set(created["data"]["attributes"]["location"].values()) == {None}
    located = {"email": "somewhere@example.com", "location": {"city": "Lyon", "latitude": 45.76}}
    answer(
        kl, "POST /api/profiles", "/api/profiles", json={"data": {"type": "profile", "attributes": located}}
    )
    made = app_client.post("/lists", {"name": "VIP"})
    assert made.status_code == 200, made.text
    list_id = made.json()["list"]["id"]
    joined = app_client.post(f"/lists/{list_id}/subscribers", {"emails": ["nowhere@example.com"]})
    assert joined.status_code == 200, joined.text
    for i in range(3):
        assert (
            kl("POST", "/api/events", json=event("Placed Order", "nowhere@example.com", value=i)).status_code
            == 202
        )

    events = answer(kl, "GET /api/events", "/api/events", params={"include": "attributions,metric,profile"})
    assert {i["type"] for i in events["included"]} == {"metric", "profile"}
    assert all(e["relationships"]["attributions"] == {"data": []} for e in events["data"])
    one = events["data"][0]["id"]
    single = answer(kl, "GET /api/events/{id}", f"/api/events/{one}", params={"include": "attributions"})
    assert single["included"] == [] and single["data"]["relationships"]["attributions"] == {"data": []}

    profiles = answer(
        kl, "GET /api/profiles", "/api/profiles", params={"include": "conversations,push-tokens"}
    )
    assert profiles["included"] == []
    assert {p["attributes"]["location"]["city"] for p in profiles["data"]} == {None, "Lyon"}
    assert all(
        p["relationships"] == {"conversations": {"data": []}, "push-tokens": {"data": []}}
        for p in profiles["data"]
    )
    pid = created["data"]["id"]
    profile = answer(
        kl,
        "GET /api/profiles/{id}",
        f"/api/profiles/{pid}",
        params={"include": "conversations,lists,push-tokens,segments"},
    )
    [vip] = profile["included"]
    assert (vip["type"], vip["attributes"]["name"]) == ("list", "VIP")
    assert profile["data"]["relationships"]["lists"] == {"data": [{"type": "list", "id": vip["id"]}]}
    assert profile["data"]["relationships"]["segments"] == {"data": []}

    # A live sequence triggered by an event is a flow its metric triggers.
    thanks = {
        "name": "Thank you",
        "trigger": "event_received",
        "eventName": "ecommerce.order_placed",
        "steps": [{"type": "email", "subject": "Thanks", "html": "<p>Thanks</p>"}],
    }
    seq = app_client.post("/sequences", thanks).json()["sequence"]
    assert app_client.post(f"/sequences/{seq['id']}/enable", {}).status_code == 200
    metrics = answer(kl, "GET /api/metrics", "/api/metrics", params={"include": "flow-triggers"})
    [flow] = metrics["included"]
    assert (flow["type"], flow["id"], flow["attributes"]["name"]) == ("flow", seq["id"], "Thank you")
    triggers = {m["attributes"]["name"]: m["relationships"]["flow-triggers"]["data"] for m in metrics["data"]}
    assert triggers.pop("Placed Order") == [{"type": "flow", "id": seq["id"]}]
    assert set(map(len, triggers.values())) == {0}
    mid = next(m["id"] for m in metrics["data"] if m["attributes"]["name"] == "Placed Order")
    metric = answer(kl, "GET /api/metrics/{id}", f"/api/metrics/{mid}", params={"include": "flow-triggers"})
    assert metric["included"] == [flow]

    # Paging links are left out where there is no page, never null; both directions follow the spec.
    first = answer(kl, "GET /api/events", "/api/events", params={"page[size]": "2"})
    assert "next" in first["links"] and "prev" not in first["links"]
    second = answer(kl, "GET /api/events", first["links"]["next"])
    back = answer(kl, "GET /api/events", second["links"]["prev"])
    assert [e["id"] for e in back["data"]] == [e["id"] for e in first["data"]]


@pytest.mark.parametrize(
    ("path", "include"),
    [
        ("/api/events", "lists"),
        ("/api/events", "metric,nope"),
        ("/api/profiles", "lists"),  # listed for one profile, not for the list
        ("/api/profiles", "metric"),
        ("/api/metrics", "profile"),
    ],
)
def test_klaviyo_includes_the_spec_does_not_list_are_refused_alike(kl, path, include):
    response = kl("GET", path, params={"include": include})
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert (error["status"], error["code"], error["source"]) == (400, "invalid", {"parameter": "include"})
    assert include.split(",")[-1] in error["detail"]


def test_klaviyo_links_prev_pages_back_in_either_order(kl):
    for i in range(5):
        body = event("Paged", "p@example.com", unique_id=f"p{i}", time=f"2026-01-0{i + 1}T00:00:00Z")
        assert kl("POST", "/api/events", json=body).status_code == 202
    metric = next(m for m in kl("GET", "/api/metrics").json()["data"] if m["attributes"]["name"] == "Paged")
    paged = f'equals(metric_id,"{metric["id"]}")'
    for sort, days in (("datetime", [1, 2, 3, 4, 5]), ("-datetime", [5, 4, 3, 2, 1])):
        pages = [kl("GET", "/api/events", params={"page[size]": "2", "sort": sort, "filter": paged}).json()]
        while "next" in pages[-1]["links"]:
            pages.append(kl("GET", pages[-1]["links"]["next"]).json())
        day = [[int(e["attributes"]["datetime"][8:10]) for e in p["data"]] for p in pages]
        assert day == [days[0:2], days[2:4], days[4:]]
        assert "prev" not in pages[0]["links"]
        # Back from the last page to the first, each prev page equal to the one seen going forward.
        back = [pages[-1]]
        while "prev" in back[-1]["links"]:
            back.append(kl("GET", back[-1]["links"]["prev"]).json())
        assert [[e["id"] for e in p["data"]] for p in reversed(back)] == [
            [e["id"] for e in p["data"]] for p in pages
        ]
        # A prev page leads forward again.
        assert kl("GET", back[1]["links"]["next"]).json()["data"] == pages[-1]["data"]

    for email in ("a", "b", "c"):
        body = {"data": {"type": "profile", "attributes": {"email": f"{email}@example.com"}}}
        assert kl("POST", "/api/profiles", json=body).status_code == 201
    first = kl("GET", "/api/profiles", params={"page[size]": "2", "sort": "-email"}).json()
    last = kl("GET", first["links"]["next"]).json()
    assert [p["attributes"]["email"] for p in last["data"]] == ["b@example.com", "a@example.com"]
    again = kl("GET", last["links"]["prev"]).json()
    assert [p["attributes"]["email"] for p in again["data"]] == ["p@example.com", "c@example.com"]
    assert "prev" not in again["links"] and again["links"]["next"] == first["links"]["next"]
