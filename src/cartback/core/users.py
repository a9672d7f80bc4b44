"""Dashboard users: creation with a checked address and password, and sign-in."""

from __future__ import annotations

import re
from datetime import datetime

from cartback import errors
from cartback.core import passwords
from cartback.store import users as user_store
from cartback.store import workspaces
from cartback.store.db import Tx
from cartback.store.users import User as User
from cartback.store.workspaces import Workspace as Workspace

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def check_password(password: str) -> None:
    if len(password) < passwords.MIN_LENGTH:
        raise errors.InvalidInput(f"the password must have at least {passwords.MIN_LENGTH} characters")
    if len(password) > passwords.MAX_LENGTH:
        raise errors.InvalidInput(f"the password must have at most {passwords.MAX_LENGTH} characters")


def create_user(tx: Tx, workspace_name: str, email: str, password: str, now: datetime) -> user_store.User:
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 320:
        raise errors.InvalidInput(f"{email!r} is not an email address")
    check_password(password)
    ws = workspaces.get_workspace_by_name(tx, workspace_name)
    return user_store.create(tx, ws.id, email, passwords.hash_password(password), now)


def check_credentials(user: user_store.User | None, password: str) -> bool:
    """Whether `password` is `user`'s. CPU-bound (scrypt): run it outside the database writer. Takes as
    long for an unknown user, so timing does not reveal which addresses have accounts."""
    if user is None:
        passwords.burn_time(password)
        return False
    return passwords.verify(password, user.password_hash)


def find_for_sign_in(tx: Tx, email: str) -> User | None:
    """The user an address signs in as; a blank address names no one."""
    return user_store.find_by_email(tx, email) if email.strip() else None


def session_user(tx: Tx, user_id: str, session_version: int) -> tuple[User, Workspace] | None:
    """The signed-in user and their workspace, or None when the session is over: the user is gone, or
    signed out (or changed their password) since the session began."""
    user = user_store.get(tx, user_id)
    if user is None or user.session_version != session_version:
        return None
    return user, workspaces.get_workspace(tx, user.workspace_id)


def record_sign_in(tx: Tx, user: user_store.User, now: datetime, new_hash: str | None) -> None:
    """Note the sign-in; `new_hash` replaces a hash made with older parameters (passwords.needs_rehash)."""
    if new_hash is not None:
        user_store.set_password_hash(tx, user.id, new_hash)
    user_store.record_sign_in(tx, user.id, now)


def sign_out(tx: Tx, user_id: str) -> None:
    """End every session of the user: a copy of the cookie taken before is worth nothing after."""
    user_store.end_sessions(tx, user_id)


def change_password(tx: Tx, email: str, password: str) -> user_store.User:
    """A new password for the user with this address; every session signed in with the old one ends."""
    check_password(password)
    user = user_store.find_by_email(tx, email)
    if user is None:
        raise errors.NotFound(f"no user with the address {email!r}")
    user_store.set_password_hash(tx, user.id, passwords.hash_password(password))
    user_store.end_sessions(tx, user.id)
    return user
