"""POST /api/metric-aggregates: Klaviyo's `Metrics.query_metric_aggregates`. The query is
core/aggregates.py (docs/analytics.md); this module reads Klaviyo's request and writes its answer.

`filter` must give a datetime range (`greater-or-equal(datetime,...)` or `greater-than`, and `less-than`
or `less-or-equal`); `equals(metric_id,"...")` may repeat the metric. As everywhere in Klaviyo filters
here, a datetime without an offset is UTC. `by` takes `$flow` (the sequence an email came from) or
`$attributed_flow` (the sequence an order was attributed to). One row per group, `page_size` rows at a
time: when more remain, `links.next` holds the cursor to send back as `page_cursor`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cartback.api import deps, scopes
from cartback.api.klaviyo import filters, jsonapi, principal
from cartback.core import aggregates

router = APIRouter(tags=["klaviyo metrics"])

FILTER = "/data/attributes/filter"
_LOWER = {"greater-or-equal": timedelta(0), "greater-than": timedelta(microseconds=1)}
_UPPER = {"less-than": timedelta(0), "less-or-equal": timedelta(microseconds=1)}


class AggregateAttributes(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metric_id: str = Field(min_length=1, max_length=100)
    measurements: list[Literal["count", "sum_value", "unique"]] = Field(min_length=1, max_length=3)
    filter: list[str] = Field(min_length=1, max_length=20)
    interval: Literal["hour", "day", "week", "month"] = "day"
    page_size: int = Field(500, ge=1, le=500)
    page_cursor: str | None = Field(None, max_length=4000)
    timezone: str = Field("UTC", max_length=64)
    by: list[str] | None = Field(None, max_length=5)
    return_fields: list[str] | None = None
    sort: str | None = Field(None, max_length=100)


class AggregateData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["metric-aggregate"]
    attributes: AggregateAttributes


class AggregateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: AggregateData


def time_range(texts: list[str], metric_id: str) -> tuple[datetime, datetime]:
    """[start, end) from the filter strings."""
    start: datetime | None = None
    end: datetime | None = None
    for text in texts:
        try:
            conds = filters.conditions(text)
            for cond in conds:
                if cond.field == "datetime" and cond.op in _LOWER:
                    start = filters.as_datetime(cond.value) + _LOWER[cond.op]
                elif cond.field == "datetime" and cond.op in _UPPER:
                    end = filters.as_datetime(cond.value) + _UPPER[cond.op]
                elif cond.field == "metric_id" and cond.op == "equals":
                    if cond.value != metric_id:
                        raise filters.FilterError("equals(metric_id,...) names another metric than metric_id")
                else:
                    raise filters.FilterError(
                        f"{cond.op}({cond.field},...) is not supported here: filter on datetime"
                    )
        except filters.FilterError as exc:
            raise jsonapi.Problem(400, f"Invalid filter: {exc}", pointer=FILTER) from exc
    if start is None or end is None:
        raise jsonapi.Problem(
            400,
            "filter must give a datetime range: greater-or-equal(datetime,...) and less-than(datetime,...)",
            pointer=FILTER,
        )
    return start, end


# A query, though POSTed: a read-only key may ask it.
@router.post("/metric-aggregates", **scopes.requires(scopes.READ))
async def query_metric_aggregates(
    body: AggregateBody,
    request: Request,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
) -> dict[str, Any]:
    """Count, sum of value and unique profiles of one metric per interval, in total or by flow."""
    attrs = body.data.attributes
    start, end = time_range(attrs.filter, attrs.metric_id)
    offset = 0
    cursor = jsonapi.page_cursor(attrs.page_cursor)
    if cursor is not None:
        (offset,) = jsonapi.decode_cursor(cursor, 1)
        if not isinstance(offset, int) or offset < 0:
            raise jsonapi.Problem(
                400, "page_cursor is not a valid cursor", pointer="/data/attributes/page_cursor"
            )

    query = aggregates.Query(
        name=attrs.metric_id,
        measurements=tuple(dict.fromkeys(attrs.measurements)),
        start=start,
        end=end,
        interval=attrs.interval,
        timezone=attrs.timezone,
        by=tuple(attrs.by or ()),
    )
    result = await svc.db.read(lambda tx: aggregates.aggregate_metric(tx, who.workspace_id, query))
    if result is None:
        raise jsonapi.Problem(
            404, f"No metric with id {attrs.metric_id!r}.", pointer="/data/attributes/metric_id"
        )
    rows = result.rows[offset : offset + attrs.page_size]
    more = offset + attrs.page_size < len(result.rows)
    url = f"{jsonapi.base_url(request)}/api/metric-aggregates"
    attributes = {
        "dates": [d.isoformat() for d in result.dates],
        "data": [{"dimensions": r.dimensions, "measurements": r.measurements} for r in rows],
    }
    links: dict[str, Any] = {"self": url}
    if more:
        links["next"] = jsonapi.encode_cursor([offset + attrs.page_size])
    return {"data": jsonapi.resource("metric-aggregate", str(uuid.uuid4()), attributes, url), "links": links}
