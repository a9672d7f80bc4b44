"""The Sequenzy subscriber resource: create/upsert, read, update, delete, list, and tags.

Paths: the SDK does not percent-encode path parameters, so `/subscribers/a+b@x.com` arrives with a
literal `+`, which the ASGI path keeps (only query strings turn `+` into a space). The fixed paths
(`/subscribers/external`, `/subscribers/tags...`, `/subscribers/bulk/...`) are declared before
`/subscribers/{email}` so the catch-all never takes them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from cartback.api import deps, scopes
from cartback.api.sequenzy import models, principal
from cartback.core import subscribers

router = APIRouter(tags=["subscribers"])

Who = deps.Principal
Svc = deps.Services


def _with_flags(sub: subscribers.Subscriber, **flags: bool) -> dict[str, Any]:
    return {**models.subscriber_json(sub), **flags}


# -- create ----------------------------------------------------------------------------------------


class CreateSubscriberRequest(models.WireModel):
    email: models.Email | None = None
    external_id: models.NonEmpty | None = None
    first_name: models.Name | None = None
    last_name: models.Name | None = None
    phone: str | None = Field(None, max_length=64)
    phone_country: str | None = Field(None, max_length=8)
    sms_consent: bool | None = None
    status: Literal["active", "unsubscribed", "bounced"] | None = None
    tags: list[models.Name] | None = Field(None, max_length=1000)
    lists: list[models.NonEmpty] | None = Field(None, max_length=1000)
    custom_attributes: dict[str, Any] | None = None
    created_at: models.UtcDateTime | None = None
    timezone: models.TimeZone | None = None
    duplicate_strategy: Literal["skip", "merge", "overwrite"] | None = None
    # Accepted for compatibility; cartback has no double opt-in or sequence enrolment on create yet.
    opt_in_mode: Literal["default", "confirmed", "double_opt_in"] | None = None
    enroll_in_sequences: bool | None = None

    def as_input(self) -> subscribers.SubscriberInput:
        return subscribers.SubscriberInput(
            email=self.email,
            external_id=self.external_id,
            first_name=self.first_name,
            last_name=self.last_name,
            phone=self.phone,
            phone_country=self.phone_country,
            sms_consent=self.sms_consent,
            status=self.status,
            timezone=self.timezone,
            attributes=self.custom_attributes,
            tags=self.tags or (),
            lists=self.lists or (),
            created_at=self.created_at,
        )


@router.post("/subscribers", **scopes.requires(scopes.EVENTS_WRITE))
async def create_subscriber(
    body: CreateSubscriberRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Create a subscriber, or apply the request to an existing one per `duplicateStrategy` (default
    `skip`, as Sequenzy documents)."""
    data = body.as_input()
    strategy = body.duplicate_strategy or subscribers.DEFAULT_DUPLICATE_STRATEGY
    now = svc.clock.now()
    models.check_time(body.created_at, now, "createdAt")
    saved = await svc.db.write(lambda tx: subscribers.create(tx, who.workspace_id, data, strategy, now))
    flags = {"created": saved.created, "updated": saved.updated, "skipped": saved.skipped}
    shown = (
        _with_flags(saved.subscriber, **flags)
        if scopes.reads_back(who)
        else {"id": saved.subscriber.id, **flags}  # every field of Sequenzy's model is optional
    )
    return {"success": True, "subscriber": shown, "optIn": models.OPT_IN}


# -- list ------------------------------------------------------------------------------------------


@router.get("/subscribers")
async def list_subscribers(
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    page: int | None = Query(None, ge=1, le=subscribers.MAX_PAGE),
    limit: int = Query(subscribers.DEFAULT_PAGE_SIZE, ge=1, le=subscribers.MAX_PAGE_SIZE),
    cursor: str | None = Query(None, max_length=500),
    include_total: str | None = Query(None, alias="includeTotal"),
    status: Literal["active", "unsubscribed", "bounced", "all"] | None = None,
    email: str | None = Query(None, max_length=320),
    query: str | None = Query(None, max_length=320),
    tags: str | None = Query(None, max_length=5000),
    list_ref: str | None = Query(None, alias="list", max_length=255),
    list_id: str | None = Query(None, alias="listId", max_length=255),
    list_name: str | None = Query(None, alias="listName", max_length=255),
) -> dict[str, Any]:
    """Newest first. `tags` is comma-separated and a subscriber must carry all of them (Sequenzy's
    rule). `list` takes a list id or exact name. Follow `pagination.nextCursor` for a stable full pull;
    cursor pages skip the count, so their `total` and `totalPages` are null."""
    q = subscribers.SearchQuery(
        page=page,
        limit=limit,
        cursor=cursor or None,
        include_total=include_total != "false",
        status=status,
        email=email,
        query=query,
        tags=tuple((tags or "").split(",")),
        list_ref=list_ref,
        list_id=list_id,
        list_name=list_name,
    )
    result = await svc.db.read(lambda tx: subscribers.search(tx, who.workspace_id, q))
    return {
        "success": True,
        "subscribers": [models.subscriber_json(s) for s in result.subscribers],
        "pagination": {
            "page": result.page,
            "limit": result.limit,
            "total": result.total,
            "totalPages": subscribers.total_pages(result),
            "hasMore": result.has_more,
            "nextCursor": result.next_cursor,
            "orderBy": "createdAt",
        },
    }


# -- tags (before /subscribers/{email}) ------------------------------------------------------------


class AddTagRequest(models.IdentityBody):
    tag: models.NonEmpty


@router.post("/subscribers/tags")
async def add_tag(
    body: AddTagRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Tag a subscriber, creating them (and the tag) if new."""
    identity, now = body.identity(), svc.clock.now()
    result = await svc.db.write(
        lambda tx: subscribers.add_tags(tx, who.workspace_id, identity, [body.tag], now)
    )
    name = subscribers.clean_tags([body.tag])[0]
    return {
        "success": True,
        "subscriber": _tag_subscriber(result.subscriber, result.created),
        "tag": {"id": result.tagged.tag_ids[name], "name": name, "created": name in result.tagged.created},
        "optIn": models.OPT_IN,
    }


def _tag_subscriber(sub: subscribers.Subscriber, created: bool) -> dict[str, Any]:
    return {"id": sub.id, "email": sub.email, "created": created, "tags": list(sub.tags)}


class RemoveTagRequest(models.IdentityBody):
    tag: models.NonEmpty


@router.post("/subscribers/tags/remove")
async def remove_tag(
    body: RemoveTagRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Untag a subscriber. An unknown subscriber is a 404 (Sequenzy would create one without the tag)."""
    identity, now = body.identity(), svc.clock.now()
    sub, removed = await svc.db.write(
        lambda tx: subscribers.remove_tag(tx, who.workspace_id, identity, body.tag, now)
    )
    return {
        "success": True,
        "subscriber": _tag_subscriber(sub, False),
        "tag": {"name": body.tag.strip(), "removed": removed},
    }


class AddTagsBulkRequest(models.IdentityBody):
    tags: list[models.Name] = Field(max_length=1000)


@router.post("/subscribers/tags/bulk")
async def add_tags_bulk(
    body: AddTagsBulkRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Many tags on one subscriber, created if new."""
    identity, now = body.identity(), svc.clock.now()
    result = await svc.db.write(
        lambda tx: subscribers.add_tags(tx, who.workspace_id, identity, body.tags, now)
    )
    return {
        "success": True,
        "subscriber": _tag_subscriber(result.subscriber, result.created),
        "tags": {"added": result.tagged.added, "created": result.tagged.created},
        "optIn": models.OPT_IN,
    }


class BulkTagsRequest(models.WireModel):
    tags: list[models.Name] = Field(min_length=1, max_length=100)
    emails: list[str] | None = Field(None, max_length=subscribers.BULK_MAX)
    external_ids: list[str] | None = Field(None, max_length=subscribers.BULK_MAX)
    subscriber_ids: list[str] | None = Field(None, max_length=subscribers.BULK_MAX)
    # Tag events are always appended; whether automations run on them is the automation engine's call.
    trigger_automations: bool | None = None


async def _bulk_tags(body: BulkTagsRequest, who: Who, svc: Svc, *, add: bool) -> dict[str, Any]:
    now = svc.clock.now()
    result = await svc.db.write(
        lambda tx: subscribers.bulk_tags(
            tx,
            who.workspace_id,
            add=add,
            names=body.tags,
            emails=body.emails or [],
            external_ids=body.external_ids or [],
            subscriber_ids=body.subscriber_ids or [],
            now=now,
        )
    )
    return {
        "success": True,
        "message": f"{'tagged' if add else 'untagged'} {result.updated} of {result.matched} subscribers",
        "requested": result.requested,
        "matched": result.matched,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "failed": 0,
        "failures": [],
        "notFound": {
            "emails": result.not_found_emails,
            "externalIds": result.not_found_external_ids,
            "subscriberIds": result.not_found_ids,
        },
        "tags": result.tags,
        "triggeredAutomations": bool(body.trigger_automations) and add,
    }


@router.post("/subscribers/bulk/tags/add")
async def bulk_add_tags(
    body: BulkTagsRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Tags on up to 500 existing subscribers; unknown identifiers come back in notFound."""
    return await _bulk_tags(body, who, svc, add=True)


@router.post("/subscribers/bulk/tags/remove")
async def bulk_remove_tags(
    body: BulkTagsRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Tags off up to 500 existing subscribers; unknown identifiers come back in notFound."""
    return await _bulk_tags(body, who, svc, add=False)


# -- one subscriber, by externalId (query or path) or by email -------------------------------------


class UpdateSubscriberRequest(models.WireModel):
    email: models.Email | None = None
    external_id: str | None = Field(None, max_length=255)
    first_name: models.Name | None = None
    last_name: models.Name | None = None
    phone: str | None = Field(None, max_length=64)
    phone_country: str | None = Field(None, max_length=8)
    sms_consent: bool | None = None
    status: Literal["active", "unsubscribed", "bounced", "complained"] | None = None
    tags: list[models.Name] | None = Field(None, max_length=1000)
    timezone: models.TimeZone | None = None
    custom_attributes: dict[str, Any] | None = None
    custom_attributes_strategy: Literal["replace", "merge"] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the request carried (null included: it clears), under the core's names."""
        renamed = {"custom_attributes": "attributes"}
        skip = {"custom_attributes_strategy"}
        return {
            renamed.get(name, name): getattr(self, name) for name in self.model_fields_set if name not in skip
        }


async def _get(lookup: subscribers.Lookup, who: Who, svc: Svc) -> dict[str, Any]:
    found = await svc.db.read(lambda tx: subscribers.detail(tx, who.workspace_id, lookup))
    body = models.subscriber_json(found.subscriber)
    body["lists"] = [
        {
            "id": m.list.id,
            "name": m.list.name,
            "description": m.list.description,
            "isPrivate": m.list.is_private,
            "subscribedAt": models.iso(m.subscribed_at),
            "unsubscribedAt": models.iso(m.unsubscribed_at),
        }
        for m in found.lists
    ]
    body["activity"] = [
        {
            "id": e.id,
            "eventType": "event",
            "eventName": e.name,
            "eventTime": models.iso(e.occurred_at),
            "properties": e.properties,
        }
        for e in found.activity
    ]
    # Mail is not sent yet, so there is nothing to count; the keys are there for the SDK's model.
    body["emailStats"] = dict.fromkeys(
        ("sent", "delivered", "opened", "clicked", "bounced", "complained", "unsubscribed"), 0
    )
    body["sequenceEnrollments"] = []
    body["notes"] = []
    return {"success": True, "subscriber": body}


async def _update(
    lookup: subscribers.Lookup, body: UpdateSubscriberRequest, who: Who, svc: Svc
) -> dict[str, Any]:
    changes = body.changes()
    strategy = body.custom_attributes_strategy or subscribers.DEFAULT_ATTRIBUTES_STRATEGY
    now = svc.clock.now()
    sub = await svc.db.write(
        lambda tx: subscribers.update(
            tx, who.workspace_id, lookup, changes, now, attributes_strategy=strategy
        )
    )
    return {"success": True, "subscriber": models.subscriber_json(sub)}


async def _delete(lookup: subscribers.Lookup, who: Who, svc: Svc) -> dict[str, Any]:
    await svc.db.write(lambda tx: subscribers.delete(tx, who.workspace_id, lookup))
    return {"success": True, "deleted": True}


ExternalIdQuery = Query(alias="externalId", min_length=1, max_length=255)


@router.get("/subscribers/external")
async def get_by_external_id(
    external_id: str = ExternalIdQuery, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """The query form takes externalIds that contain slashes."""
    return await _get(subscribers.Lookup(external_id=external_id), who, svc)


@router.patch("/subscribers/external")
async def update_by_external_id(
    body: UpdateSubscriberRequest,
    external_id: str = ExternalIdQuery,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """The query names the subscriber; a body `externalId` is the new one."""
    return await _update(subscribers.Lookup(external_id=external_id), body, who, svc)


@router.delete("/subscribers/external")
async def delete_by_external_id(
    external_id: str = ExternalIdQuery, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    return await _delete(subscribers.Lookup(external_id=external_id), who, svc)


@router.get("/subscribers/external/{external_id:path}")
async def get_by_external_id_path(
    external_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    return await _get(subscribers.Lookup(external_id=external_id), who, svc)


@router.patch("/subscribers/external/{external_id:path}")
async def update_by_external_id_path(
    external_id: str,
    body: UpdateSubscriberRequest,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    return await _update(subscribers.Lookup(external_id=external_id), body, who, svc)


@router.delete("/subscribers/external/{external_id:path}")
async def delete_by_external_id_path(
    external_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    return await _delete(subscribers.Lookup(external_id=external_id), who, svc)


@router.get("/subscribers/{email}")
async def get_subscriber(
    email: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """A subscriber with list memberships and recent activity. The email matches case-insensitively."""
    return await _get(subscribers.Lookup(email=email), who, svc)


@router.patch("/subscribers/{email}")
async def update_subscriber(
    email: str,
    body: UpdateSubscriberRequest,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """Change only the fields sent. `tags` replaces the tag set; `customAttributes` replaces the map
    unless `customAttributesStrategy` is `merge` (Sequenzy's default is replace)."""
    return await _update(subscribers.Lookup(email=email), body, who, svc)


@router.delete("/subscribers/{email}")
async def delete_subscriber(
    email: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """200 with `{success, deleted}`: the SDK cannot read a bodiless 204."""
    return await _delete(subscribers.Lookup(email=email), who, svc)
