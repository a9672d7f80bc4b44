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
) -> dict[str, Any]:
    """Every metric of this workspace, in one page."""
    if not _matches_integration(filter):
        return jsonapi.collection([], request, None)

    def read(tx: Tx) -> list[dict[str, Any]]:
        return [metric_resource(request, m) for m in metrics.list_metrics(tx, who.workspace_id)]

    return jsonapi.collection(await svc.db.read(read), request, None)


@router.get("/metrics/{metric_id}")
async def get_metric(
    metric_id: str,
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    fields_metric: str | None = Query(None, alias="fields[metric]", max_length=2000),
) -> dict[str, Any]:
    found = await svc.db.read(lambda tx: metrics.find(tx, who.workspace_id, metric_id))
    if found is None:
        raise jsonapi.Problem(404, f"No metric with id {metric_id!r}.", parameter="id")
    return jsonapi.document(metric_resource(request, found), request)
