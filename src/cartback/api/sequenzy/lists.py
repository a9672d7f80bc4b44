"""The Sequenzy list resource: named groups of subscribers.

`POST /lists` is idempotent by name (see core/lists.py): the SDK retries 409s, so a repeated create
answers the existing list with `created: false` rather than a Conflict.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import Field

from cartback import errors
from cartback.api import deps
from cartback.api.sequenzy import models, principal
from cartback.core import lists, subscribers

router = APIRouter(tags=["lists"])

Who = deps.Principal
Svc = deps.Services


def list_json(item: lists.SubscriberList, *, counts: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "isPrivate": item.is_private,
        "allowMemberUnsubscribe": item.allow_member_unsubscribe,
        "createdAt": models.iso(item.created_at),
        "updatedAt": models.iso(item.updated_at),
    }
    if counts:
        body["subscriberCount"] = item.subscriber_count
        body["activeSubscriberCount"] = item.active_subscriber_count
    return body


@router.get("/lists")
async def list_lists(who: Who = Depends(principal), svc: Svc = Depends(deps.services)) -> dict[str, Any]:
    """Every list, oldest first, with current members and how many of them are active."""
    found = await svc.db.read(lambda tx: lists.list_all(tx, who.workspace_id))
    return {"success": True, "lists": [list_json(item, counts=True) for item in found]}


class CreateListRequest(models.WireModel):
    name: models.NonEmpty
    description: str | None = Field(None, max_length=5000)
    is_private: bool | None = None
    allow_member_unsubscribe: bool | None = None


@router.post("/lists")
async def create_list(
    body: CreateListRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    data = lists.ListInput(
        name=body.name,
        description=body.description,
        is_private=bool(body.is_private),
        allow_member_unsubscribe=bool(body.allow_member_unsubscribe),
    )
    now = svc.clock.now()
    item, created = await svc.db.write(lambda tx: lists.create(tx, who.workspace_id, data, now))
    return {"success": True, "list": list_json(item), "created": created}


class UpdateListRequest(models.WireModel):
    name: models.NonEmpty | None = None
    description: str | None = Field(None, max_length=5000)
    is_private: bool | None = None
    allow_member_unsubscribe: bool | None = None


@router.patch("/lists/{list_id}")
async def update_list(
    list_id: str, body: UpdateListRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Only the fields sent change; a null description clears it."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    for flag in ("name", "is_private", "allow_member_unsubscribe"):
        if flag in changes and changes[flag] is None:
            del changes[flag]  # null means "leave as is" where clearing makes no sense
    now = svc.clock.now()
    item = await svc.db.write(lambda tx: lists.update(tx, who.workspace_id, list_id, changes, now))
    return {"success": True, "list": list_json(item)}


@router.delete("/lists/{list_id}")
async def delete_list(
    list_id: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Delete the list and its memberships, not the subscribers."""
    removed = await svc.db.write(lambda tx: lists.delete(tx, who.workspace_id, list_id))
    return {"success": True, "removedMemberships": removed}


class AddToListRequest(models.WireModel):
    emails: list[str] = Field(max_length=subscribers.BULK_MAX)
    duplicate_strategy: Literal["skip", "merge", "overwrite"] | None = None
    opt_in_mode: Literal["default", "confirmed", "double_opt_in"] | None = None
    enroll_in_sequences: bool | None = None


@router.post("/lists/{list_id}/subscribers")
async def add_subscribers(
    list_id: str, body: AddToListRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Add up to 500 emails to a list, creating subscribers as needed. Blank and repeated emails are
    counted and dropped; an invalid one fails alone, with its error in `results`."""
    cleaned, invalid, blanks, duplicates = _sort_emails(body.emails)
    strategy = body.duplicate_strategy or subscribers.DEFAULT_DUPLICATE_STRATEGY
    now = svc.clock.now()
    done = await svc.db.write(
        lambda tx: subscribers.add_to_list(tx, who.workspace_id, list_id, cleaned, strategy, now)
    )
    results: list[dict[str, Any]] = [
        {
            "email": r.email,
            "success": True,
            "created": r.created,
            "updated": r.updated,
            "skipped": r.skipped,
            "addedToList": r.added_to_list,
        }
        for r in done
    ]
    results += [{"email": e, "success": False, "error": "invalid email address"} for e in invalid]
    return {
        "success": True,
        "listId": list_id,
        "total": len(body.emails),
        "processed": len(done),
        "created": sum(r.created for r in done),
        "updated": sum(r.updated for r in done),
        "skipped": sum(r.skipped for r in done),
        "addedToList": sum(r.added_to_list for r in done),
        "failed": len(invalid),
        "duplicateInputCount": duplicates,
        "ignoredBlankCount": blanks,
        "results": results,
    }


def _sort_emails(emails: list[str]) -> tuple[list[str], list[str], int, int]:
    """(valid emails once each, invalid ones, blank count, repeat count)."""
    valid: dict[str, str] = {}
    invalid: list[str] = []
    blanks = duplicates = 0
    for raw in emails:
        if not raw.strip():
            blanks += 1
            continue
        try:
            email = models.check_email(raw)
        except ValueError:
            invalid.append(raw)
            continue
        key = email.lower()
        if key in valid:
            duplicates += 1
        else:
            valid[key] = email
    return list(valid.values()), invalid, blanks, duplicates


class RemoveFromListRequest(models.WireModel):
    emails: list[str] | None = Field(None, max_length=subscribers.BULK_MAX)
    subscriber_ids: list[str] | None = Field(None, max_length=subscribers.BULK_MAX)


@router.post("/lists/{list_id}/subscribers/remove")
async def remove_subscribers(
    list_id: str,
    body: RemoveFromListRequest,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """Take subscribers off a list by email or id; `notFound` lists identifiers matching nobody."""
    emails, ids = body.emails or [], body.subscriber_ids or []
    if not emails and not ids:
        raise errors.InvalidInput("send emails or subscriberIds")
    now = svc.clock.now()
    result = await svc.db.write(
        lambda tx: lists.remove_subscribers(
            tx, who.workspace_id, list_id, emails=emails, subscriber_ids=ids, now=now
        )
    )
    return {"success": True, "removed": result.removed, "notFound": result.not_found}
