"""People: search subscribers; a profile with attributes, order totals, events, enrollments (each step's
state and why runs skipped or stopped), messages, and an explain panel for a chosen sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from cartback import errors
from cartback.api import deps
from cartback.core import automations, orders
from cartback.dashboard import steps, web
from cartback.store import enrollments, events, messages, sequences, subscribers
from cartback.store.db import Tx

router = APIRouter()
NAV = ("/app/people", "People")
PAGE = 50


@router.get("/people")
async def search(
    request: Request,
    q: str = Query("", max_length=200),
    page: int = Query(1, ge=1, le=10_000),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    where = subscribers.Filter(query=q.strip() or None)

    def read(tx: Tx) -> tuple[list[subscribers.Subscriber], int]:
        found = subscribers.search(tx, viewer.workspace_id, where, limit=PAGE + 1, offset=(page - 1) * PAGE)
        return found, subscribers.count(tx, viewer.workspace_id, where) if q.strip() else -1

    found, total = await deps.services_of(request).db.read(read)
    return web.render(
        request,
        "people.html",
        {"q": q, "people": found[:PAGE], "more": len(found) > PAGE, "page": page, "total": total},
    )


@dataclass(frozen=True)
class Run:
    enrollment: enrollments.Enrollment
    sequence_name: str
    steps: list[steps.StepState]


def _profile(tx: Tx, workspace_id: str, subscriber_id: str) -> dict[str, Any]:
    sub = subscribers.find_by_id(tx, workspace_id, subscriber_id)
    if sub is None:
        raise errors.NotFound(f"No person {subscriber_id!r} in this workspace.")
    sub = subscribers.with_tags(tx, sub)
    runs = enrollments.for_subscriber(tx, workspace_id, sub.id)
    seqs = sequences.by_ids(tx, workspace_id, sorted({r.sequence_id for r in runs}))
    all_sequences, _ = sequences.listing(tx, workspace_id, limit=200)
    sent, _ = messages.listing(tx, workspace_id, subscriber_id=sub.id, limit=50)
    return {
        "person": sub,
        # The same figures as the subscriber's ordersCount / totalSpent attributes (core/orders.py).
        "totals": orders.totals_for(tx, workspace_id, sub.id),
        "timeline": events.list_for_subscriber(tx, workspace_id, sub.id, limit=100),
        "runs": [
            Run(
                r,
                seqs[r.sequence_id].name if r.sequence_id in seqs else r.sequence_id,
                steps.progress(
                    seqs[r.sequence_id].definition if r.sequence_id in seqs else {},
                    r,
                    enrollments.history(tx, workspace_id, r.id),
                ),
            )
            for r in reversed(runs)
        ],
        "messages": sent,
        "sequences": all_sequences,
    }


def _explain(tx: Tx, workspace_id: str, subscriber_id: str, sequence_id: str) -> dict[str, Any]:
    seq = sequences.get(tx, workspace_id, sequence_id)
    sub = subscribers.find_by_id(tx, workspace_id, subscriber_id)
    if seq is None or sub is None:
        raise errors.NotFound("No such person or sequence in this workspace.")
    return {"explained": automations.explain(tx, seq, sub), "explained_sequence": seq}


@router.get("/people/{subscriber_id}")
async def profile(
    request: Request,
    subscriber_id: str,
    sequence: str = Query("", max_length=64),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    subscriber_id = web.object_id(subscriber_id, "person")

    def read(tx: Tx) -> dict[str, Any]:
        page = _profile(tx, viewer.workspace_id, subscriber_id)
        if sequence:
            page.update(_explain(tx, viewer.workspace_id, subscriber_id, web.object_id(sequence, "sequence")))
        return page

    return web.render(request, "person.html", await deps.services_of(request).db.read(read))


@router.get("/people/{subscriber_id}/explain")
async def explain(
    request: Request,
    subscriber_id: str,
    sequence: str = Query(..., max_length=64),
    viewer: web.Viewer = Depends(web.viewer),
) -> Response:
    """The explain panel alone, for htmx to swap in; the profile page renders the same with ?sequence=."""
    subscriber_id = web.object_id(subscriber_id, "person")
    sequence_id = web.object_id(sequence, "sequence")
    found = await deps.services_of(request).db.read(
        lambda tx: _explain(tx, viewer.workspace_id, subscriber_id, sequence_id)
    )
    return web.render(request, "_explain.html", found)
