"""GET /api/metrics and GET /api/metrics/{id}: one metric per event name the workspace has (see
core/metrics.py), with stable ids. Every metric's integration is "API"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from cartback.api import deps
from cartback.api.klaviyo import filters, jsonapi, principal
from cartback.core import metrics

router = APIRouter(tags=["klaviyo metrics"])

Who = deps.Principal
Svc = deps.Services

INTEGRATION = {"object": "integration", "id": "cartback", "key": "api", "name": "API", "category": "API"}
_INTEGRATION_FILTERS = {"integration.name": "name", "integration.category": "category"}
# What Klaviyo's spec lists for the metric endpoints: the flows the metric triggers, which in cartback
# are the live sequences triggered by the metric's event.
_INCLUDES = ("flow-triggers",)


def flow_resource(request: Request, seq: Any) -> dict[str, Any]:
    attributes = {
        "name": seq.name,
        # Only live sequences trigger; Klaviyo calls a running flow "live".
        "status": "live",
        "archived": False,
        "created": jsonapi.iso(seq.created_at),
        "updated": jsonapi.iso(seq.updated_at),
        "trigger_type": "Metric",
    }
    return jsonapi.resource("flow", seq.id, attributes, f"{jsonapi.base_url(request)}/api/flows/{seq.id}")


def _with_includes(
    request: Request, found: list[metrics.MetricView], wanted: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The metrics as resources, with their flow-triggers when asked (None: nothing was)."""
    data = [metric_resource(request, m.metric) for m in found]
    if not wanted:
        return data, None
    included: dict[str, dict[str, Any]] = {}
    for view, resource in zip(found, data, strict=True):
        flows = view.flows or []
        resource["relationships"] = {"flow-triggers": jsonapi.to_many("flow", [f.id for f in flows])}
        included.update((f.id, flow_resource(request, f)) for f in flows)
    return data, list(included.values())


def metric_resource(request: Request, metric: metrics.Metric) -> dict[str, Any]:
    attributes = {
        "name": metric.name,
        # Strings, not datetimes: the SDK's metric model types them as str.
        "created": jsonapi.iso(metric.created),
        "updated": jsonapi.iso(metric.updated),
        "integration": dict(INTEGRATION),
    }
    url = f"{jsonapi.base_url(request)}/api/metrics/{metric.id}"
    return jsonapi.resource("metric", metric.id, attributes, url)


def _matches_integration(text: str | None) -> bool:
    """Whether cartback's one integration passes the filter (integration.name / .category equals)."""
    if not text:
        return True
    try:
        conds = filters.conditions(text)
    except filters.FilterError as exc:
        raise jsonapi.Problem(400, f"Invalid filter: {exc}", parameter="filter") from exc
    ok = True
    for cond in conds:
        if cond.op != "equals" or cond.field not in _INTEGRATION_FILTERS:
            raise jsonapi.Problem(
                400,
                f"Invalid filter: {cond.op}({cond.field},...) is not supported on metrics",
                parameter="filter",
            )
        ok = ok and cond.value == INTEGRATION[_INTEGRATION_FILTERS[cond.field]]
    return ok


@router.get("/metrics")
async def get_metrics(
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    filter: str | None = Query(None, max_length=2000),
    page_cursor: str | None = Query(None, alias="page[cursor]", max_length=4000),
    fields_metric: str | None = Query(None, alias="fields[metric]", max_length=2000),
    include: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    """Every metric of this workspace, in one page."""
    wanted = jsonapi.includes(include, _INCLUDES)
    if not _matches_integration(filter):
        return jsonapi.collection([], request, None, [] if wanted else None)

    found = await svc.db.read(lambda tx: metrics.read_metrics(tx, who.workspace_id, None, flows=bool(wanted)))
    data, included = _with_includes(request, found, wanted)
    return jsonapi.collection(data, request, None, included)


@router.get("/metrics/{metric_id}")
async def get_metric(
    metric_id: str,
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    fields_metric: str | None = Query(None, alias="fields[metric]", max_length=2000),
    include: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    wanted = jsonapi.includes(include, _INCLUDES)

    found = await svc.db.read(
        lambda tx: metrics.read_metrics(tx, who.workspace_id, metric_id, flows=bool(wanted))
    )
    if not found:
        raise jsonapi.Problem(404, f"No metric with id {metric_id!r}.", parameter="id")
    [data], included = _with_includes(request, found, wanted)
    return jsonapi.document(data, request, included=included)
