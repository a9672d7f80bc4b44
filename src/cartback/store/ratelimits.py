"""The shared rate-limit counter on PostgreSQL: one statement per lease (core/ratelimits.py explains
leases). INSERT ... ON CONFLICT DO UPDATE takes the bucket's row lock, so concurrent leases from several
nodes queue on the row and none can grant past a limit; it runs alone in autocommit, one round trip."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cartback.store.db import Database
from cartback.store.tables import rate_limits as t


def _int(value: int) -> Any:
    return sa.literal(value, sa.BigInteger)


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
    minute = second // 60
    first = max(0, min(want, second_limit, minute_limit))
    second_used = sa.case((t.c.second >= _int(second), t.c.second_used), else_=_int(0))
    refunded = sa.case((t.c.minute == _int(refund_minute), _int(refund)), else_=_int(0))
    minute_used = sa.case(
        (t.c.minute >= _int(minute), sa.func.greatest(t.c.minute_used - refunded, _int(0))), else_=_int(0)
    )
    granted = sa.func.greatest(
        _int(0),
        sa.func.least(_int(want), _int(second_limit) - second_used, _int(minute_limit) - minute_used),
    )
    stmt = (
        postgresql.insert(t)
        .values(
            bucket=bucket, second=second, second_used=first, minute=minute, minute_used=first, granted=first
        )
        .on_conflict_do_update(
            index_elements=[t.c.bucket],
            set_={
                "second": sa.func.greatest(t.c.second, _int(second)),
                "second_used": second_used + granted,
                "minute": sa.func.greatest(t.c.minute, _int(minute)),
                "minute_used": minute_used + granted,
                "granted": granted,
            },
        )
        .returning(t.c.granted, t.c.second, t.c.second_used, t.c.minute, t.c.minute_used)
    )
    with db.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(stmt).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])
