"""Parked messages: what a consumer gave up on, kept in its service's database until replayed.

A message is parked, with the reason, when it can never be handled as it is: an event that
breaks its contract (unknown major version, a payload that fails its schema), an envelope that
does not decode, or one whose handler failed on every attempt. Both event buses and the MQTT
link park into the consuming service's ``parked_messages`` table (:meth:`ParkedMessages.park`).

``evpark events parked`` lists them; ``evpark events replay`` marks them
(:meth:`ParkedMessages.request_replay`) and the running service re-delivers each marked message
to the consumer that parked it (:class:`Replayer`), then deletes the row. The consumer's inbox
makes that exactly once: a replay that is repeated (a crash between the delivery and the
delete) finds the message id claimed and changes nothing. A replay that fails again stays
parked, with the new reason, and is no longer marked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import delete, insert, select, update

from cloud.platform.db import Database
from cloud.platform.ports import ParkedMessage
from cloud.platform.tables import parked

log = structlog.get_logger(__name__)

ReplayHandler = Callable[[str, str], Awaitable[None]]
"""Re-delivers one parked message: ``(source, payload)``; raising means it failed again."""

MAX_ERROR = 2000


@dataclass(frozen=True)
class ParkedRow:
    id: int
    consumer: str | None
    source: str
    payload: str
    error: str
    attempts: int
    received_at: datetime
    replay_requested_at: datetime | None

    @property
    def event_name(self) -> str | None:
        """The event's (or envelope's) type, if the payload is readable JSON."""
        try:
            data = json.loads(self.payload)
        except ValueError:
            return None
        value = data.get("name") or data.get("type") if isinstance(data, dict) else None
        return str(value) if value else None


class ParkedMessages:
    """The parked-message table of one service's database."""

    def __init__(self, db: Database, *, service: str) -> None:
        self.db = db
        self.service = service

    async def park(self, message: ParkedMessage, *, consumer: str) -> None:
        """Keep ``message`` durably; raises if the database cannot (the caller keeps the message)."""
        async with self.db.session() as session, session.begin():
            await session.execute(insert(parked).values(
                source=message.source, payload=message.payload, error=message.error[:MAX_ERROR],
                received_at=datetime.now(UTC), consumer=consumer, attempts=message.attempts))
        log.error("message parked", consumer=consumer, source=message.source, error=message.error,
                  attempts=message.attempts)

    def sink(self, consumer: str) -> Callable[[ParkedMessage], Awaitable[None]]:
        async def park(message: ParkedMessage) -> None:
            await self.park(message, consumer=consumer)

        return park

    async def rows(self, ids: Collection[int] | None = None) -> list[ParkedRow]:
        async with self.db.session() as session:
            query = select(parked).order_by(parked.c.id)
            if ids:
                query = query.where(parked.c.id.in_(list(ids)))
            rows = (await session.execute(query)).mappings().all()
        return [ParkedRow(id=r["id"], consumer=r["consumer"], source=r["source"], payload=r["payload"],
                          error=r["error"], attempts=r["attempts"], received_at=r["received_at"],
                          replay_requested_at=r["replay_requested_at"]) for r in rows]

    async def request_replay(self, ids: Collection[int] | None = None) -> list[int]:
        """Mark messages (all, or ``ids``) for replay; returns the ids marked."""
        now = datetime.now(UTC)
        async with self.db.session() as session, session.begin():
            query = update(parked).values(replay_requested_at=now).returning(parked.c.id)
            if ids:
                query = query.where(parked.c.id.in_(list(ids)))
            marked = sorted((await session.execute(query)).scalars())
        return marked

    async def replay_requested(self, consumers: Collection[str], limit: int = 100) -> list[ParkedRow]:
        async with self.db.session() as session:
            ids = list((await session.execute(
                select(parked.c.id).where(parked.c.replay_requested_at.is_not(None),
                                          parked.c.consumer.in_(list(consumers)))
                .order_by(parked.c.id).limit(limit))).scalars())
        return await self.rows(ids) if ids else []

    async def replayed(self, row_id: int) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(delete(parked).where(parked.c.id == row_id))

    async def parked_again(self, row: ParkedRow, error: str) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(update(parked).where(parked.c.id == row.id).values(
                error=error[:MAX_ERROR], attempts=row.attempts + 1, replay_requested_at=None,
                received_at=datetime.now(UTC)))


class Replayer:
    """The service's replay loop: re-delivers each message marked for replay to its consumer."""

    def __init__(self, store: ParkedMessages, *, poll_seconds: float = 1.0) -> None:
        self._store = store
        self._poll = poll_seconds
        self.handlers: dict[str, ReplayHandler] = {}
        """Consumer name → how to re-deliver one of its messages."""

    def register(self, consumer: str, handler: ReplayHandler) -> None:
        if consumer in self.handlers:
            raise ValueError(f"consumer {consumer!r} is registered twice")
        self.handlers[consumer] = handler

    async def replay_once(self) -> int:
        """Re-deliver what is marked; returns how many were delivered."""
        delivered = 0
        for row in await self._store.replay_requested(self.handlers):
            handler = self.handlers[row.consumer or ""]
            try:
                await handler(row.source, row.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._store.parked_again(row, f"replay failed: {exc}")
                log.error("replayed message parked again", id=row.id, consumer=row.consumer, error=str(exc))
                continue
            await self._store.replayed(row.id)
            delivered += 1
            log.info("parked message replayed", id=row.id, consumer=row.consumer, name=row.event_name)
        return delivered

    async def run(self) -> None:
        # `evpark events replay` marks rows from another process: polling is how the service hears of it.
        while True:
            await self.replay_once()
            await asyncio.sleep(self._poll)
