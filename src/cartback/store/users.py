"""Dashboard users. Looked up by id (the session names one) or by address (sign-in); the workspace a user
belongs to is on the row, and every dashboard query is scoped by it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from cartback import errors, ids
from cartback.store.db import Tx
from cartback.store.tables import users


@dataclass(frozen=True)
class User:
    id: str
    workspace_id: str
    email: str
    password_hash: str
    created_at: datetime
    last_sign_in_at: datetime | None
    session_version: int = 0


def email_key(email: str) -> str:
    return email.strip().lower()


def _from_row(row: Row[Any]) -> User:
    return User(
        row.id,
        row.workspace_id,
        row.email,
        row.password_hash,
        row.created_at,
        row.last_sign_in_at,
        row.session_version,
    )


def create(tx: Tx, workspace_id: str, email: str, password_hash: str, now: datetime) -> User:
    if find_by_email(tx, email) is not None:
        raise errors.Conflict(f"a user with the address {email!r} already exists")
    user = User(ids.new_id("usr"), workspace_id, email.strip(), password_hash, now, None)
    tx.execute(
        users.insert().values(
            id=user.id,
            workspace_id=workspace_id,
            email=user.email,
            email_key=email_key(email),
            password_hash=password_hash,
            created_at=now,
        )
    )
    return user


def find_by_email(tx: Tx, email: str) -> User | None:
    row = tx.execute(sa.select(users).where(users.c.email_key == email_key(email))).first()
    return None if row is None else _from_row(row)


def get(tx: Tx, user_id: str) -> User | None:
    row = tx.execute(sa.select(users).where(users.c.id == user_id)).first()
    return None if row is None else _from_row(row)


def record_sign_in(tx: Tx, user_id: str, now: datetime) -> None:
    tx.execute(users.update().where(users.c.id == user_id).values(last_sign_in_at=now))


def set_password_hash(tx: Tx, user_id: str, password_hash: str) -> None:
    """The stored hash alone (a re-hash of the same password); a new password also ends sessions."""
    tx.execute(users.update().where(users.c.id == user_id).values(password_hash=password_hash))


def end_sessions(tx: Tx, user_id: str) -> None:
    """Move the user's session version on: every session issued before names an older one."""
    tx.execute(
        users.update().where(users.c.id == user_id).values(session_version=users.c.session_version + 1)
    )
