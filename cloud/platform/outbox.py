"""Transactional outbox and idempotent inbox.

A use case changes its tables and records the events it causes in one transaction
(:func:`transaction`); the :class:`OutboxRelay` publishes committed events and deletes each
only after the bus confirmed it. Consumers claim each message id once per consumer in the
same transaction as their own change (:meth:`Transaction.claim`), so a redelivered message
changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

import structlog
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.contracts.base import Event, EventBody, UnknownEvent
from cloud.platform.backoff import Backoff
from cloud.platform.db import Database
from cloud.platform.metrics import EVENTS_PUBLISHED, OUTBOX_BACKLOG
from cloud.platform.ports import EventBus
from cloud.platform.tables import inbox, outbox

log = structlog.get_logger(__name__)


class Transaction:
    """One database transaction of a use case, with its outbox and inbox."""

    def __init__(self, session: AsyncSession, db: Database, *, source: str = "",
                 publishes: Collection[type[EventBody]] | None = None) -> None:
        self.session = session
        self._db = db
        self._source = source
        self._publishes = publishes
        self.events: list[Event] = []

    @property
    def is_sqlite(self) -> bool:
        """For a repository's dialect-specific statements (upserts)."""
        return self._db.is_sqlite

    async def one_snapshot(self) -> None:
        """Every later read of this transaction sees the database as of its first one (PostgreSQL's
        REPEATABLE READ), instead of each read seeing what was committed just before it (READ COMMITTED):
        for a read made of several queries, whose rows a writer may commit between them. Call it before
        the transaction's first statement. SQLite's transactions see one snapshot already."""
        if not self._db.is_sqlite:
            await self.session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))

    def emit(self, body: EventBody) -> None:
        """Record a typed event; it is published only if the transaction commits.

        Refused (:class:`~cloud.contracts.UnknownEvent`) when the service's spec does not declare
        that it publishes this event: the catalogue of who publishes what must stay true.
        """
        if self._publishes is not None and type(body) not in self._publishes:
            raise UnknownEvent(f"{self._source or 'this service'} does not declare {body.NAME} "
                               f"(v{body.VERSION}) in its SPEC.publishes")
        event = Event.of(body, source=self._source)
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        self.events.append(event.model_copy(update={"request_id": request_id}) if request_id else event)

    async def flush_outbox(self) -> None:
        if not self.events:
            return
        now = datetime.now(UTC)
        await self.session.execute(
            insert(outbox),
            [{"event_id": str(e.id), "name": e.name, "payload": e.model_dump_json(), "created_at": now}
             for e in self.events],
        )

    async def claim(self, message_id: str, consumer: str) -> bool:
        """Mark ``message_id`` processed by ``consumer``; False when it already was."""
        values = {"message_id": message_id, "consumer": consumer, "processed_at": datetime.now(UTC)}
        dialect = postgresql if not self._db.is_sqlite else sqlite
        statement = dialect.insert(inbox).values(**values).on_conflict_do_nothing()
        result = await self.session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def claim_many(self, message_ids: Sequence[str], consumer: str) -> set[str]:
        """Mark every id of ``message_ids`` processed by ``consumer`` in one statement (``INSERT … ON CONFLICT DO
        NOTHING RETURNING``); returns the ids newly claimed, those already processed are left out. An id that
        comes twice in the list is claimed once (the caller handles its first occurrence only)."""
        unique = list(dict.fromkeys(message_ids))
        if not unique:
            return set()
        now = datetime.now(UTC)
        dialect = postgresql if not self._db.is_sqlite else sqlite
        statement = dialect.insert(inbox).on_conflict_do_nothing().returning(inbox.c.message_id)
        # A list of rows: SQLAlchemy sends them as multi-row VALUES ("insertmanyvalues"), the statement compiled once.
        rows = [{"message_id": message_id, "consumer": consumer, "processed_at": now} for message_id in unique]
        return set((await self.session.execute(statement, rows)).scalars())


class Outbox:
    """Per-database helpers: open transactions, wake the relay after commits."""

    def __init__(self, db: Database, *, source: str = "",
                 publishes: Collection[type[EventBody]] | None = None) -> None:
        self.db = db
        self.source = source
        self.publishes = publishes
        self.committed = asyncio.Event()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.db.session() as session, session.begin():
            tx = Transaction(session, self.db, source=self.source, publishes=self.publishes)
            yield tx
            await tx.flush_outbox()
        if tx.events:
            self.committed.set()


class OutboxRelay:
    """Publishes committed outbox rows in order; deletes each after the bus confirmed it."""

    def __init__(self, outbox_: Outbox, bus: EventBus, *, service: str, batch: int = 100,
                 poll_seconds: float = 1.0) -> None:
        self._outbox = outbox_
        self._db = outbox_.db
        self._bus = bus
        self._service = service
        self._batch = batch
        self._poll = poll_seconds

    async def run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            # Cleared before reading, not after: a commit while a batch is being published sets it again, so its
            # rows go out at once instead of waiting for the next poll.
            self._outbox.committed.clear()
            try:
                sent = await self.relay_once()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: keep rows, retry with back-off
                retry_in = backoff.next_delay()
                log.warning("outbox relay failed; will retry", error=str(exc), retry_in=round(retry_in, 2))
                await asyncio.sleep(retry_in)
                continue
            if sent < self._batch:
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                        await self._outbox.committed.wait()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events were confirmed."""
        async with self._db.session() as session, session.begin():
            query = select(outbox.c.id, outbox.c.payload).order_by(outbox.c.id).limit(self._batch)
            if not self._db.is_sqlite:
                # Several replicas may relay the same outbox; each row goes to one of them.
                query = query.with_for_update(skip_locked=True)
            rows = (await session.execute(query)).all()
            for _row_id, payload in rows:
                event = Event.model_validate(json.loads(payload))
                await self._bus.publish(event)
                EVENTS_PUBLISHED.labels(self._service, event.name).inc()
            if rows:  # one statement for the batch: the deletes commit together anyway, after every confirm
                await session.execute(delete(outbox).where(outbox.c.id.in_([row_id for row_id, _ in rows])))
            backlog = await session.scalar(select(func.count()).select_from(outbox))
        OUTBOX_BACKLOG.labels(self._service).set(max(0, (backlog or 0)))
        return len(rows)
