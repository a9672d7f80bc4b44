"""The official `sequenzy` SDK against a real `cartback serve`: subscribers, tags, lists and custom
events. Each call must parse into the SDK's typed response, and the values must be ours."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from sequenzy import Sequenzy
from sequenzy.errors import NotFoundError
from sequenzy.subscribers import TriggerBulkEventsRequestEventsItem


@pytest.fixture
def client(server, make_workspace) -> Iterator[Sequenzy]:
    with httpx.Client(timeout=10) as http:
        yield Sequenzy(api_key=make_workspace().key, base_url=server.api, max_retries=0, httpx_client=http)


def test_sdk_subscriber_lifecycle(client):
    created = client.subscribers.create(
        email="jane+sdk@example.com",
        external_id="cust_sdk_1",
        first_name="Jane",
        last_name=None,
        tags=["shopper"],
        lists=["Newsletter"],
        custom_attributes={"plan": "free"},
        timezone="Europe/Berlin",
        created_at=dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
        duplicate_strategy="merge",
    )
    assert created.success is True
    sub = created.subscriber
    assert sub.email == "jane+sdk@example.com"
    assert sub.created is True and sub.skipped is False
    assert sub.tags == ["shopper"]
    assert sub.created_at == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert created.opt_in.required is False

    got = client.subscribers.get(email="jane+sdk@example.com")
    assert got.subscriber.id == sub.id
    assert got.subscriber.custom_attributes == {"plan": "free"}
    assert [m.name for m in got.subscriber.lists] == ["Newsletter"]
    assert got.subscriber.email_stats.sent == 0

    assert client.subscribers.get_by_external_id(external_id="cust_sdk_1").subscriber.id == sub.id
    assert client.subscribers.get_by_external_id_path(external_id="cust_sdk_1").subscriber.id == sub.id

    updated = client.subscribers.update(
        email_path_param="jane+sdk@example.com",
        last_name="Doe",
        tags=["shopper", "vip"],
        custom_attributes={"city": "Berlin"},
        custom_attributes_strategy="merge",
        status="unsubscribed",
    )
    assert updated.subscriber.last_name == "Doe"
    assert updated.subscriber.tags == ["shopper", "vip"]
    assert updated.subscriber.custom_attributes == {"plan": "free", "city": "Berlin"}
    assert updated.subscriber.status == "unsubscribed"
    assert updated.subscriber.unsubscribed_at is not None

    moved = client.subscribers.update_by_external_id(external_id="cust_sdk_1", new_external_id="cust_sdk_2")
    assert moved.subscriber.external_id == "cust_sdk_2"
    by_path = client.subscribers.update_by_external_id_path(
        external_id_path_param="cust_sdk_2", first_name="Janet", status="active"
    )
    assert by_path.subscriber.first_name == "Janet"
    assert by_path.subscriber.status == "active"

    listed = client.subscribers.list(tags="vip", limit=10)
    assert [s.email for s in listed.subscribers] == ["jane+sdk@example.com"]
    assert listed.pagination.total == 1 and listed.pagination.has_more is False

    assert client.subscribers.delete(email="jane+sdk@example.com").deleted is True
    with pytest.raises(NotFoundError):
        client.subscribers.get(email="jane+sdk@example.com")


def test_sdk_delete_by_external_id(client):
    client.subscribers.create(email="a@example.com", external_id="ext_a")
    client.subscribers.create(email="b@example.com", external_id="ext_b")
    assert client.subscribers.delete_by_external_id(external_id="ext_a").deleted is True
    assert client.subscribers.delete_by_external_id_path(external_id="ext_b").deleted is True
    assert client.subscribers.list().subscribers == []


def test_sdk_list_cursor_pagination(client):
    for i in range(5):
        client.subscribers.create(email=f"p{i}@example.com")
    seen: list[str] = []
    cursor = None
    while True:
        page = client.subscribers.list(limit=2, cursor=cursor)
        seen += [s.email for s in page.subscribers]
        if not page.pagination.has_more:
            break
        cursor = page.pagination.next_cursor
    assert sorted(seen) == [f"p{i}@example.com" for i in range(5)]


def test_sdk_tags(client):
    added = client.subscribers.tags.add(tag="vip", email="t@example.com", first_name="Tom")
    assert added.subscriber.created is True
    assert added.tag.name == "vip" and added.tag.created is True

    removed = client.subscribers.tags.remove(tag="vip", email="t@example.com")
    assert removed.tag.removed is True
    assert removed.subscriber.tags == []

    bulk_one = client.subscribers.add_tags_bulk(tags=["a", "b"], email="t@example.com")
    assert bulk_one.tags.added == ["a", "b"]
    assert bulk_one.subscriber.tags == ["a", "b"]

    bulk_many = client.subscribers.bulk_add_tags(tags=["c"], emails=["t@example.com", "ghost@example.com"])
    assert (bulk_many.matched, bulk_many.updated) == (1, 1)
    assert bulk_many.not_found.emails == ["ghost@example.com"]

    bulk_off = client.subscribers.bulk_remove_tags(tags=["c"], emails=["t@example.com"])
    assert bulk_off.updated == 1


def test_sdk_lists(client):
    created = client.lists.create(name="VIP", description="best", is_private=True)
    assert created.list_.name == "VIP" and created.list_.is_private is True
    list_id = created.list_.id

    renamed = client.lists.update(list_id=list_id, name="VIPs")
    assert renamed.list_.name == "VIPs"

    added = client.lists.add_subscribers(list_id=list_id, emails=["a@example.com", "b@example.com"])
    assert (added.created, added.added_to_list, added.failed) == (2, 2, 0)
    assert [r.email for r in added.results] == ["a@example.com", "b@example.com"]

    [listed] = client.lists.list().lists
    assert (listed.id, listed.subscriber_count, listed.active_subscriber_count) == (list_id, 2, 2)

    removed = client.lists.remove_subscribers(list_id=list_id, emails=["a@example.com", "ghost@example.com"])
    assert removed.removed == 1 and removed.not_found == ["ghost@example.com"]

    assert client.lists.delete(list_id=list_id).removed_memberships == 1
    with pytest.raises(NotFoundError):
        client.lists.delete(list_id=list_id)


def test_sdk_events(client):
    first = client.subscribers.events.trigger(
        event="checkout.viewed",
        email="e@example.com",
        event_id="evt_sdk_1",
        properties={"checkoutId": "chk_1"},
        first_name="Eve",
    )
    assert first.success is True
    assert first.event.id.startswith("evt_")
    assert first.event.name == "checkout.viewed"
    assert first.subscriber.created is True
    assert first.duplicate is False and first.historical is False

    replay = client.subscribers.events.trigger(
        event="checkout.viewed", email="e@example.com", event_id="evt_sdk_1"
    )
    assert replay.duplicate is True
    assert replay.event.id == first.event.id

    old = client.subscribers.events.trigger(
        event="imported",
        email="e@example.com",
        occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2),
    )
    assert old.historical is True

    bulk = client.subscribers.events.trigger_bulk(
        email="e@example.com",
        events=[
            TriggerBulkEventsRequestEventsItem(name="a", event_id="evt_sdk_1"),
            TriggerBulkEventsRequestEventsItem(name="Started Checkout", properties={"k": 1}),
        ],
    )
    assert bulk.success is True
    assert [e.duplicate for e in bulk.events] == [True, False]
    assert bulk.events[1].name == "ecommerce.checkout_started"
    extra = bulk.model_extra or {}
    assert (extra["inserted"], extra["duplicates"]) == (1, 1)
