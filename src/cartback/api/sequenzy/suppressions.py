"""The Sequenzy suppression resource: list, look up and lift suppressed addresses, plus our own POST.

cartback keeps one row per (address, reason); the three reasons read back as Sequenzy spells them:
bounced → `bounced`, complained → `complaint`, unsubscribed → `unsubscribed` (the SDK's enums are open).
Paths carry the address unencoded (`/suppressions/a+b@x.com`), as for subscribers.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from cartback import errors
from cartback.api import deps
from cartback.api.sequenzy import models, principal
from cartback.core import suppressions

router = APIRouter(tags=["suppressions"])

Who = deps.Principal
Svc = deps.Services

_WIRE_REASON = {"bounced": "bounced", "complained": "complaint", "unsubscribed": "unsubscribed"}
_OUR_REASON = {"bounced": "bounced", "complaint": "complained", "complained": "complained"}
_OUR_REASON["unsubscribed"] = "unsubscribed"
# Bounce sub-types that mean the mailbox does not exist (SES NoEmail, Postmark BadEmailAddress).
_INVALID_RECIPIENT = {"noemail", "bademailaddress", "invalid_recipient"}


def _suppression_type(item: suppressions.Suppression, info: dict[str, str]) -> str:
    if item.reason == "complained":
        return "complaint"
    if item.reason == "unsubscribed":
        return "unsubscribed"
    if info.get("bounceSubType", "").lower() in _INVALID_RECIPIENT:
        return "invalid_recipient"
    return "unknown_hard_bounce"


def suppression_json(item: suppressions.Suppression) -> dict[str, Any]:
    """A `ListSuppressionsResponseSuppressionsItem`, plus `id` and `detail`."""
    info = suppressions.parse_detail(item.detail)
    bounced = item.reason == "bounced"
    return {
        "id": item.id,
        "email": item.email,
        "reason": _WIRE_REASON.get(item.reason, item.reason),
        "scope": "company",
        "source": item.source,
        "suppressionType": _suppression_type(item, info),
        "bounceType": info.get("bounceType", "Permanent") if bounced else None,
        "bounceSubType": info.get("bounceSubType") if bounced else None,
        "bounceCount": 1 if bounced else 0,
        "delistable": True,
        "detail": info.get("diagnostic"),
        "suppressedAt": models.iso(item.created_at),
    }


@router.get("/suppressions")
async def list_suppressions(
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    page: int = Query(1, ge=1, le=1_000_000),
    limit: int = Query(50, ge=1, le=500),
    search: str | None = Query(None, max_length=320),
    sort: Literal["suppressedAt", "email", "status"] = "suppressedAt",
    order: Literal["asc", "desc"] = "desc",
    reason: Literal["bounced", "complaint", "complained", "unsubscribed"] | None = None,
) -> dict[str, Any]:
    """Every suppression of the workspace, one entry per (address, reason). `search` matches a part of
    the address; `sort=status` sorts by reason."""
    query = suppressions.ListQuery(
        search=search or None,
        reason=_OUR_REASON[reason] if reason else None,
        limit=limit,
        offset=(page - 1) * limit,
        order=order,
        sort=sort,
    )
    now = svc.clock.now()
    items, total = await svc.db.read(lambda tx: suppressions.listing(tx, who.workspace_id, query, now))
    has_more = page * limit < total
    return {
        "success": True,
        "suppressions": [suppression_json(s) for s in items],
        "page": page,
        "limit": limit,
        "total": total,
        "hasMore": has_more,
        "sortBy": sort,
        "sortOrder": order,
        "pagination": {
            "page": page,
            "limit": limit,
            "total": total,
            "totalPages": (total + limit - 1) // limit,
            "hasMore": has_more,
        },
    }


class AddSuppressionRequest(models.WireModel):
    email: models.Email
    reason: Literal["bounced", "complaint", "complained", "unsubscribed"]
    source: str | None = Field(None, min_length=1, max_length=40)
    detail: str | None = Field(None, max_length=2000)


@router.post("/suppressions")
async def add_suppression(
    body: AddSuppressionRequest, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """cartback's extension: suppress an address by hand. Idempotent: `created` is false when the
    address was already suppressed for that reason."""
    addition = suppressions.Addition(body.email, _OUR_REASON[body.reason], body.source or "api", body.detail)
    now = svc.clock.now()
    created, item = await svc.db.write(lambda tx: suppressions.add(tx, who.workspace_id, addition, now))
    return {"success": True, "created": created, "suppression": suppression_json(item)}


def _local(items: list[suppressions.Suppression]) -> dict[str, Any] | None:
    top = suppressions.strongest(items)
    if top is None:
        return None
    entry = suppression_json(top)
    return {
        "suppressed": True,
        "suppressionId": top.id,
        "reason": entry["reason"],
        "scope": "company",
        "source": top.source,
        "suppressionType": entry["suppressionType"],
        "delistable": True,
        "suppressedAt": entry["suppressedAt"],
    }


@router.get("/suppressions/{email}")
async def get_suppression(
    email: str, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    """Whether an address is suppressed, and why. An address that is not suppressed is a 200 with
    `suppressed: false`, as Sequenzy answers it (its SDK declares no 404 here)."""
    now = svc.clock.now()
    found = await svc.db.read(lambda tx: suppressions.standing(tx, who.workspace_id, email, now))
    items, known = found.items, found.known
    return {
        "success": True,
        "suppression": {
            "email": items[0].email if items else email,
            "suppressed": bool(items),
            "knownRecipient": known,
            "local": _local(items) or {"suppressed": False},
            "entries": [suppression_json(s) for s in items],
        },
    }


@router.delete("/suppressions/{email}")
async def remove_suppression(
    email: str,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    reason: Literal["bounced", "complaint", "complained", "unsubscribed"] | None = None,
) -> dict[str, Any]:
    """Lift every suppression of the address (or only `reason`). Lifting an unsubscribe is a re-subscribe:
    a subscriber nothing suppresses any more is set back to `active` and listed in
    `reactivatedSubscriberIds`. 404 when the address has nothing to lift."""
    now = svc.clock.now()
    removal = suppressions.Removal(email, (_OUR_REASON[reason],) if reason else None)
    result = await svc.db.write(lambda tx: suppressions.remove(tx, who.workspace_id, removal, now))
    if not result.removed:
        raise errors.NotFound(f"{email} is not suppressed" + (f" for {reason}" if reason else ""))
    return {
        "success": True,
        "email": result.removed[0].email,
        "removed": True,
        "removedReasons": [_WIRE_REASON[s.reason] for s in result.removed],
        "removedLocalBounce": any(s.reason == "bounced" for s in result.removed),
        "removedSesRegions": [],
        "reactivatedSubscriberIds": result.reactivated_subscriber_ids,
        "remainingSuppression": _local(result.remaining),
    }
