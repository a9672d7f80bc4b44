"""The shared rate-limit counter on PostgreSQL: one statement per lease (core/ratelimits.py explains
leases). INSERT ... ON CONFLICT DO UPDATE takes the bucket's row lock, so concurrent leases from several
nodes queue on the row and none can grant past a limit; it runs alone in autocommit, one round trip."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cartback.store.db import Database
from cartback.store.tables import rate_limits as t


def _p(name: str) -> Any:
    return sa.bindparam(name, type_=sa.BigInteger)


def _statement() -> Any:
    """Built once: only the parameters change between leases."""
    second_used = sa.case((t.c.second >= _p("second"), t.c.second_used), else_=0)
    refunded = sa.case((t.c.minute == _p("refund_minute"), _p("refund")), else_=0)
    minute_used = sa.case(
        (t.c.minute >= _p("minute"), sa.func.greatest(t.c.minute_used - refunded, 0)), else_=0
    )
    granted = sa.func.greatest(
        0, sa.func.least(_p("want"), _p("second_limit") - second_used, _p("minute_limit") - minute_used)
    )
    return (
        postgresql.insert(t)
        .values(
            bucket=sa.bindparam("bucket"),
            second=_p("second"),
            second_used=_p("first"),
            minute=_p("minute"),
            minute_used=_p("first"),
            granted=_p("first"),
        )
        .on_conflict_do_update(
            index_elements=[t.c.bucket],
            set_={
                "second": sa.func.greatest(t.c.second, _p("second")),
                "second_used": second_used + granted,
                "minute": sa.func.greatest(t.c.minute, _p("minute")),
                "minute_used": minute_used + granted,
                "granted": granted,
            },
        )
        .returning(t.c.granted, t.c.second, t.c.second_used, t.c.minute, t.c.minute_used)
    )


_LEASE = _statement()


def lease(
    db: Database,
    bucket: str,
    want: int,
    second: int,
    refund: int,
    refund_minute: int,
    second_limit: int,
    minute_limit: int,
) -> tuple[int, int, int, int, int]:
    """Grant up to `want` requests in `second` and its minute, after handing `refund` unspent requests back
    to `refund_minute` (if that is still the stored minute). Returns (granted, second, second_used, minute,
    minute_used) as stored after the grant. The same arithmetic as core.ratelimits.grant, in SQL."""
    params = {
        "bucket": bucket,
        "want": want,
        "second": second,
        "minute": second // 60,
        "refund": refund,
        "refund_minute": refund_minute,
        "second_limit": second_limit,
        "minute_limit": minute_limit,
        "first": max(0, min(want, second_limit, minute_limit)),  # a new row: nothing counted yet
    }
    with db.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(_LEASE, params).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])
