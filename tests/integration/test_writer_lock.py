"""Writers of one SQLite file take turns on its lock file (store/writer_lock.py): held from a write
transaction's start to its end, by one writer at a time, and given back by the kernel when its holder is
killed. Two Database objects stand for two processes: each connection has its own descriptor."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartback.store import writer_lock
from cartback.store.db import Database


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "shared.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{path}"


def lock_is_free(url: str) -> bool:
    """Whether a third party could take the lock now (and it gives it straight back)."""
    fd = os.open(writer_lock.path_for(sa.engine.make_url(url).database or ""), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def test_a_write_transaction_holds_the_lock_and_the_next_writer_waits_for_it(sqlite_url: str) -> None:
    first, second = Database(sqlite_url), Database(sqlite_url)
    inside, finish = threading.Event(), threading.Event()
    order: list[str] = []

    def hold(tx: sa.Connection) -> None:
        tx.exec_driver_sql("CREATE TABLE IF NOT EXISTS turns (who TEXT)")
        inside.set()
        assert finish.wait(10)
        order.append("first")

    def follow(tx: sa.Connection) -> None:
        order.append("second")

    try:
        assert lock_is_free(sqlite_url)
        holder = threading.Thread(target=first.write_sync, args=(hold,))
        holder.start()
        assert inside.wait(10)
        assert not lock_is_free(sqlite_url)  # taken for the transaction (free before this change)
        follower = threading.Thread(target=second.write_sync, args=(follow,))
        follower.start()
        follower.join(0.3)
        assert follower.is_alive() and order == []  # waiting its turn
        finish.set()
        holder.join(10)
        follower.join(10)
        assert order == ["first", "second"]
        assert lock_is_free(sqlite_url)  # given back at each commit
        # A transaction that fails gives it back too.
        with pytest.raises(ZeroDivisionError):
            first.write_sync(lambda tx: 1 / 0)
        assert lock_is_free(sqlite_url)
    finally:
        first.close()
        second.close()


def test_a_writer_killed_inside_its_transaction_leaves_the_lock_free(sqlite_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from cartback.store.db import Database\n"
            "def hold(tx):\n"
            "    print('in', flush=True)\n"
            "    time.sleep(60)\n"
            "Database(sys.argv[1]).write_sync(hold)\n",
            sqlite_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "in"
        assert not lock_is_free(sqlite_url)
        holder.kill()
        holder.wait(10)
        assert lock_is_free(sqlite_url)
        db = Database(sqlite_url)
        try:
            db.write_sync(lambda tx: tx.exec_driver_sql("CREATE TABLE after_kill (x INTEGER)"))
        finally:
            db.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_writer_that_waits_for_its_turn_takes_in_everything_queued_meanwhile(sqlite_url: str) -> None:
    """The group-commit writer of a process that finds the lock taken waits for it before taking its batch:
    the writes queued while another process committed go into its next commit together, none left for
    a turn after that (which halved the batches of two processes inserting at once)."""

    async def main() -> None:
        other, db = Database(sqlite_url), Database(sqlite_url)
        inside, finish = threading.Event(), threading.Event()

        def hold(tx: sa.Connection) -> None:
            inside.set()
            assert finish.wait(10)

        await db.start()
        try:
            await db.write(lambda tx: tx.exec_driver_sql("CREATE TABLE queued (n INTEGER)"))
            before = db.stats.batches
            holder = threading.Thread(target=other.write_sync, args=(hold,))
            holder.start()
            assert await asyncio.to_thread(inside.wait, 10)
            writes = []
            for n in range(20):
                insert = db.write(lambda tx, n=n: tx.exec_driver_sql(f"INSERT INTO queued VALUES ({n})"))
                writes.append(asyncio.ensure_future(insert))
                await asyncio.sleep(0.02)  # one after the other, while the other process holds the file
            assert not any(w.done() for w in writes)
            finish.set()
            await asyncio.gather(*writes)
            await asyncio.to_thread(holder.join, 10)
            assert db.stats.batches - before == 1  # 2 before: the first write alone, then the other nineteen
            assert (
                await db.read(lambda tx: tx.exec_driver_sql("SELECT count(*) FROM queued").scalar_one()) == 20
            )
        finally:
            await db.stop()
            db.close()
            other.close()

    asyncio.run(main())
