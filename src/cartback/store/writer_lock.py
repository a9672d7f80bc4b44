"""Writers of one SQLite file, in several processes, take turns on a lock file rather than on SQLite's lock.

SQLite lets one connection write at a time. A writer that finds the write lock taken (BEGIN IMMEDIATE) is
put to sleep by SQLite's busy handler, for 1, 2, 5, 10, 15, 20, 25 ms and longer on each further try,
however soon the lock is given back. Two processes on one file (two `cartback serve --no-worker`, or
`serve` beside `cartback worker`) then spend their time asleep: two API processes, each loaded as hard as
one alone, answered 1.1-1.2 times one process's rate with a p99 near a second (bench/README.md).

So before its BEGIN IMMEDIATE each write connection takes an exclusive `flock` on `<database>-writer.lock`,
beside the database as SQLite's own `-wal` and `-shm` files are, and gives it back as its COMMIT or
ROLLBACK is sent (SQLAlchemy's events come just before; a writer let in then waits in SQLite only for that
commit's fsync). A writer that finds it taken tries again every half millisecond, so it starts its
transaction about as soon as the other has committed (the same two processes: 1.5-1.6 times one process's
rate, p99 24 ms). The lock only orders writers that SQLite's lock would order anyway, so nothing depends on
it for correctness: a writer that has waited SQLite's busy timeout for it goes on to BEGIN IMMEDIATE, and
SQLite decides as before. The kernel gives the lock back when a process dies, `kill -9` included.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

# How often a writer looks again while another holds the lock.
_RETRY_SECONDS = 0.0005
_KEY = "cartback.writer_lock"


def path_for(database: str) -> str:
    return database + "-writer.lock"


def install(engine: Engine, database: str) -> None:
    """Give every connection of `engine` (the write engine of the SQLite file `database`) its descriptor of
    the lock file, and have its commit or rollback give the lock back; `take` is called before each BEGIN."""
    lock_path = path_for(database)

    @event.listens_for(engine, "connect")
    def _open(_dbapi_conn: Any, record: Any) -> None:
        # One descriptor per connection: flock excludes descriptors, not processes, so two connections of
        # one process (the writer thread and a CLI write) take turns too.
        record.info[_KEY] = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @event.listens_for(engine, "close")
    def _close(_dbapi_conn: Any, record: Any) -> None:
        fd = record.info.pop(_KEY, None)
        if fd is not None:
            os.close(fd)

    event.listen(engine, "commit", give_back)
    event.listen(engine, "rollback", give_back)


def take(conn: Connection, wait_seconds: float) -> None:
    """Hold the lock for `conn`'s transaction, waiting at most `wait_seconds` for another writer's."""
    fd = _fd(conn)
    if fd is None:
        return
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return  # SQLite's own lock and busy timeout decide from here
            time.sleep(_RETRY_SECONDS)


def try_take(conn: Connection) -> bool:
    """Hold the lock for `conn`'s next transaction if no other writer holds it; True also when `conn` has no
    lock file (a database that needs none). Taking it again in `take` then returns at once: a descriptor
    that holds an flock holds it however often it asks."""
    fd = _fd(conn)
    if fd is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def give_back(conn: Connection) -> None:
    fd = _fd(conn)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _fd(conn: Connection) -> int | None:
    fd: int | None = conn.connection.info.get(_KEY)
    return fd
