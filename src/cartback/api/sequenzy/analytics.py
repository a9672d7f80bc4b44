"""Analytics under /api/v1: Sequenzy's `/metrics/sequences/{id}` and `/metrics/breakdown` (the SDK's
`analytics.get_sequence_metrics` and `get_metrics_breakdown`), the figures `/sequences/{id}/stats` adds, and
cartback's own `GET /analytics/recovery`: recovered checkouts and revenue per currency, per sequence and
step, over time. The figures are defined in docs/analytics.md."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from cartback import errors
from cartback.api import deps
from cartback.api.sequenzy import models, principal
from cartback.core import analytics, reports

router = APIRouter(tags=["analytics"])

PERIODS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
Period = Literal["1h", "24h", "7d", "30d", "90d"]
# "All time" when neither a period nor a start is given: before any data cartback can hold.
EPOCH = analytics.EPOCH


def window(
    now: datetime, period: str | None, start: datetime | None, end: datetime | None, default: str | None
) -> tuple[datetime, datetime, str]:
    """[start, end) and the period label Sequenzy echoes: explicit start/end win over `period`."""
    try:
        stop = end or now + timedelta(seconds=1)
        if start is not None:
            begin, label = start, "custom"
        elif period or default:
            label = period or default or ""
            begin = stop - PERIODS[label]
        else:
            begin, label = EPOCH, "all"
    except OverflowError as exc:
        raise errors.InvalidInput("start or end is out of range") from exc
    if stop <= begin:
        raise errors.InvalidInput("end must be after start")
    return begin, stop, label


# -- Sequenzy's shapes ----------------------------------------------------------------------------------


def engagement(t: analytics.Tally) -> dict[str, Any]:
    """Sequenzy's EngagementStats. `revenueCents` is a single number in the SDK, so it is given only when
    every recovered order was in one currency; `revenueByCurrency` always has each currency apart.
    `kept` (emails the outbox stored because no mail server is set) is cartback's own key: Sequenzy has no
    such status, and such an email is in none of its figures or rates."""
    out: dict[str, Any] = {
        "sent": t.sent,
        "delivered": t.delivered,
        "kept": t.kept,
        "opened": t.opened,
        "clicked": t.clicked,
        "bounced": t.bounced,
        "unsubscribed": t.unsubscribed,
        "deliveryRate": analytics.rate(t.delivered, t.sent),
        "openRate": analytics.rate(t.opened, t.delivered),
        "clickRate": analytics.rate(t.clicked, t.delivered),
        "bounceRate": analytics.rate(t.bounced, t.sent),
        "unsubscribeRate": analytics.rate(t.unsubscribed, t.delivered),
        "rateDenominator": t.delivered,
        "rateDenominatorBasis": "delivered" if t.delivered else "none",
        "conversions": t.recovered,
        "checkoutsStarted": t.checkouts_started,
        "checkoutsAbandoned": t.abandoned,
        "checkoutsRecovered": t.recovered,
        "recoveryRate": analytics.rate(t.recovered, t.abandoned),
        "revenueByCurrency": t.revenue_json(),
    }
    if len(t.revenue) == 1:
        out["revenueCents"] = next(iter(t.revenue.values()))[1]
    return out


def sequence_figures(report: analytics.Report, sequence_id: str) -> dict[str, Any]:
    """`stats` and `steps[]` of one sequence, as get_stats and get_sequence_metrics return them."""
    seq = report.sequences.get(sequence_id) or analytics.Slice()
    _, definition = report.names.get(sequence_id, ("", {}))
    steps = []
    for number, node_id, subject in analytics.step_order(definition):
        slot = report.steps.get((sequence_id, node_id)) or analytics.Slice()
        steps.append({"step": number, "nodeId": node_id, "subject": subject, "stats": engagement(slot.total)})
    return {"stats": engagement(seq.total), "steps": steps}


def breakdown_rows(report: analytics.Report, by: str) -> list[dict[str, Any]]:
    rows: list[tuple[str, str, dict[str, Any], analytics.Tally]] = []
    if by == "sequence":
        for seq_id, slot in report.sequences.items():
            name = report.names.get(seq_id, (seq_id, {}))[0]
            rows.append((seq_id, name, {"sequenceId": seq_id}, slot.total))
    else:
        for (seq_id, node_id), slot in report.steps.items():
            name, definition = report.names.get(seq_id, (seq_id, {}))
            subject = next((s for _, n, s in analytics.step_order(definition) if n == node_id), None)
            label = f"{name}: {subject}" if subject else f"{name}: {node_id}"
            rows.append((f"{seq_id}:{node_id}", label, {"sequenceId": seq_id, "nodeId": node_id}, slot.total))
    out = []
    for key, label, where, t in sorted(rows, key=lambda r: (-r[3].sent, r[0])):
        stats = engagement(t)
        out.append(
            {
                "key": key,
                "label": label,
                "filter": where,
                **{
                    k: stats[k]
                    for k in ("sent", "delivered", "kept", "opened", "clicked", "bounced", "unsubscribed")
                },
                "complained": t.complained,
                **{
                    k: stats[k]
                    for k in ("deliveryRate", "openRate", "clickRate", "bounceRate", "unsubscribeRate")
                },
                "conversions": t.recovered,
                "revenueByCurrency": t.revenue_json(),
            }
        )
    return out


@router.get("/metrics/sequences/{sequence_id}")
async def sequence_metrics(
    sequence_id: str,
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    period: Period | None = None,
    start: models.UtcDateTime | None = None,
    end: models.UtcDateTime | None = None,
    include_machine_engagement: bool | None = Query(None, alias="includeMachineEngagement"),
) -> dict[str, Any]:
    """Engagement and recovered revenue of one sequence and each of its email steps."""
    begin, stop, label = window(svc.clock.now(), period, start, end, None)

    query = reports.FiguresQuery(begin, stop, sequence_id=sequence_id)
    found = await svc.db.read(lambda tx: reports.figures(tx, who.workspace_id, query, svc.clock.now()))
    seq_id = found.seq.id if found.seq else sequence_id
    return {"success": True, "sequenceId": seq_id, "period": label, **sequence_figures(found.report, seq_id)}


@router.get("/metrics/breakdown")
async def metrics_breakdown(
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    by: Literal["sequence", "email"] = "sequence",
    period: Period | None = None,
    start: models.UtcDateTime | None = None,
    end: models.UtcDateTime | None = None,
    email_type: Literal["campaign", "transactional", "sequence"] | None = Query(None, alias="emailType"),
    limit: int = Query(50, ge=1, le=500),
    include_machine_engagement: bool | None = Query(None, alias="includeMachineEngagement"),
) -> dict[str, Any]:
    """Sequence emails grouped by sequence or by email (step). Only sequence mail is counted, so
    `emailType` campaign or transactional gives no rows."""
    begin, stop, label = window(svc.clock.now(), period, start, end, "30d")

    rows: list[dict[str, Any]] = []
    if email_type in (None, "sequence"):
        query = reports.FiguresQuery(begin, stop)
        found = await svc.db.read(lambda tx: reports.figures(tx, who.workspace_id, query, svc.clock.now()))
        rows = breakdown_rows(found.report, by)[:limit]
    return {
        "success": True,
        "by": by,
        "period": label,
        "start": models.iso(begin),
        "end": models.iso(stop),
        "emailType": email_type,
        "rows": rows,
    }


# -- cartback's own report --------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Revenue(_Out):
    currency: str = Field(description="ISO 4217 code; amounts in different currencies are never added up")
    orders: int = Field(description="Recovered orders in this currency")
    revenue_cents: int = Field(
        description="Their net total in minor units, refunds and cancellations taken off"
    )
    revenue: float = Field(description="The same in major units")


class Figures(_Out):
    sent: int
    delivered: int
    kept: int = Field(
        description="Emails kept in the outbox because no mail server is set: never delivered, in no "
        "other figure or rate"
    )
    bounced: int
    opened: int = Field(description="Emails opened at least once")
    clicked: int = Field(description="Emails clicked at least once")
    unsubscribed: int
    checkouts_started: int = Field(
        description="Workspace: checkouts started; sequence: runs it started; step: emails it sent"
    )
    checkouts_abandoned: int = Field(
        description="Workspace: checkouts no order completed on its own (none yet, or one an email "
        "recovered); sequence: runs it started; step: emails it sent"
    )
    checkouts_recovered: int = Field(description="Attributed orders still worth something")
    recovery_rate: float = Field(description="checkoutsRecovered / checkoutsAbandoned, 0 to 1 (0 when none)")
    open_rate: float = Field(description="opened / delivered, 0 to 1 (0 when none was delivered)")
    click_rate: float = Field(description="clicked / delivered, 0 to 1 (0 when none was delivered)")
    revenue: list[Revenue]


class Point(Figures):
    start: datetime = Field(description="Local start of the interval, in the requested timezone")


class StepFigures(Figures):
    step: int
    node_id: str
    subject: str | None


class SequenceFigures(Figures):
    sequence_id: str
    name: str
    steps: list[StepFigures]
    series: list[Point] | None = None


class Attribution(_Out):
    window_days: float
    receipt_hours: float


class RecoveryReport(_Out):
    success: bool = True
    start: datetime
    end: datetime
    interval: str | None
    timezone: str
    sequence_id: str | None
    attribution: Attribution
    totals: Figures
    series: list[Point] | None = None
    sequences: list[SequenceFigures]


def _series(report: analytics.Report, slot: analytics.Slice) -> list[dict[str, Any]] | None:
    if not report.interval:
        return None
    return [{"start": b.label, **t.json()} for b, t in zip(report.buckets, slot.series, strict=True)]


@router.get(
    "/analytics/recovery",
    response_model=RecoveryReport,
    response_model_exclude_none=False,
    summary="Recovered checkouts and revenue",
)
async def recovery(
    who: deps.Principal = Depends(principal),
    svc: deps.Services = Depends(deps.services),
    start: models.UtcDateTime | None = Query(None, description="Inclusive; default 30 days before `end`"),
    end: models.UtcDateTime | None = Query(None, description="Exclusive; default now"),
    interval: Literal["hour", "day", "week", "month"] | None = Query(
        None, description="Also give every figure per interval"
    ),
    timezone: models.TimeZone = Query("UTC", description="IANA zone the intervals follow"),
    sequence_id: str | None = Query(None, alias="sequenceId", max_length=60),
) -> dict[str, Any]:
    """What the recovery emails did and earned: per workspace (or one sequence), per sequence and per
    step, in total and per interval. Revenue is per currency and net of refunds and cancellations."""
    begin, stop, _ = window(svc.clock.now(), "30d" if start is None else None, start, end, None)
    settings = svc.settings

    query = reports.FiguresQuery(begin, stop, sequence_id=sequence_id, interval=interval, timezone=timezone)
    report = (
        await svc.db.read(lambda tx: reports.figures(tx, who.workspace_id, query, svc.clock.now()))
    ).report
    listed = []
    for seq_id, slot in sorted(report.sequences.items()):
        name, definition = report.names.get(seq_id, (seq_id, {}))
        steps = []
        for number, node_id, subject in analytics.step_order(definition):
            step = report.steps.get((seq_id, node_id)) or analytics.Slice()
            steps.append({"step": number, "nodeId": node_id, "subject": subject, **step.total.json()})
        listed.append(
            {
                "sequenceId": seq_id,
                "name": name,
                **slot.total.json(),
                "steps": steps,
                "series": _series(report, slot),
            }
        )
    return {
        "success": True,
        "start": begin,
        "end": stop,
        "interval": interval,
        "timezone": timezone,
        "sequenceId": sequence_id,
        "attribution": {
            "windowDays": settings.attribution_window_days,
            "receiptHours": settings.attribution_receipt_hours,
        },
        "totals": report.workspace.total.json(),
        "series": _series(report, report.workspace),
        "sequences": listed,
    }
