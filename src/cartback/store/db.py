"""Engines, migrations and the group-commit writer.

Every write goes through `Database.write(fn)`: the request's coroutine queues `fn` and waits; one writer
thread takes everything queued, runs every `fn` inside one transaction, commits once, and only then answers
each waiter. Concurrent requests therefore share one commit (one fsync) instead of paying one each, and a
2xx is never sent for work that is not committed. One writer per process also gives SQLite the single
writer it wants. On PostgreSQL several writers (`writers`, each a thread with a connection it keeps) take
batches from the same queue, so one batch's round trips and commit overlap the next batch's instead of
the process waiting on them one at a time; to the database that is the same as several API nodes.

A failing `fn` must not undo the others. The writer first runs the batch optimistically, without
savepoints; if any `fn` raises, it rolls the whole transaction back and runs the batch again with each
`fn` in its own SAVEPOINT, so only the failing one's writes are undone. Jobs may therefore run more than
once, which they already must tolerate (an IntegrityError retries them). docs/ingest.md has the details.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from cartback import errors, values
from cartback.store import tables, writer_lock

T = TypeVar("T")
X = TypeVar("X")
Tx = Connection  # what store functions take: a connection inside a transaction

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
# Concurrent writers elsewhere (another API node) can win a uniqueness race; re-running the job then
# finds their row. Three tries is plenty: each loss means the row now exists.
_INTEGRITY_RETRIES = 3
# PostgreSQL's "deadlock detected" and "could not serialize": two writers (of this process or another
# node) took the same rows in opposite orders; the job that lost runs again.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})
# How long a SQLite writer waits for another's write lock before its write fails.
_BUSY_SECONDS = 30


def sqlalchemy_url(url: str) -> str:
    """Accept the URLs people write (postgresql://, postgres://) and pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _loads(text: str | bytes) -> Any:
    """A stored JSON document, with anything nested deeper than `values.READ_DEPTH` read as null: a
    record stored before the API bounded nesting must not make every read of it fail when rendered."""
    value = orjson.loads(text)
    # Cheap first: a document with fewer brackets than the bound cannot nest deeper than it.
    if isinstance(text, bytes):
        brackets = text.count(b"{") + text.count(b"[")
    else:
        brackets = text.count("{") + text.count("[")
    if brackets <= values.READ_DEPTH:
        return value
    return values.clip_depth(value)


def create_engines(url: str, *, sqlite_synchronous: str = "FULL") -> tuple[Engine, Engine]:
    """Return (write engine, read engine). They are the same engine on PostgreSQL."""
    url = sqlalchemy_url(url)
    if not url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            json_serializer=_dumps,
            json_deserializer=_loads,
            pool_size=10,
            max_overflow=20,
            pool_pre_ping=True,
            # Error messages must not carry bound values (email addresses, key hashes) into the logs.
            hide_parameters=True,
        )
        return engine, engine

    def configure(engine: Engine, *, writer: bool) -> Engine:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control from the sqlite3 module so SAVEPOINT works and we choose BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.execute(f"PRAGMA busy_timeout={_BUSY_SECONDS * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        locked = writer and bool(engine.url.database) and engine.url.database != ":memory:"
        if locked:
            writer_lock.install(engine, str(engine.url.database))

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            if not writer:
                conn.exec_driver_sql("BEGIN")
                return
            # IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking; writers
            # of other processes take turns on the lock file first (store/writer_lock.py).
            if locked:
                writer_lock.take(conn, _BUSY_SECONDS)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                if locked:
                    writer_lock.give_back(conn)
                raise

        return engine

    kwargs: dict[str, Any] = {
        "json_serializer": _dumps,
        "json_deserializer": _loads,
        "hide_parameters": True,
    }
    write = configure(sa.create_engine(url, **kwargs), writer=True)
    read = configure(sa.create_engine(url, **kwargs), writer=False)
    return write, read


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to the newest revision (or to `revision`, for tests of a migration). Safe to call
    from several processes at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite's table rebuild (batch mode) drops the old table, and with foreign keys enforced that
            # drop deletes every row referring to it (ON DELETE CASCADE). As SQLite's documented procedure
            # asks, enforcement is off during migrations (the pragma only takes effect outside a
            # transaction, hence on the driver's connection before BEGIN) and the keys are checked at the end.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    # Two nodes starting together must not both create the tables.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


@dataclass
class _Job:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any] | None
    notify: bool = True
    # A job queued by `write_each`: `many` runs the items of every such job of a group commit in one
    # call; `fn` runs this one alone (the savepoint and one-by-one retries use it).
    many: Callable[[Connection, list[Any]], list[Any]] | None = None
    item: Any = None


@dataclass
class WriterStats:
    batches: int = 0
    jobs: int = 0
    largest_batch: int = 0
    # Batches that had a failing job and ran again with a savepoint per job.
    retried_batches: int = 0
    # Batch sizes by power of two: {1: batches of 1, 2: of 2-3, 4: of 4-7, ...}.
    sizes: dict[int, int] = field(default_factory=dict)

    def add(self, size: int) -> None:
        self.batches += 1
        self.jobs += size
        self.largest_batch = max(self.largest_batch, size)
        bucket = 1 << (size.bit_length() - 1)
        self.sizes[bucket] = self.sizes.get(bucket, 0) + 1

    def summary(self) -> str:
        mean = self.jobs / self.batches if self.batches else 0.0
        sizes = ", ".join(f"{k}-{2 * k - 1}: {n}" for k, n in sorted(self.sizes.items()))
        return (
            f"writer: {self.jobs} jobs in {self.batches} commits (mean batch {mean:.1f}, largest "
            f"{self.largest_batch}, {self.retried_batches} re-run with savepoints; sizes {sizes})"
        )


class Database:
    """The engines plus the group-commit writer. Built once per process by create_app / the CLI."""

    def __init__(
        self, url: str, *, sqlite_synchronous: str = "FULL", batch_max: int = 512, writers: int = 2
    ) -> None:
        self.url = url
        self.write_engine, self.read_engine = create_engines(url, sqlite_synchronous=sqlite_synchronous)
        self.dialect = self.write_engine.dialect.name
        self.batch_max = batch_max
        # SQLite has one writer whatever is asked: a second would only wait for the first's lock.
        self.writers = writers if self.dialect == "postgresql" else 1
        self.stats = WriterStats()
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[_Writer] = []
        # Called after a commit that included a notifying job: the in-process scheduler listens here so a
        # new event is dispatched at once instead of at the next tick.
        self.commit_listeners: list[Callable[[], None]] = []
        # Called with the size of every group commit (the batch-size metric).
        self.batch_observers: list[Callable[[int], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def display_url(self) -> str:
        """The database's URL for messages: the password masked."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def migrate(self) -> None:
        migrate(self.write_engine)

    async def start(self) -> None:
        """Start the writers (again, after a stop: tests and the demo start and stop them around each run)."""
        self._queue = asyncio.Queue()
        self._writers = [_Writer(self.write_engine, f"cartback-writer-{i}") for i in range(self.writers)]
        self._tasks = [asyncio.create_task(self._writer_loop(w), name=w.name) for w in self._writers]

    async def stop(self) -> None:
        """Commit what is queued, then stop the writers."""
        if self._queue is not None and self._tasks:
            # One stop per writer: each takes one and ends after committing the batch it holds.
            for _ in self._tasks:
                await self._queue.put(None)
            await asyncio.gather(*self._tasks)
            self._tasks = []
            # Anything queued behind the stop (a cancelled task's straggler) fails rather than waits forever.
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if job is not None and job.future is not None and not job.future.done():
                    job.future.set_exception(errors.Unavailable("the server is shutting down"))
            if self.stats.batches:
                log.info(self.stats.summary())
        for writer in self._writers:
            writer.shutdown()
        self._writers = []
        self.close()

    def close(self) -> None:
        """Close every pooled connection."""
        self.write_engine.dispose()
        self.read_engine.dispose()

    # -- reads and writes --------------------------------------------------------------------------

    async def write(self, fn: Callable[[Connection], T], *, notify: bool = True) -> T:
        """Run `fn` in the next group commit; return its result once it is durable. `notify=False` keeps
        the commit from waking the commit listeners (the scheduler's own bookkeeping)."""
        if self._queue is None:
            raise RuntimeError("Database.start() was not called")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(fn, future, notify))
        return await future

    async def write_each(
        self, many: Callable[[Connection, list[X]], list[T]], item: X, *, notify: bool = True
    ) -> T:
        """`write(lambda tx: many(tx, [item])[0])`, except that the items of every `write_each(many, ...)`
        in one group commit go to one call of `many`, which can then read and write them set-wise (one
        query for all, one executemany) instead of a few statements each. `many` must give each item the
        answer running them one by one would give, in some order: the requests of one group commit are
        concurrent (none was answered before another was queued), so any order is one they could have
        had. If it raises, the batch runs again with each job alone, in its own savepoint."""
        if self._queue is None:
            raise RuntimeError("Database.start() was not called")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        def alone(conn: Connection) -> T:
            return many(conn, [item])[0]

        await self._queue.put(_Job(alone, future, notify, many, item))
        return await future

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self.read_sync, fn)

    async def ping(self) -> None:
        """Ask the database for one trivial answer (/readyz): raises if it cannot be reached."""
        await self.read(lambda tx: tx.exec_driver_sql("SELECT 1").scalar_one())

    def read_sync(self, fn: Callable[[Connection], T]) -> T:
        with self.read_engine.connect() as conn, translate_errors():
            try:
                return fn(conn)
            finally:
                conn.rollback()

    def write_sync(self, fn: Callable[[Connection], T]) -> T:
        """A write outside the server (CLI, tests): its own transaction, no batching."""
        with translate_errors(), self.write_engine.begin() as conn:
            return _run_job(conn, fn)

    def run_jobs_sync(self, fns: list[Callable[[Connection], Any]]) -> list[tuple[bool, Any]]:
        """Run jobs in one transaction of their own, beside the writer: (ok, value or exception) each.
        Only for PostgreSQL, where several connections may write at once; the scheduler uses it to run
        a claimed batch over several connections instead of queueing it all behind one."""
        return _commit_batch(
            self.stats, self.write_engine.connect, [_Job(fn, None, notify=False) for fn in fns]
        )

    # -- the writer --------------------------------------------------------------------------------

    async def _writer_loop(self, writer: _Writer) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            job = await self._queue.get()
            if job is None:
                break
            if not writer.try_turn():
                # Another process writes to this SQLite file: wait for its commit before taking the batch,
                # so the batch takes in all that arrives meanwhile instead of leaving it for the next turn.
                await loop.run_in_executor(writer.executor, writer.wait_turn)
            batch = [job]
            # Take whatever arrived while the previous commit was running: that is the group.
            while len(batch) < self.batch_max and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            outcomes = await loop.run_in_executor(
                writer.executor, _commit_batch, self.stats, writer.connect, batch
            )
            self.stats.add(len(batch))
            for observe in self.batch_observers:
                observe(len(batch))
            if any(j.notify and ok for j, (ok, _) in zip(batch, outcomes, strict=True)):
                for listener in self.commit_listeners:
                    listener()
            for j, (ok, value) in zip(batch, outcomes, strict=True):
                if j.future is None or j.future.done():  # the client went away; the work is committed
                    continue
                if ok:
                    j.future.set_result(value)
                else:
                    j.future.set_exception(value)


class _Writer:
    """One writer: a thread of its own, and the connection it keeps between batches. Kept, because taking
    one from the pool costs a round trip (pool_pre_ping) per batch; used only from that thread."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: Connection | None = None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """The kept connection; a new one after a failure, which may have left it broken."""
        if self._conn is None:
            self._conn = self.engine.connect()
        try:
            yield self._conn
        except BaseException:
            self._drop()
            raise
        if self._conn.in_transaction():  # never left open, but a kept connection must not carry one on
            self._drop()

    def try_turn(self) -> bool:
        """Take the lock file of a SQLite file that other processes write (store/writer_lock.py) if it is
        free, for the next batch's transaction; True also when there is nothing to take. Called from the
        event loop between batches, while the writer's thread leaves the connection alone."""
        conn = self._conn
        return conn is not None and writer_lock.try_take(conn)

    def wait_turn(self) -> None:
        """On the writer's thread: wait for the lock file as a BEGIN would, and keep it for the next batch."""
        with self.connect() as conn:
            writer_lock.take(conn, _BUSY_SECONDS)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.warning("closing a writer connection failed", exc_info=True)

    def shutdown(self) -> None:
        self.executor.submit(self._drop).result()
        self.executor.shutdown(wait=True)


def _commit_batch(
    stats: WriterStats, connect: Callable[[], AbstractContextManager[Connection]], batch: list[_Job]
) -> list[tuple[bool, Any]]:
    try:
        outcomes = _run_optimistic(connect, batch)
        if outcomes is not None:
            return outcomes
        stats.retried_batches += 1
        with connect() as conn, conn.begin():
            outcomes = [_attempt(conn, job.fn) for job in batch]
        return outcomes
    except Exception:
        if len(batch) == 1:
            log.exception("commit failed")
            return [(False, errors.Unavailable())]
        # The commit itself failed (lost connection, disk error): nothing of the batch is stored.
        # Retry each job alone so one cause cannot fail every waiter.
        log.warning("group commit of %d jobs failed; retrying one by one", len(batch), exc_info=True)
        return [_commit_batch(stats, connect, [job])[0] for job in batch]


def _run_optimistic(
    connect: Callable[[], AbstractContextManager[Connection]], batch: list[_Job]
) -> list[tuple[bool, Any]] | None:
    """Run and commit the batch without savepoints (two statements fewer per job). None, with nothing
    committed, when a job raised: the caller then runs the batch again with a savepoint per job."""
    with connect() as conn:
        with conn.begin() as tx:
            try:
                values = _run_jobs(conn, batch)
            except Exception:
                tx.rollback()
                return None
        return [(True, value) for value in values]


def _run_jobs(conn: Connection, batch: list[_Job]) -> list[Any]:
    """Each job's value, in order. The `write_each` jobs sharing a `many` run together, in one call made
    where the first of them stands in the batch."""
    together: dict[Callable[[Connection, list[Any]], list[Any]], list[int]] = {}
    for i, job in enumerate(batch):
        if job.many is not None:
            together.setdefault(job.many, []).append(i)
    if not together:
        return [job.fn(conn) for job in batch]
    values: list[Any] = [None] * len(batch)
    for i, job in enumerate(batch):
        if job.many is None:
            values[i] = job.fn(conn)
        elif (members := together.pop(job.many, None)) is not None:
            answers = job.many(conn, [batch[k].item for k in members])
            for k, answer in zip(members, answers, strict=True):
                values[k] = answer
    return values


def _attempt(conn: Connection, fn: Callable[[Connection], Any]) -> tuple[bool, Any]:
    """Run one job in a savepoint: its failure undoes its own writes only."""
    for _ in range(_INTEGRITY_RETRIES):
        savepoint = conn.begin_nested()
        try:
            value = fn(conn)
        except IntegrityError as exc:
            savepoint.rollback()
            constraint = constraint_of(exc)
            if constraint in tables.RACE_CONSTRAINTS:
                continue
            log.exception("a write broke the constraint %s", constraint)
            return False, errors.IntegrityViolation(constraint)
        except errors.CartbackError as exc:
            savepoint.rollback()
            return False, exc
        except DataError as exc:
            # A value the database cannot hold (too long, out of range): the request's fault, not ours,
            # and retrying it would never help.
            savepoint.rollback()
            return False, errors.InvalidInput(f"a value does not fit the database: {_first_line(exc.orig)}")
        except OperationalError as exc:
            savepoint.rollback()
            if getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES:
                continue
            log.exception("database error in a write")
            return False, errors.Unavailable(f"database error: {type(exc.orig).__name__}")
        except DBAPIError as exc:
            savepoint.rollback()
            log.exception("database error in a write")
            return False, errors.Unavailable(f"database error: {type(exc.orig).__name__}")
        except Exception as exc:
            savepoint.rollback()
            log.exception("unexpected error in a write")
            return False, exc
        savepoint.commit()
        return True, value
    return False, errors.Conflict("a concurrent write kept conflicting with this one; retry")


def _run_job(conn: Connection, fn: Callable[[Connection], T]) -> T:
    ok, value = _attempt(conn, fn)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def constraint_of(exc: IntegrityError) -> str:
    """The name of the constraint `exc` broke (tables.py names them all). PostgreSQL reports it; SQLite
    reports a unique key's columns, a CHECK's name, and for a foreign key or NOT NULL only the kind."""
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if name:
        return str(name)
    text = _first_line(exc.orig)
    kind, _, detail = text.partition(" constraint failed: ")
    if kind == "UNIQUE" and detail:
        columns = [c.strip().partition(".") for c in detail.split(",")]
        key = (columns[0][0], tuple(c[2] for c in columns))
        return tables.SQLITE_KEYS.get(key, text)
    if kind == "CHECK" and detail:
        return detail
    return text


def _first_line(error: BaseException | None) -> str:
    return (str(error or "").strip().splitlines() or ["invalid value"])[0][:200]


@contextmanager
def pipelined(tx: Connection) -> Iterator[None]:
    """On PostgreSQL the statements run inside are sent together and answered in one round trip at the
    end (psycopg's pipeline mode) instead of one each; only for statements whose results nobody reads
    before the block ends (inserts, updates). A statement's error then surfaces at the end of the block,
    as the SQLAlchemy error it would have raised at once. Elsewhere the block runs as it is."""
    if tx.dialect.name != "postgresql":
        yield
        return
    dbapi = tx.dialect.loaded_dbapi
    try:
        with tx.connection.driver_connection.pipeline():  # type: ignore[union-attr]
            yield
    except DBAPIError:
        raise
    except dbapi.Error as exc:
        raise DBAPIError.instance(
            None, None, exc, dbapi.Error, hide_parameters=True, dialect=tx.dialect
        ) from exc


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver errors become CartbackErrors once, here, so callers never see DBAPI exceptions."""
    try:
        yield
    except errors.CartbackError:
        raise
    except DataError as exc:
        raise errors.InvalidInput(f"a value does not fit the database: {_first_line(exc.orig)}") from exc
    except DBAPIError as exc:
        log.exception("database error")
        raise errors.Unavailable(f"database error: {type(exc.orig).__name__}") from exc
