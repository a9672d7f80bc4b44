"""The shared rate-limit counter: one statement per lease (core/ratelimits.py explains leases).
INSERT ... ON CONFLICT DO UPDATE takes the bucket's row lock on PostgreSQL, so concurrent leases from
several nodes queue on the row and none can grant past a limit; it runs alone in autocommit, one round
trip. On SQLite (several processes of `serve --processes` on one file) the same statement runs in a write
transaction of its own, which the database's single write lock orders."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cartback.store.db import Database
from cartback.store.tables import rate_limits as t


def _p(name: str) -> Any:
    return sa.bindparam(name, type_=sa.BigInteger)


def _statement(dialect: Any) -> Any:
    """Built once per dialect: only the parameters change between leases."""
    # SQLite's max() and min() of several arguments are PostgreSQL's greatest() and least().
    greatest, least = (
        (sa.func.greatest, sa.func.least) if dialect is postgresql else (sa.func.max, sa.func.min)
    )
    second_used = sa.case((t.c.second >= _p("second"), t.c.second_used), else_=0)
    refunded = sa.case((t.c.minute == _p("refund_minute"), _p("refund")), else_=0)
    minute_used = sa.case((t.c.minute >= _p("minute"), greatest(t.c.minute_used - refunded, 0)), else_=0)
    granted = greatest(
        0, least(_p("want"), _p("second_limit") - second_used, _p("minute_limit") - minute_used)
    )
    return (
        dialect.insert(t)
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
                "second": greatest(t.c.second, _p("second")),
                "second_used": second_used + granted,
                "minute": greatest(t.c.minute, _p("minute")),
                "minute_used": minute_used + granted,
                "granted": granted,
            },
        )
        .returning(t.c.granted, t.c.second, t.c.second_used, t.c.minute, t.c.minute_used)
    )


_LEASE = {"postgresql": _statement(postgresql), "sqlite": _statement(sqlite)}


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
    if db.dialect == "sqlite":
        with db.write_engine.begin() as conn:
            row = conn.execute(_LEASE["sqlite"], params).one()
    else:
        with db.write_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            row = conn.execute(_LEASE["postgresql"], params).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])
