"""GET /api/metrics and GET /api/metrics/{id}: one metric per event name the workspace has (see
core/metrics.py), with stable ids. Every metric's integration is "API"."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from cartback.api import deps
from cartback.api.klaviyo import filters, jsonapi, principal
from cartback.core import metrics
from cartback.store.db import Tx

router = APIRouter(tags=["klaviyo metrics"])

Who = deps.Principal
Svc = deps.Services

INTEGRATION = {"object": "integration", "id": "cartback", "key": "api", "name": "API", "category": "API"}
_INTEGRATION_FILTERS = {"integration.name": "name", "integration.category": "category"}
# What Klaviyo's spec lists for the metric endpoints. A flow-trigger is a Klaviyo flow started by the
# metric; cartback's sequences are not served as Klaviyo flows, so the relationship is always empty.
_INCLUDES = ("flow-triggers",)


def _with_includes(data: list[dict[str, Any]], wanted: list[str]) -> list[dict[str, Any]] | None:
    if not wanted:
        return None
    for resource in data:
        resource.setdefault("relationships", {})["flow-triggers"] = jsonapi.to_many("flow", [])
    return []


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
        return jsonapi.collection([], request, None, _with_includes([], wanted))

    def read(tx: Tx) -> list[dict[str, Any]]:
        return [metric_resource(request, m) for m in metrics.list_metrics(tx, who.workspace_id)]

    data = await svc.db.read(read)
    return jsonapi.collection(data, request, None, _with_includes(data, wanted))


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
    found = await svc.db.read(lambda tx: metrics.find(tx, who.workspace_id, metric_id))
    if found is None:
        raise jsonapi.Problem(404, f"No metric with id {metric_id!r}.", parameter="id")
    data = metric_resource(request, found)
    return jsonapi.document(data, request, included=_with_includes([data], wanted))
