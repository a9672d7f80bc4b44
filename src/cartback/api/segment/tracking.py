"""POST /v1/batch and the single calls (/v1/track, identify, alias, page, screen, group), also under the
short paths analytics.js posts to (/v1/b, /v1/t, /v1/i, /v1/a, /v1/p, /v1/s, /v1/g): each batch is applied
in one group-commit write, all of it or none of it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends

from cartback.api import deps, scopes
from cartback.api.segment import SegmentRoute, mapping, models, principal
from cartback.core import ingest

# The route class inflates gzip bodies; an including router's route_class does not reach these routes.
router = APIRouter(tags=["segment"], route_class=SegmentRoute)


async def _apply(
    svc: deps.Services,
    who: deps.Principal,
    messages: list[models.Message],
    where: list[str],
    sent_at: datetime | None,
) -> models.Accepted:
    now = svc.clock.now()
    batch = [mapping.to_message(m, w, sent_at=sent_at, now=now) for m, w in zip(messages, where, strict=True)]
    if batch:
        await svc.db.write_each(ingest.apply_many, ingest.Request(who.workspace_id, batch, now))
    return models.Accepted()


def post(path: str) -> Callable[[Any], Any]:
    """The route at `path` and at the one-letter path analytics.js uses for it (left out of the OpenAPI
    document: the same operation twice)."""

    def register(endpoint: Any) -> Any:
        options: dict[str, Any] = {"response_model": models.Accepted, **scopes.requires(scopes.EVENTS_WRITE)}
        router.post(f"/{path[0]}", include_in_schema=False, **options)(endpoint)
        return router.post(f"/{path}", **options)(endpoint)

    return register


@post("batch")
async def batch(
    body: models.Batch,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """Several calls at once, what the official clients send. One invalid message refuses the whole batch
    with a 400 naming it, and nothing is stored; a messageId seen before is skipped."""
    where = [f"batch[{i}]" for i in range(len(body.batch))]
    return await _apply(svc, who, body.batch, where, body.sentAt)


@post("track")
async def track(
    body: models.TrackBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """One track call: Checkout Started and the order events become checkouts and orders."""
    return await _apply(svc, who, [body], ["body"], None)


@post("identify")
async def identify(
    body: models.IdentifyBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """One identify call: the subscriber named by userId (externalId) and the traits' email, with the
    other traits as attributes."""
    return await _apply(svc, who, [body], ["body"], None)


@post("alias")
async def alias(
    body: models.AliasBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """One alias call: previousId (an anonymousId or an earlier userId) is the person userId names; their
    profiles merge (docs/segment.md)."""
    return await _apply(svc, who, [body], ["body"], None)


@post("page")
async def page(
    body: models.PageBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """One page call: a `page.viewed` event with the page's name, category and properties."""
    return await _apply(svc, who, [body], ["body"], None)


@post("screen")
async def screen(
    body: models.ScreenBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """One screen call: a `screen.viewed` event, as a page call."""
    return await _apply(svc, who, [body], ["body"], None)


@post("group")
async def group(
    body: models.GroupBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> models.Accepted:
    """One group call: a `group.joined` event with the groupId and the group's traits; the person's
    `groupId` attribute."""
    return await _apply(svc, who, [body], ["body"], None)
