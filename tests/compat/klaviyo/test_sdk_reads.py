"""The SDK's strict models parse every resource cartback returns: profiles (list with an email filter,
create with its 409, profile-import 201/200), metrics (list, one by id), events (pages followed through
links.next in the SDK's own cursor handling)."""

from __future__ import annotations

import pytest
from openapi_client.exceptions import ApiException, NotFoundException
from openapi_client.models import (
    ProfileCreateQuery,
    ProfileCreateQueryResourceObject,
    ProfileCreateQueryResourceObjectAttributes,
    ProfileUpsertQuery,
    ProfileUpsertQueryResourceObject,
    ProfileUpsertQueryResourceObjectAttributes,
)
from tests.compat.klaviyo.test_sdk_events import SEED_PROPERTIES, event_body


def import_body(**attributes) -> ProfileUpsertQuery:
    return ProfileUpsertQuery(
        data=ProfileUpsertQueryResourceObject(
            type="profile", attributes=ProfileUpsertQueryResourceObjectAttributes(**attributes)
        )
    )


def test_sdk_profile_import_creates_then_updates_and_get_profiles_filters_by_email(klaviyo):
    created = klaviyo.Profiles.create_or_update_profile(
        import_body(
            email="jane.doe@example.com",
            external_id="cust_1",
            first_name="Jane",
            last_name="Doe",
            properties={"plan": "free"},
        )
    )
    assert created is not None, "201 expected (a status outside the SDK's map returns None)"
    profile_id = created.data.id
    assert created.data.attributes.email == "jane.doe@example.com"
    assert created.data.attributes.properties == {"plan": "free"}

    updated = klaviyo.Profiles.create_or_update_profile(
        import_body(email="jane.doe@example.com", title="CTO", properties={"tier": "gold"})
    )
    assert updated is not None, "200 expected"
    assert updated.data.id == profile_id
    assert updated.data.attributes.title == "CTO"
    assert updated.data.attributes.first_name == "Jane"
    assert updated.data.attributes.properties == {"plan": "free", "tier": "gold"}

    klaviyo.Profiles.create_or_update_profile(import_body(email="someone.else@example.com"))
    found = klaviyo.Profiles.get_profiles(filter='equals(email,"jane.doe@example.com")', page_size=5)
    assert [p.id for p in found.data] == [profile_id]
    assert found.data[0].attributes.external_id == "cust_1"
    assert found.data[0].links.var_self.endswith(f"/api/profiles/{profile_id}")
    by_external = klaviyo.Profiles.get_profiles(filter='equals(external_id,"cust_1")')
    assert [p.id for p in by_external.data] == [profile_id]
    assert klaviyo.Profiles.get_profile(profile_id).data.attributes.last_name == "Doe"


def test_sdk_create_profile_is_201_and_a_duplicate_is_409_naming_the_existing_one(klaviyo):
    body = ProfileCreateQuery(
        data=ProfileCreateQueryResourceObject(
            type="profile",
            attributes=ProfileCreateQueryResourceObjectAttributes(
                email="new@example.com", phone_number="+15005550006", first_name="New"
            ),
        )
    )
    created = klaviyo.Profiles.create_profile(body)
    assert created is not None, "201 expected"
    assert created.data.attributes.phone_number == "+15005550006"
    with pytest.raises(ApiException) as info:
        klaviyo.Profiles.create_profile(body)
    assert info.value.status == 409
    (error,) = __import__("json").loads(info.value.body)["errors"]
    assert error["code"] == "duplicate_profile"
    assert error["meta"]["duplicate_profile_id"] == created.data.id
    by_phone = klaviyo.Profiles.get_profiles(filter='equals(phone_number,"+15005550006")')
    assert [p.id for p in by_phone.data] == [created.data.id]


def test_sdk_metrics_list_and_get_by_stable_id(klaviyo):
    klaviyo.Events.create_event(
        event_body("Started Checkout", "m@example.com", SEED_PROPERTIES, unique_id="c1", value=129.98)
    )
    klaviyo.Events.create_event(event_body("Viewed Product", "m@example.com", {"x": 1}, unique_id="v1"))
    listed = klaviyo.Metrics.get_metrics()
    names = {m.attributes.name: m for m in listed.data}
    assert {"Started Checkout", "Viewed Product"} <= set(names)
    started = names["Started Checkout"]
    assert isinstance(started.attributes.created, str)
    assert started.attributes.integration["name"] == "API"
    again = klaviyo.Metrics.get_metric(started.id)
    assert again.data.id == started.id
    assert again.data.attributes.name == "Started Checkout"
    assert [m.id for m in klaviyo.Metrics.get_metrics().data] == [m.id for m in listed.data]
    with pytest.raises(NotFoundException):
        klaviyo.Metrics.get_metric("nope00")


def test_sdk_get_events_pages_through_links_next_and_filters_by_metric(klaviyo):
    for i in range(7):
        klaviyo.Events.create_event(
            event_body("Viewed Product", "pager@example.com", {"n": i}, unique_id=f"view-{i}")
        )
    klaviyo.Events.create_event(event_body("Other Thing", "pager@example.com", {}, unique_id="o-1"))
    metric = next(m for m in klaviyo.Metrics.get_metrics().data if m.attributes.name == "Viewed Product")

    seen = []
    page = klaviyo.Events.get_events(filter=f'equals(metric_id,"{metric.id}")', page_size=3)
    while True:
        seen.extend(page.data)
        assert all(e.type == "event" and isinstance(e.attributes.timestamp, int) for e in page.data)
        assert all(e.relationships.metric.data.id == metric.id for e in page.data)
        if not page.links.next:
            break
        # The SDK's wrapper hands the whole next link back as the cursor (an http:// link).
        page = klaviyo.Events.get_events(
            filter=f'equals(metric_id,"{metric.id}")', page_size=3, page_cursor=page.links.next
        )
    assert sorted(e.attributes.event_properties["n"] for e in seen) == list(range(7))
    assert len({e.id for e in seen}) == 7

    newest = klaviyo.Events.get_events(
        filter=f'equals(metric_id,"{metric.id}")',
        sort="-datetime",
        page_size=1,
        include=["metric", "profile"],
    )
    assert len(newest.data) == 1
    assert {i["type"] for i in newest.included} == {"metric", "profile"}  # free-form in the SDK
    one = klaviyo.Events.get_event(newest.data[0].id)
    assert one.data.id == newest.data[0].id
