"""Group commit: the write units queued at the same time share one SQLite transaction.

A unit of work that only writes (the hot charger messages: MeterValues, Heartbeat,
StatusNotification) may run in :meth:`edge.store.Store.writes`. Its statements are queued, and one
committer runs every queued unit in one SQLite transaction: one fsync for hundreds of chargers
instead of one each. Each caller still returns only after the transaction holding its unit
committed, so nothing is acknowledged before it is durable; if that shared transaction fails,
every unit in it is retried alone, so one bad unit fails only its caller.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import partial
from typing import Any

import aiosqlite

from edge.store.unit_of_work import StoreWrites


def connection_factory(made: list[sqlite3.Connection]) -> type[sqlite3.Connection]:
    """A ``factory`` for ``sqlite3.connect`` (passed through ``aiosqlite.connect``) that hands the
    connection aiosqlite makes in its thread to ``made``: the committer runs its statements on it,
    in that thread, without reaching into aiosqlite for it."""

    class _Connection(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    return _Connection


async def run_in_db_thread(db: aiosqlite.Connection, fn: Callable[[], None]) -> None:
    """Run ``fn`` on aiosqlite's database thread, in order with every statement queued before it.

    aiosqlite has no public call for this (checked on 0.22.1): ``Connection._execute`` is the one
    private member of aiosqlite the edge uses, and only here. The public way (BEGIN, one ``executemany``
    per statement, COMMIT) would cost a trip to the thread, and an event-loop turn under the store's
    lock, per statement instead of one per group.
    """
    await db._execute(fn)


def commit_sync(db: sqlite3.Connection, units: Sequence[StoreWrites]) -> None:
    """Run write units in one transaction, grouped by statement (see :class:`StoreWrites`)."""
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for unit in units:
        for sql, params in unit.statements:
            grouped.setdefault(sql, []).append(params)
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in grouped.items():
            db.executemany(sql, rows)
        for unit in units:
            unit.changed = sum(db.execute(sql, params).rowcount for sql, params in unit.counted)
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.OperationalError):
            db.execute("ROLLBACK")
        raise


def _settle(batch: Sequence[tuple[StoreWrites, asyncio.Future[None]]], error: Exception | None = None) -> None:
    for _unit, done in batch:
        if done.done():  # its caller was cancelled
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


class GroupCommit:
    """The queue of write units and the committer that empties it.

    ``lock`` is the store's: a group transaction never interleaves with another unit of work.
    ``committed`` books each unit's outbox rows once its transaction committed.
    """

    def __init__(self, db: aiosqlite.Connection, conn: sqlite3.Connection, lock: asyncio.Lock,
                 committed: Callable[[StoreWrites], None]) -> None:
        self._db = db
        self._conn = conn
        self._lock = lock
        self._committed = committed
        self._queued: list[tuple[StoreWrites, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def commit(self, unit: StoreWrites) -> None:
        """Queue ``unit``; returns once the transaction holding it committed (raises if it failed)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((unit, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._run_committer(), name="store.group-commit")
        # Not shielded: a caller cancelled here may still see its unit committed (like a COMMIT in flight).
        await done

    async def close(self) -> None:
        """Wait for the units queued to be committed (or failed)."""
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)

    async def _run_committer(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                await self._commit_batch(batch)
            except BaseException:
                # Cancelled (the loop is closing): nobody may wait forever for a verdict.
                for _unit, done in batch + self._queued:
                    done.cancel()
                self._queued = []
                raise

    async def _commit_batch(self, batch: list[tuple[StoreWrites, asyncio.Future[None]]]) -> None:
        try:
            await self.commit_units([unit for unit, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                _settle(batch, error)
                return
            # One unit may be at fault: give each its own transaction and its own outcome.
            for single in batch:
                try:
                    await self.commit_units([single[0]])
                except Exception as own_error:
                    _settle([single], own_error)
                else:
                    _settle([single])
            return
        _settle(batch)

    async def commit_units(self, units: Sequence[StoreWrites]) -> None:
        """One transaction for ``units``, in one trip to the database thread (BEGIN … COMMIT), so the
        lock is held for the statements and the fsync only, not for several event-loop turns."""
        async with self._lock:
            # aiosqlite's own queue to its thread: statements stay in order with every other one.
            await run_in_db_thread(self._db, partial(commit_sync, self._conn, units))
            for unit in units:
                self._committed(unit)
