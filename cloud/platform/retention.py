"""Inbox retention: the ids of consumed messages are forgotten once no copy of the message can come again.

The inbox (:meth:`~cloud.platform.outbox.Transaction.claim`) keeps one row per consumed message and consumer, so a
redelivered message changes nothing. A copy can come again only while someone still has the message to send: a
RabbitMQ redelivery comes within minutes, an edge re-sends an acknowledged envelope (``site.resend``) only while it
keeps it, 7 days by default (``[uplink] retention_days``). :class:`InboxRetention` deletes the rows older than
``EVPARK_INBOX_RETENTION_DAYS`` (14 by default; the settings refuse a window not longer than the edge's), in
chunks of :data:`CHUNK` rows, each in its own short transaction, through the index on the claim time. Every
service runs it (like the outbox relay); several replicas may: on PostgreSQL each skips the rows another is
deleting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete, select, tuple_

from cloud.platform.backoff import Backoff
from cloud.platform.db import Database
from cloud.platform.tables import inbox

log = structlog.get_logger(__name__)

CHUNK = 5_000
"""Inbox rows deleted per transaction."""
EVERY_SECONDS = 3_600.0
"""How often the inbox is pruned (rows are days old when they go: an hour more changes nothing)."""


class InboxRetention:
    """Deletes inbox rows claimed more than ``days`` ago, in chunks of ``chunk`` rows."""

    def __init__(self, db: Database, *, service: str, days: float, chunk: int = CHUNK,
                 every_seconds: float = EVERY_SECONDS,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if days <= 0 or chunk < 1:
            raise ValueError("the inbox retention needs a positive window and chunk")
        self._db = db
        self._service = service
        self._window = timedelta(days=days)
        self._chunk = chunk
        self._every = every_seconds
        self._clock = clock

    async def run(self) -> None:
        """Prune now and then every ``every_seconds``; a failure (the database away) is retried with back-off."""
        backoff = Backoff(initial=1.0, maximum=60.0)
        while True:
            try:
                deleted = await self.prune_once()
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry_in = backoff.next_delay()
                log.warning("inbox retention failed; will retry", service=self._service, error=repr(exc),
                            retry_in=round(retry_in, 2))
                await asyncio.sleep(retry_in)
                continue
            if deleted:
                log.info("inbox pruned", service=self._service, deleted=deleted,
                         older_than_days=self._window.total_seconds() / 86_400)
            await asyncio.sleep(self._every)

    async def prune_once(self) -> int:
        """Delete every inbox row older than the window, a chunk per transaction; returns how many went."""
        cutoff = self._clock() - self._window
        total = 0
        while True:
            deleted = await self._delete_chunk(cutoff)
            total += deleted
            if deleted < self._chunk:
                return total
            await asyncio.sleep(0)  # let the service's other work in between chunks

    async def _delete_chunk(self, cutoff: datetime) -> int:
        oldest = select(inbox.c.message_id, inbox.c.consumer).where(inbox.c.processed_at < cutoff).limit(self._chunk)
        if not self._db.is_sqlite:
            oldest = oldest.with_for_update(skip_locked=True)  # another replica deletes those: skip them
        async with self._db.session() as session, session.begin():
            result = await session.execute(
                delete(inbox).where(tuple_(inbox.c.message_id, inbox.c.consumer).in_(oldest)))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
