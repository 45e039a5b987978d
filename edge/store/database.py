"""The store: the edge database's one connection, its units of work and the outbox's upkeep.

Durability choices
    * ``journal_mode=WAL``: readers never block the writer and a commit is one append.
    * ``synchronous=FULL``: the WAL is fsynced at every commit. With NORMAL a power cut
      (common at the edge: garages lose power, cabinets get unplugged) may drop the last
      commits, and then a transactionId already handed to a charger could be handed out
      again, or a cloud command already acknowledged to the broker would be forgotten.
      The edge commits once per charger message, so the fsync costs little.

Concurrency: one connection, one writer. Every unit of work runs inside
:meth:`Store.transaction`, which holds an asyncio lock for its duration, so statements of two
coroutines never interleave inside one SQLite transaction; :meth:`Store.writes` hands write-only
units to group commit, which takes the same lock.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import structlog

from edge.domain import AuthEntry
from edge.store.group_commit import GroupCommit, connection_factory
from edge.store.outbox import HISTORY_DAYS, Outbox, OutboxCap, OutboxStatus, Retention
from edge.store.records import ChargerRecord, OutboxRow, TransactionRecord, iso
from edge.store.schema import SCHEMA_VERSION, StoreError, migrate, scalar, store_id
from edge.store.unit_of_work import StoreTransaction, StoreWrites

log = structlog.get_logger("edge.store")


class Store:
    """The edge database. ``async with await Store.open(path) as store`` or ``open``/``close``."""

    def __init__(self, db: aiosqlite.Connection, conn: sqlite3.Connection, path: Path, cap: OutboxCap | None = None,
                 *, store_id: str = "", retention: Retention | None = None) -> None:
        self._db = db
        self.path = path
        self.store_id = store_id
        """This database's instance id (``meta.store_id``): a uuid4 in hex, made when the database was
        created and kept in it; every uplink envelope carries it (see :mod:`mqtt.envelope`)."""
        self._lock = asyncio.Lock()
        self.outbox = Outbox(self, cap, retention)
        """The outbox's counts, its cap and its upkeep."""
        self._group = GroupCommit(db, conn, self._lock, self._committed)

    @classmethod
    async def open(cls, path: Path, *, cap: OutboxCap | None = None, retention: Retention | None = None) -> Store:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        made: list[sqlite3.Connection] = []
        # isolation_level=None: no implicit transactions; Store.transaction issues BEGIN itself.
        db = await aiosqlite.connect(path, isolation_level=None, factory=connection_factory(made))
        try:
            db.row_factory = sqlite3.Row
            mode = await scalar(db, "PRAGMA journal_mode=WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await migrate(db, path)
            store = cls(db, made[0], path, cap, store_id=await store_id(db), retention=retention)
            await store.outbox.recount()
        except BaseException:
            await db.close()
            raise
        log.info("store.opened", path=str(path), schema_version=SCHEMA_VERSION, store_id=store.store_id,
                 outbox_backlog=store.outbox_backlog)
        return store

    async def close(self) -> None:
        await self._group.close()
        if self.outbox.unreported:  # refusals not reported yet: the next start would not know of them
            try:
                await self.outbox.report_drops(now=True)
            except Exception as exc:  # closing must not fail for it; the warning says what is lost
                log.warning("outbox.refusals_not_reported", refused=self.outbox.unreported, error=repr(exc))
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # the units of work

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """One atomic unit of work: commits on success, rolls back on any exception."""
        async with self._lock:
            tx = StoreTransaction(self._db, self.outbox.refuse)
            committing = False
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield tx
                committing = True
                await self._db.execute("COMMIT")
            except BaseException:
                # aiosqlite runs statements in order on its own thread, so a statement still in
                # flight from a cancelled body finishes before this ROLLBACK; after a COMMIT that
                # did run, the ROLLBACK finds no transaction and is ignored.
                with suppress(sqlite3.OperationalError):
                    await self._db.execute("ROLLBACK")
                raise
            finally:
                # Wake the drainer even when the COMMIT await was cancelled (the COMMIT may still
                # have run); a spurious wake-up costs one empty query.
                if committing:
                    self.outbox.added(tx.emitted, tx.emitted_bytes, tx.refused)

    @asynccontextmanager
    async def writes(self) -> AsyncIterator[StoreWrites]:
        """A write-only unit of work, committed together with the others queued at the same time
        (:mod:`edge.store.group_commit`).

        Returns once its transaction committed; a body that raises queues nothing.
        """
        unit = StoreWrites(self.outbox.refuse)
        yield unit
        if unit.statements or unit.counted:
            await self._group.commit(unit)
        elif unit.refused:
            self.outbox.added(0, 0, unit.refused)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[StoreTransaction]:
        """Reads of one statement each, with no BEGIN/COMMIT (one trip to the database thread each). The
        lock keeps them out of another coroutine's open transaction (same connection: they would see rows
        that may still roll back) and after a commit in flight."""
        async with self._lock:
            yield StoreTransaction(self._db)

    def _committed(self, unit: StoreWrites) -> None:
        self.outbox.added(unit.emitted, unit.emitted_bytes, unit.refused)

    # the outbox, for the uplink and the admin API (see Outbox)

    @property
    def cap(self) -> OutboxCap:
        return self.outbox.cap

    @property
    def retention(self) -> Retention:
        return self.outbox.retention

    @property
    def dropped(self) -> collections.Counter[str]:
        """Envelopes dropped or refused at the cap since start, by type."""
        return self.outbox.dropped

    @property
    def outbox_changed(self) -> asyncio.Event:
        """Set after a commit that added outbox rows; the uplink's drainer waits on it."""
        return self.outbox.changed

    @property
    def bays_lost(self) -> asyncio.Event:
        """Set when the cap cost bay changes: the current bay states should be queued again."""
        return self.outbox.bays_lost

    @property
    def outbox_backlog(self) -> int:
        return self.outbox.backlog

    @property
    def outbox_bytes(self) -> int:
        """Estimated bytes of the rows waiting (type + body + ``ROW_OVERHEAD_BYTES`` each)."""
        return self.outbox.bytes

    def outbox_status(self) -> OutboxStatus:
        return self.outbox.status()

    async def outbox_batch(self, limit: int = 100, *, sending: bool = False) -> list[OutboxRow]:
        """The oldest ``limit`` rows (see :meth:`Outbox.batch`)."""
        return await self.outbox.batch(limit, sending=sending)

    async def delete_outbox(self, seqs: Iterable[int]) -> int:
        """Forget rows the broker acknowledged (see :meth:`Outbox.delete`)."""
        return await self.outbox.delete(seqs)

    async def maintain(self, *, interval: float = 1.0, recount_every: float = 60.0,
                       history_days: float = HISTORY_DAYS) -> None:
        """The outbox's upkeep and the history's pruning, until cancelled (see :meth:`Outbox.maintain`)."""
        await self.outbox.maintain(interval=interval, recount_every=recount_every, history_days=history_days)

    async def enforce_cap(self) -> int:
        return await self.outbox.enforce_cap()

    async def prune_sent(self, now: datetime) -> int:
        return await self.outbox.prune_sent(now)

    async def sent_count(self) -> int:
        """Acknowledged envelopes kept for a resend."""
        return await self.outbox.sent_count()

    async def prune_history(self, before: datetime) -> int:
        """Forget the site's own history older than ``before``: charger notifications, the CALLs sent
        to chargers, handled cloud commands. Sessions are kept (they recognise repeated starts)."""
        cutoff = iso(before)
        async with self.transaction() as tx:
            deleted = await tx._run("DELETE FROM charger_events WHERE received_at < ?", (cutoff,))
            deleted += await tx._run("DELETE FROM charger_calls WHERE sent_at < ?", (cutoff,))
            deleted += await tx._run("DELETE FROM handled_commands WHERE handled_at < ?", (cutoff,))
        if deleted:
            log.info("store.history_pruned", rows=deleted, before=cutoff)
        return deleted

    # conveniences for callers that need one read or one write

    async def authlist_version(self) -> int:
        async with self.transaction() as tx:
            return await tx.authlist_version()

    async def register_charger(self, charger_id: str) -> bool:
        """Provision a charger id so it may connect when unknown chargers are refused."""
        async with self.transaction() as tx:
            return await tx.register_charger(charger_id, datetime.now(UTC))

    async def get_charger(self, charger_id: str) -> ChargerRecord | None:
        # Asked at every handshake: one statement needs no BEGIN/COMMIT (one trip to the thread).
        async with self._lock:  # as reading(), without its context manager's cost on the hot path
            return await StoreTransaction(self._db).get_charger(charger_id)

    async def get_transaction(self, transaction_id: int) -> TransactionRecord | None:
        async with self.transaction() as tx:
            return await tx.get_transaction(transaction_id)

    async def auth_entries(self) -> list[AuthEntry]:
        async with self.transaction() as tx:
            return await tx.auth_entries()
