"""Sequences (automations): definitions, enabling, enrollments, stats, simulate and explain."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import ConfigDict, Field

from cartback import errors
from cartback.api import deps
from cartback.api.sequenzy import analytics as analytics_api
from cartback.api.sequenzy import models, principal
from cartback.core import analytics, sequence_views, sequences
from cartback.core import enrollments as core_enrollments
from cartback.core.sequence_views import Enrollment, Sequence, Subscriber

router = APIRouter(tags=["sequences"])


class SequenceBody(models.WireModel):
    """Sequenzy's SequenceDefinition. Keys not listed here pass through to the definition parser."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(None, max_length=255)
    description: str | None = None
    trigger: str | None = None
    event_name: str | None = None
    property_filters: list[dict[str, Any]] | None = None
    enrollment_mode: str | None = None
    enrollment_field_path: str | None = None
    stop_condition: dict[str, Any] | None = None
    sending_window: dict[str, Any] | None = None
    steps: list[dict[str, Any]] | None = Field(None, max_length=sequences.MAX_STEPS)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_unset=True)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def effective_status(seq: Sequence) -> str:
    if seq.status == "active":
        return "enrollment_paused" if seq.enrollment_paused else "live"
    return seq.status


def serialize(seq: Sequence) -> dict[str, Any]:
    definition = sequences.Definition(seq.definition)
    data = definition.data
    nodes = data["nodes"]
    edges = []
    for node in nodes:
        for key, condition in (("next", None), ("elseNext", "else"), ("timeoutNext", "timeout")):
            if node.get(key):
                edges.append({"sourceNodeId": node["id"], "targetNodeId": node[key], "condition": condition})
    trigger_config = {
        k: data[k]
        for k in ("eventName", "propertyFilters", "tagName", "tagNames", "listId", "listIds")
        if data.get(k) is not None
    }
    return {
        "id": seq.id,
        "name": seq.name,
        "description": seq.description,
        "status": seq.status,
        "effectiveStatus": effective_status(seq),
        "trigger": definition.trigger,
        "triggerConfig": trigger_config,
        **trigger_config,
        "enrollmentMode": data.get("enrollmentMode"),
        "enrollmentFieldPath": data.get("enrollmentFieldPath"),
        "activeSubscribersOnly": bool(data.get("activeSubscribersOnly")),
        "stopCondition": data.get("stopCondition") or {"type": "none"},
        "stopOnOrder": bool(data.get("stopOnOrder")),
        "sendingWindow": data.get("sendingWindow"),
        "frequencyCapEnabled": bool(data.get("frequencyCapEnabled")),
        "enrollmentPaused": seq.enrollment_paused,
        "acceptsNewEnrollments": seq.status == "active" and not seq.enrollment_paused,
        "processesExistingEnrollments": seq.status == "active",
        "fromEmail": data.get("fromEmail"),
        "fromName": data.get("fromName"),
        "labels": data.get("labels") or [],
        "emailCount": definition.email_count,
        "nodeCount": len(nodes),
        "emails": [
            {
                "id": n["id"],
                "nodeId": n["id"],
                **{k: n["config"].get(k) for k in ("subject", "previewText", "html", "text")},
            }
            for n in nodes
            if n["type"] == "email"
        ],
        "nodes": [
            {
                "id": n["id"],
                "nodeType": sequences.WIRE_NODE_TYPES.get(n["type"], n["type"]),
                "type": n["type"],
                "config": n["config"],
                "position": {"x": 0, "y": i * 120},
            }
            for i, n in enumerate(nodes)
        ],
        "entryNodeId": definition.entry,
        "edges": edges,
        "graphRevision": str(seq.revision),
        "createdAt": _iso(seq.created_at),
        "updatedAt": _iso(seq.updated_at),
    }


def _action(seq: Sequence, message: str) -> dict[str, Any]:
    return {
        "success": True,
        "message": message,
        "sequenceId": seq.id,
        "status": seq.status,
        "effectiveStatus": effective_status(seq),
        "enrollmentPaused": seq.enrollment_paused,
        "acceptsNewEnrollments": seq.status == "active" and not seq.enrollment_paused,
        "processesExistingEnrollments": seq.status == "active",
        "warnings": [],
    }


@router.post("/sequences")
async def create_sequence(
    body: SequenceBody, who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    """Create a sequence as a draft; `POST /sequences/{id}/enable` makes it live."""
    now, wire = svc.clock.now(), body.wire()
    saved = await svc.db.write(lambda tx: sequence_views.create(tx, who.workspace_id, wire, now))
    seq, notes = saved.seq, saved.warnings
    definition = sequences.Definition(seq.definition)
    return {
        "success": True,
        "message": "sequence created as a draft; enable it to start enrolling",
        "sequence": serialize(seq),
        "warnings": notes,
        "requiredEvents": [definition.trigger_event] if definition.trigger == "event_received" else [],
    }


@router.get("/sequences")
async def list_sequences(
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    status: Literal["draft", "active", "paused", "archived"] | None = None,
    search: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=100),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> dict[str, Any]:
    query = sequence_views.ListQuery(status, search, limit, offset)
    now = svc.clock.now()
    items, total = await svc.db.read(lambda tx: sequence_views.listing(tx, who.workspace_id, query, now))
    if status is None:
        items = [s for s in items if s.status != "archived"]
    return {
        "success": True,
        "sequences": [serialize(s) for s in items],
        "pagination": {
            "limit": limit,
            "offset": offset,
            "count": len(items),
            "total": total,
            "hasMore": offset + len(items) < total,
        },
    }


@router.get("/sequences/{sequence_id}")
async def get_sequence(
    sequence_id: str, who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    now = svc.clock.now()
    seq = await svc.db.read(lambda tx: sequence_views.get(tx, who.workspace_id, sequence_id, now))
    return {"success": True, "sequence": serialize(seq)}


@router.put("/sequences/{sequence_id}")
async def update_sequence(
    sequence_id: str,
    body: SequenceBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> dict[str, Any]:
    """Change a definition. `steps` replaces the steps; live enrollments continue from their current step
    if it still exists, else they fail with that reason."""
    change = sequence_views.Update(sequence_id, body.wire())
    now = svc.clock.now()
    saved = await svc.db.write(lambda tx: sequence_views.update(tx, who.workspace_id, change, now))
    return {"success": True, "sequence": serialize(saved.seq), "warnings": saved.warnings}


async def _set_status(svc: deps.Services, who: deps.Principal, sequence_id: str, status: str) -> Sequence:
    now, change = svc.clock.now(), sequence_views.StatusChange(sequence_id, status)
    return await svc.db.write(lambda tx: sequence_views.set_status(tx, who.workspace_id, change, now))


@router.post("/sequences/{sequence_id}/enable")
async def enable_sequence(
    sequence_id: str, who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    """Go live: new trigger events enroll, and existing enrollments run."""
    return _action(await _set_status(svc, who, sequence_id, "active"), "sequence enabled")


@router.post("/sequences/{sequence_id}/disable")
async def disable_sequence(
    sequence_id: str, who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    """Pause: nobody new enrolls and existing enrollments hold where they are until it is enabled again."""
    return _action(await _set_status(svc, who, sequence_id, "paused"), "sequence paused")


@router.delete("/sequences/{sequence_id}")
async def delete_sequence(
    sequence_id: str, who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    """Archive: the sequence stops for good and its live enrollments are cancelled; its history stays."""
    return _action(await _set_status(svc, who, sequence_id, "archived"), "sequence archived")


# -- enrollments ------------------------------------------------------------------------------------


def _enrollment_item(
    e: Enrollment, subs: dict[str, Subscriber], definition: sequences.Definition
) -> dict[str, Any]:
    sub = subs.get(e.subscriber_id)
    node = definition.nodes.get(e.current_node_id or "")
    return {
        "enrollmentId": e.id,
        "enrollmentKey": e.dedupe_key,
        "sequenceId": e.sequence_id,
        "subscriberId": e.subscriber_id,
        "email": sub.email if sub else None,
        "firstName": sub.first_name if sub else None,
        "lastName": sub.last_name if sub else None,
        "subscriberStatus": sub.status if sub else None,
        "status": e.status,
        "currentNodeId": e.current_node_id,
        "currentNodeType": node["type"] if node else None,
        "currentNodeLabel": (node["config"].get("label") or node["config"].get("subject")) if node else None,
        "currentNodeMissing": bool(e.current_node_id) and node is None,
        "enrollmentStartedAt": _iso(e.created_at),
        "waitUntil": _iso(e.next_run_at),
        "lastUpdatedAt": _iso(e.updated_at),
        "finishedAt": _iso(e.finished_at),
        "failedReason": e.stop_reason if e.status == "failed" else None,
        "stopReason": e.stop_reason if e.status in ("stopped", "cancelled") else None,
        "triggerEventId": e.trigger_event_id,
    }


@router.get("/sequences/{sequence_id}/enrollments")
async def list_enrollments(
    sequence_id: str,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    status: str | None = Query(None, max_length=200),
    email: str | None = Query(None, max_length=320),
    subscriber_id: str | None = Query(None, alias="subscriberId", max_length=60),
    current_node_id: str | None = Query(None, alias="currentNodeId", max_length=60),
    sort: Literal[
        "enrolled_at_desc", "enrolled_at_asc", "wait_until_asc", "wait_until_desc"
    ] = "enrolled_at_desc",
    limit: int = Query(50, ge=1, le=100),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> dict[str, Any]:
    query = sequence_views.EnrollmentQuery(
        sequence_id, status, email, subscriber_id, current_node_id, sort, limit, offset
    )
    now = svc.clock.now()
    page = await svc.db.read(lambda tx: sequence_views.enrollments(tx, who.workspace_id, query, now))
    seq, items = page.seq, page.enrollments
    definition = sequences.Definition(seq.definition)
    return {
        "success": True,
        "sequenceId": seq.id,
        "sequenceName": seq.name,
        "enrollments": [_enrollment_item(e, page.subscribers, definition) for e in items],
        "pagination": {
            "limit": limit,
            "offset": offset,
            "total": page.total,
            "hasMore": offset + len(items) < page.total,
        },
        "statuses": ["active", "waiting", "completed", "stopped", "cancelled", "failed"],
        "stopCondition": definition.data.get("stopCondition") or {"type": "none"},
    }


@router.get("/sequences/{sequence_id}/enrollments/{enrollment_id}")
async def get_enrollment(
    sequence_id: str,
    enrollment_id: str,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> dict[str, Any]:
    ref = sequence_views.EnrollmentRef(sequence_id, enrollment_id)
    now = svc.clock.now()
    view = await svc.db.read(lambda tx: sequence_views.enrollment(tx, who.workspace_id, ref, now))
    seq = view.seq
    definition = sequences.Definition(seq.definition)
    return {
        "success": True,
        "sequenceId": seq.id,
        "sequenceName": seq.name,
        "enrollment": _enrollment_item(view.enrollment, view.subscribers, definition),
        "nodeHistory": [
            {
                "nodeId": h.node_id,
                "eventType": h.action,
                "eventTime": _iso(h.at),
                "detail": h.detail,
                "nodeType": (definition.nodes.get(h.node_id or "") or {}).get("type"),
            }
            for h in view.history
        ],
        "historySource": "node_events",
        "stopCondition": definition.data.get("stopCondition") or {"type": "none"},
    }


class CancelBody(models.WireModel):
    subscriber_id: str | None = None
    subscriber_ids: list[str] | None = Field(None, max_length=1000)
    cancel_all: bool | None = None
    field_path: str | None = None
    field_values: list[str] | None = Field(None, max_length=1000)
    reason: str | None = Field(None, max_length=500)
    dry_run: bool | None = None


@router.post("/sequences/{sequence_id}/enrollments/cancel")
async def cancel_enrollments(
    sequence_id: str,
    body: CancelBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> dict[str, Any]:
    """Cancel live enrollments by subscriber, by a field of the enrolling event, or all of them: at most
    CARTBACK_CANCEL_PAGE_SIZE per call; `remainingCount` says how many still match (call again while
    `hasMore`)."""
    request = core_enrollments.CancelRequest(
        subscriber_ids=[*(body.subscriber_ids or []), *([body.subscriber_id] if body.subscriber_id else [])],
        cancel_all=bool(body.cancel_all),
        field_path=body.field_path,
        field_values=body.field_values or [],
        reason=body.reason,
        dry_run=bool(body.dry_run),
    )
    now, page_size = svc.clock.now(), svc.settings.cancel_page_size
    result = await svc.db.write(
        lambda tx: core_enrollments.cancel(
            tx, who.workspace_id, sequence_id, request, now, page_size=page_size
        )
    )
    return {
        "success": True,
        "sequenceId": result.sequence_id,
        "dryRun": result.dry_run,
        "matchedCount": len(result.enrollments),
        "cancelledCount": 0 if result.dry_run else len(result.enrollments),
        "remainingCount": result.remaining,
        "hasMore": result.has_more,
        "enrollments": [
            {
                "tokenId": e.id,
                "enrollmentKey": e.dedupe_key,
                "subscriberId": e.subscriber_id,
                "subscriberEmail": result.emails.get(e.subscriber_id),
                "status": e.status if result.dry_run else "cancelled",
            }
            for e in result.enrollments
        ],
    }


# -- stats, simulate, explain ---------------------------------------------------------------------


@router.get("/sequences/{sequence_id}/stats")
async def sequence_stats(
    sequence_id: str,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    period: Literal["1h", "24h", "7d", "30d", "90d"] | None = None,
    start: models.UtcDateTime | None = None,
    end: models.UtcDateTime | None = None,
    include_machine_engagement: bool | None = Query(None, alias="includeMachineEngagement"),
) -> dict[str, Any]:
    """Per sequence and step: enrolled, active, completed, stopped (by reason); and for emails of the
    period: sent, delivered, opened, clicked, unsubscribed, recovered checkouts and revenue."""
    begin, stop, label = analytics_api.window(svc.clock.now(), period, start, end, None)

    query = sequence_views.StatsQuery(sequence_id, begin, stop)
    now = svc.clock.now()
    found = await svc.db.read(lambda tx: sequence_views.stats(tx, who.workspace_id, query, now))
    seq = found.seq
    figures = analytics_api.sequence_figures(found.report, seq.id)
    step_stats = {s["nodeId"]: s["stats"] for s in figures["steps"]}
    definition = sequences.Definition(seq.definition)
    counts = found.counts
    by_node: dict[str | None, dict[str, int]] = {}
    for node_id, status, n in found.by_node:
        slot = by_node.setdefault(node_id, {"total": 0, "active": 0, "waiting": 0})
        slot["total"] += n
        slot[status] += n
    history = found.history
    steps = []
    # Email steps by their own number (Sequenzy's stepNumber, as the dashboard shows them); `step`
    # and structuralStepNumber are the node's place in the graph, waits included.
    numbers = {node_id: number for number, node_id, _ in analytics.step_order(definition.data)}
    for i, node in enumerate(definition.data["nodes"], start=1):
        steps.append(
            {
                "step": i,
                "structuralStepNumber": i,
                "stepNumber": numbers.get(node["id"]),
                "nodeId": node["id"],
                "type": node["type"],
                "subject": node["config"].get("subject"),
                # The same figure as stats.sent: emails of the period handed to the transport.
                "sent": (step_stats.get(node["id"]) or {}).get("sent", 0),
                "skipped": history.get((node["id"], "skipped"), 0),
                "failedCount": history.get((node["id"], "failed"), 0),
                "stats": step_stats.get(node["id"]) or {"sent": 0},
            }
        )
    total = sum(counts.values())
    return {
        "success": True,
        "sequenceId": seq.id,
        "period": label,
        "enrollmentCounts": {
            "total": total,
            "active": counts.get("active", 0),
            "waiting": counts.get("waiting", 0),
            "completed": counts.get("completed", 0),
            "stopped": counts.get("stopped", 0),
            "cancelled": counts.get("cancelled", 0),
            "failed": counts.get("failed", 0),
            "byCurrentNode": [
                {"currentNodeId": node_id, "currentNodeMissing": node_id not in definition.nodes, **v}
                for node_id, v in by_node.items()
                if node_id is not None
            ],
        },
        "stoppedByReason": found.stop_reasons,
        "stats": figures["stats"],
        "steps": steps,
    }


@router.get("/sequences/{sequence_id}/simulate")
async def simulate_sequence(
    sequence_id: str,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    email: str | None = Query(None, max_length=320),
    subscriber_id: str | None = Query(None, alias="subscriberId", max_length=60),
    event_id: str | None = Query(None, alias="eventId", max_length=60),
    limit: int = Query(20, ge=1, le=100),
) -> dict[str, Any]:
    """Run the definition on paper against the subscriber's latest trigger event (or `eventId`): whether it
    would enroll and why, and each step with its email rendered. Nothing is sent or stored."""
    now = svc.clock.now()
    query = sequence_views.PersonQuery(sequence_id, email, subscriber_id, event_id)
    seq, result = await svc.db.read(lambda tx: sequence_views.simulate(tx, who.workspace_id, query, now))
    result["path"] = {"steps": result["path"][:limit]}
    return {
        "success": True,
        "sequenceId": seq.id,
        "sequenceName": seq.name,
        "status": seq.status,
        **result,
    }


@router.get("/sequences/{sequence_id}/explain")
async def explain_sequence(
    sequence_id: str,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    email: str | None = Query(None, max_length=320),
    subscriber_id: str | None = Query(None, alias="subscriberId", max_length=60),
) -> dict[str, Any]:
    """Why a subscriber was or was not enrolled (which filter failed, which mode blocked), and why each of
    their runs skipped or stopped a step. cartback's own endpoint."""
    if not email and not subscriber_id:
        raise errors.InvalidInput("give email or subscriberId")

    query = sequence_views.PersonQuery(sequence_id, email, subscriber_id)
    now = svc.clock.now()
    found = await svc.db.read(lambda tx: sequence_views.explain(tx, who.workspace_id, query, now))
    return {"success": True, **found}


# -- frequency cap -----------------------------------------------------------------------------------


class FrequencyCapBody(models.WireModel):
    max_emails: int = Field(ge=1, le=1000)
    window_hours: int = Field(ge=1, le=24 * 90)
    action: Literal["skip", "delay"] = "skip"


def _cap(cap: sequence_views.FrequencyCap | None) -> dict[str, Any]:
    if cap is None:
        return {"success": True, "frequencyCap": None}
    return {
        "success": True,
        "frequencyCap": {"maxEmails": cap.max_emails, "windowHours": cap.window_hours, "action": cap.action},
    }


@router.get("/frequency-cap")
async def get_frequency_cap(
    who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    now = svc.clock.now()
    return _cap(await svc.db.read(lambda tx: sequence_views.frequency_cap(tx, who.workspace_id, None, now)))


@router.put("/frequency-cap")
async def put_frequency_cap(
    body: FrequencyCapBody,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> dict[str, Any]:
    """At most `maxEmails` marketing emails per subscriber per `windowHours` from sequences that enable the
    cap (Klaviyo's smart sending is 1 per 16 h); over the cap a step is skipped or delayed (`action`)."""
    now, cap = svc.clock.now(), sequence_views.FrequencyCap(body.max_emails, body.window_hours, body.action)
    return _cap(
        await svc.db.write(lambda tx: sequence_views.put_frequency_cap(tx, who.workspace_id, cap, now))
    )


@router.delete("/frequency-cap")
async def delete_frequency_cap(
    who: deps.Principal = Depends(principal), svc: deps.Services = Depends(deps.services)
) -> dict[str, Any]:
    now = svc.clock.now()
    await svc.db.write(lambda tx: sequence_views.delete_frequency_cap(tx, who.workspace_id, None, now))
    return {"success": True, "frequencyCap": None}
