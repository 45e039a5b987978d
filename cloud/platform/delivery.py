"""End-to-end delivery of the uplink: the cloud side. Finds what the broker lost and asks for it again.

A broker may acknowledge an envelope and then lose it (a crash before it saved it; see
mqtt/README.md, "Delivery"). The edge therefore numbers the envelopes of each uplink category
of a store instance 1, 2, 3, … with no hole (``Envelope.category_seq``), keeps acknowledged ones
for a retention window, and reports its high-water marks (the last number of each category) in
its hello and every minute. A service that reads a category tracks one *stream* per (site,
store instance, category) in its own database (``uplink_streams``):

* ``done_through``: every number up to it arrived (or is gone, or was given up); above it, the
  ranges that arrived (``received``) and the highest number known to exist (``high_water``);
* a *gap* is a number between ``done_through`` and ``high_water`` that did not arrive. One that
  lasts :attr:`Delivery.grace` seconds is asked for again with a ``site.resend`` command over the
  command path, at most :data:`mqtt.payloads.MAX_RESEND_RANGE` numbers per command, with back-off
  between tries of the same range;
* the edge publishes the envelopes again (their own ids: the inbox drops what did arrive) and
  answers ``site.resent``; what it says is ``gone`` (dropped on purpose at its cap, or past its
  retention) is counted and never asked for again. After :attr:`Delivery.max_requests` tries
  without an answer the range is given up (counted as lost, logged as an error); a try counts
  only when the edge was heard from since the one before, so a site that is offline (its
  commands wait at the broker) keeps its ranges, and its hello starts the tries anew.

A new store instance (a replaced edge database) is a new stream from 1: nothing merges.
Envelopes without ``store_id`` or ``category_seq`` (older edges) are not tracked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloud.platform.backoff import delay
from cloud.platform.db import Database
from cloud.platform.metrics import UPLINK_GONE, UPLINK_LOST, UPLINK_RESEND_REQUESTS
from cloud.platform.outbox import Transaction
from cloud.platform.tables import uplink_streams
from mqtt import Command, Envelope
from mqtt.payloads import MAX_RESEND_RANGE, Resend
from mqtt.topics import category_of

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SiteUplink:
    """What one service knows of a site's uplink (:meth:`Delivery.backlog`)."""

    missing: dict[str, int]
    """Per category: envelopes the edge numbered (up to its last reported high-water mark) that did not
    arrive: in flight, waiting at the edge, or lost and being asked for again."""
    heard_at: datetime | None
    """The last time anything of the site's edge reached one of its streams (its high-water marks
    come every minute while it is connected)."""


@dataclass
class Stream:
    """What arrived of one (site, store instance, category): pure bookkeeping, no I/O."""

    done_through: int = 0
    received: list[list[int]] = field(default_factory=list)
    """Sorted, disjoint ``[first, last]`` ranges that arrived above ``done_through + 1``."""
    high_water: int = 0

    def arrived(self, first: int, last: int | None = None) -> None:
        """Book ``first``..``last`` as done (arrived, gone or given up)."""
        last = first if last is None else last
        self.high_water = max(self.high_water, last)
        if last <= self.done_through:
            return
        first = max(first, self.done_through + 1)
        merged: list[list[int]] = []
        for a, b in self.received:
            if b + 1 < first or a > last + 1:
                merged.append([a, b])
            else:
                first, last = min(first, a), max(last, b)
        merged.append([first, last])
        merged.sort()
        while merged and merged[0][0] <= self.done_through + 1:
            self.done_through = max(self.done_through, merged.pop(0)[1])
        self.received = merged

    def heard_of(self, high_water: int) -> None:
        self.high_water = max(self.high_water, high_water)

    def first_gap(self) -> tuple[int, int] | None:
        """The lowest missing range, or None."""
        if self.received:
            return self.done_through + 1, self.received[0][0] - 1
        if self.high_water > self.done_through:
            return self.done_through + 1, self.high_water
        return None

    def gaps(self) -> list[tuple[int, int]]:
        """Every missing range, lowest first."""
        out: list[tuple[int, int]] = []
        low = self.done_through + 1
        for a, b in self.received:
            if a > low:
                out.append((low, a - 1))
            low = b + 1
        if self.high_water >= low:
            out.append((low, self.high_water))
        return out

    def missing(self) -> int:
        inside = sum(b - a + 1 for a, b in self.received)
        return max(0, self.high_water - self.done_through - inside)


Key = tuple[str, str, str]
"""(site_id, store_id, category)."""

Send = Callable[[Command], Awaitable[None]]


class Delivery:
    """The gap tracker of one MQTT link (one consumer), over the service's database."""

    def __init__(self, db: Database, *, consumer: str, service: str, categories: Sequence[str],
                 grace: float = 5.0, max_requests: int = 8, check_every: float = 1.0,
                 commands_per_check: int = 10, command_ttl: timedelta = timedelta(minutes=1)) -> None:
        self._db = db
        self.consumer = consumer
        self._service = service
        self.categories = frozenset(categories)
        self.grace = grace
        """Seconds a gap may last before it is asked for (envelopes of two topics may cross)."""
        self.max_requests = max_requests
        self.check_every = check_every
        self.commands_per_check = commands_per_check
        """At most this many site.resend per stream and check (each of at most MAX_RESEND_RANGE numbers)."""
        self._ttl = command_ttl
        self.owns: Callable[[str], bool] | None = None
        """Which sites this replica asks gaps for (partitioned ingest: the sites of its partitions); None: all."""
        self.turn_for: Callable[[str], asyncio.Lock] | None = None
        """Partitioned ingest: the lock of a site's partition, held by its batches; :meth:`check` takes it per
        stream instead of :attr:`turn`."""
        self.turn = asyncio.Lock()
        """Held by the link around each transaction that touches the streams, and by :meth:`check`,
        so their read-modify-writes never overlap (one consuming replica per service)."""

    def numbered(self, site_id: str | None, payload: bytes) -> Envelope | None:
        """What can still be read of a malformed envelope's number (to book it as arrived), or None."""
        try:
            data = json.loads(payload)
            store_id, seq, type_ = data["store_id"], data["category_seq"], data["type"]
            if site_id is None or not isinstance(store_id, str) or type(seq) is not int or seq < 1 \
                    or category_of(str(type_)) not in self.categories:
                return None
        except (ValueError, TypeError, KeyError):
            return None
        return Envelope.model_construct(site_id=site_id, store_id=store_id, category_seq=seq, type=str(type_),
                                        body={})

    # --- arrivals, in the link's transaction ------------------------------------------------

    async def observe(self, tx: Transaction, envelopes: Iterable[Envelope], *, now: datetime | None = None) -> None:
        """Book what arrived (and what the edge reported) in the transaction that handled it."""
        arrived: dict[Key, list[int]] = {}
        heard: dict[Key, int] = {}
        hellos: set[Key] = set()
        answers: list[tuple[Key, dict[str, Any]]] = []
        for envelope in envelopes:
            if envelope.store_id is None:
                continue
            if envelope.category_seq is not None and category_of(envelope.type) in self.categories:
                key = (envelope.site_id, envelope.store_id, category_of(envelope.type))
                arrived.setdefault(key, []).append(envelope.category_seq)
            if envelope.type in ("site.hello", "site.high_water"):
                for category, mark in dict(envelope.body.get("high_water") or {}).items():
                    if category in self.categories and isinstance(mark, int) and mark > 0:
                        key = (envelope.site_id, envelope.store_id, category)
                        heard[key] = max(heard.get(key, 0), mark)
                        if envelope.type == "site.hello":
                            hellos.add(key)
            elif envelope.type == "site.resent" and envelope.body.get("category") in self.categories:
                store = envelope.body.get("store_id") or envelope.store_id
                answers.append(((envelope.site_id, str(store), str(envelope.body["category"])), envelope.body))
        keys = set(arrived) | set(heard) | {key for key, _ in answers}
        if not keys:
            return
        now = now or datetime.now(UTC)
        for key in sorted(keys):
            stream, row = await self._load(tx, key)
            before = stream.first_gap()
            for seq in sorted(arrived.get(key, ())):
                stream.arrived(seq)
            stream.heard_of(heard.get(key, 0))
            requests, next_at = (row["requests"], row["next_request_at"]) if row else (0, None)
            gone = lost = 0
            for _, body in (answer for answer in answers if answer[0] == key):
                if body.get("unknown_store") and stream.missing():
                    lost += stream.missing()
                    stream.arrived(stream.done_through + 1, stream.high_water)
                    log.error("uplink.store_gone", service=self._service, site_id=key[0], store_id=key[1],
                              category=key[2], lost=lost, hint="the site's edge database was replaced")
                for first, last in body.get("gone") or ():
                    missing_before = stream.missing()
                    stream.arrived(int(first), int(last))
                    gone += missing_before - stream.missing()
                next_at = now + timedelta(seconds=self.grace)  # what it resent may still be on its way
            if gone:
                UPLINK_GONE.labels(self._service, key[2]).inc(gone)
                log.warning("uplink.gone", service=self._service, site_id=key[0], store_id=key[1], category=key[2],
                            gone=gone)
            if lost:
                UPLINK_LOST.labels(self._service, key[2]).inc(lost)
            after = stream.first_gap()
            if after != before:
                # Progress (or a new gap): the range starts its own tries, once nothing moved for the
                # grace, so a resend still arriving (a slow consumer, a long range) is not asked again.
                requests = 0
                if after is not None:
                    next_at = now + timedelta(seconds=self.grace)
            elif after is not None and key in hellos:
                requests, next_at = 0, now + timedelta(seconds=self.grace)  # back online: ask soon, tries anew
            if after is None:
                requests, next_at = 0, None
            await self._save(tx, key, stream, row is None, requests=requests, next_request_at=next_at,
                             gone=gone, lost=lost, now=now)

    async def _load(self, tx: Transaction, key: Key) -> tuple[Stream, Any]:
        query = select(uplink_streams).where(self._where(key))
        if not tx.is_sqlite:
            query = query.with_for_update()
        row = (await tx.session.execute(query)).mappings().first()
        if row is None:
            return Stream(), None
        return Stream(done_through=row["done_through"], received=json.loads(row["received"]),
                      high_water=row["high_water"]), row

    def _where(self, key: Key) -> Any:
        c = uplink_streams.c
        return and_(c.consumer == self.consumer, c.site_id == key[0], c.store_id == key[1], c.category == key[2])

    async def _save(self, tx: Transaction, key: Key, stream: Stream, new: bool, *, requests: int,
                    next_request_at: datetime | None, gone: int, lost: int, now: datetime) -> None:
        values = {"done_through": stream.done_through, "received": json.dumps(stream.received),
                  "high_water": stream.high_water, "requests": requests, "next_request_at": next_request_at,
                  "heard_at": now, "updated_at": now}
        if new:
            dialect = sqlite if tx.is_sqlite else postgresql
            await tx.session.execute(dialect.insert(uplink_streams).values(
                consumer=self.consumer, site_id=key[0], store_id=key[1], category=key[2], gone=gone, lost=lost,
                **values))
            return
        c = uplink_streams.c
        await tx.session.execute(update(uplink_streams).where(self._where(key)).values(
            gone=c.gone + gone, lost=c.lost + lost, **values))

    # --- asking again -------------------------------------------------------------------

    async def check(self, send: Send, now: datetime | None = None) -> int:
        """Ask for the first gap of every stream whose time came; give up a range after
        :attr:`max_requests` tries. Returns how many commands were sent."""
        now = now or datetime.now(UTC)
        if self.turn_for is None:
            async with self.turn:
                return await self._check(send, now, locked=True)
        return await self._check(send, now, locked=False)

    async def _check(self, send: Send, now: datetime, *, locked: bool) -> int:
        c = uplink_streams.c
        sent = 0
        async with self._db.session() as session:
            rows = (await session.execute(select(uplink_streams).where(
                c.consumer == self.consumer, c.next_request_at.is_not(None), c.next_request_at <= now,
            ))).mappings().all()
        for row in rows:
            if self.owns is not None and not self.owns(row["site_id"]):
                continue  # another replica reads this site's partition and asks for its gaps
            if locked:
                sent += await self._check_stream(send, row, now)
                continue
            assert self.turn_for is not None
            async with self.turn_for(row["site_id"]):  # read again under the partition's lock
                key = (row["site_id"], row["store_id"], row["category"])
                async with self._db.session() as session:
                    fresh = (await session.execute(select(uplink_streams).where(self._where(key)))).mappings().first()
                if fresh is not None and fresh["next_request_at"] is not None and fresh["next_request_at"] <= now:
                    sent += await self._check_stream(send, fresh, now)
        return sent

    async def _check_stream(self, send: Send, row: Any, now: datetime) -> int:
        c = uplink_streams.c
        sent = 0
        stream = Stream(done_through=row["done_through"], received=json.loads(row["received"]),
                        high_water=row["high_water"])
        gap = stream.first_gap()
        key: Key = (row["site_id"], row["store_id"], row["category"])
        values: dict[str, Any]
        # A try counts only if the edge was heard from since the one before: an offline site
        # (its commands wait at the broker) must not have its ranges given up.
        heard_since = row["asked_at"] is None or (
            row["heard_at"] is not None and row["heard_at"] > row["asked_at"])
        if gap is None:
            values = {"requests": 0, "next_request_at": None}
        elif row["requests"] >= self.max_requests and heard_since:
            first, last = gap[0], min(gap[1], gap[0] + MAX_RESEND_RANGE - 1)
            stream.arrived(first, last)
            lost = last - first + 1
            UPLINK_LOST.labels(self._service, key[2]).inc(lost)
            log.error("uplink.lost", service=self._service, site_id=key[0], store_id=key[1],
                      category=key[2], first_seq=first, last_seq=last, requests=row["requests"],
                      hint="the edge never answered; the envelopes are given up")
            values = {"done_through": stream.done_through, "received": json.dumps(stream.received),
                      "lost": c.lost + lost, "requests": 0,
                      "next_request_at": now if stream.first_gap() else None}
        else:
            tries = row["requests"] + (1 if heard_since else 0)
            sent = await self._ask(send, key, stream, attempt=tries, now=now)
            wait = delay(max(tries, 1), initial=max(self.grace, 1.0), maximum=60.0, jitter=0.2)
            values = {"requests": tries, "asked_at": now, "next_request_at": now + timedelta(seconds=wait)}
        async with self._db.session() as session, session.begin():
            await session.execute(update(uplink_streams).where(self._where(key)).values(
                updated_at=now, **values))
        return sent

    async def _ask(self, send: Send, key: Key, stream: Stream, *, attempt: int, now: datetime) -> int:
        """Send site.resend for the stream's gaps, lowest first, in ranges of MAX_RESEND_RANGE."""
        ranges: list[tuple[int, int]] = []
        for first, last in stream.gaps():
            while first <= last and len(ranges) < self.commands_per_check:
                ranges.append((first, min(last, first + MAX_RESEND_RANGE - 1)))
                first += MAX_RESEND_RANGE
        sent = 0
        for first, last in ranges:
            command = Command.new(key[0], Resend(store_id=key[1], category=key[2], first_seq=first,  # type: ignore[arg-type]
                                                 last_seq=last), ttl=self._ttl, now=now)
            try:
                await send(command)
            except Exception as exc:  # the broker is away: the back-off tries again
                log.warning("uplink.resend_not_sent", service=self._service, site_id=key[0],
                            error=str(exc) or repr(exc))
                break
            sent += 1
            UPLINK_RESEND_REQUESTS.labels(self._service, key[2]).inc()
            log.info("uplink.resend_requested", service=self._service, site_id=key[0], store_id=key[1],
                     category=key[2], first_seq=first, last_seq=last, attempt=attempt)
        return sent

    async def run(self, send: Send) -> None:
        """Check every :attr:`check_every` seconds until cancelled (the link runs it while connected)."""
        while True:
            await asyncio.sleep(self.check_every)
            try:
                await self.check(send)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next turn tries again
                log.warning("uplink.gap_check_failed", service=self._service, error=repr(exc))

    async def backlog(self) -> dict[str, SiteUplink]:
        """Per site, what is missing of each category (every store instance of it summed) and when its
        edge was last heard: the edge link's backlog as this consumer sees it."""
        c = uplink_streams.c
        query = select(c.site_id, c.category, c.done_through, c.received, c.high_water, c.heard_at).where(
            c.consumer == self.consumer)
        async with self._db.session() as session:
            rows = (await session.execute(query)).all()
        missing: dict[str, dict[str, int]] = {}
        heard: dict[str, datetime | None] = {}
        for site_id, category, done_through, received, high_water, heard_at in rows:
            stream = Stream(done_through=done_through, received=json.loads(received), high_water=high_water)
            by_category = missing.setdefault(site_id, {})
            by_category[category] = by_category.get(category, 0) + stream.missing()
            last = heard.get(site_id)
            heard[site_id] = heard_at if last is None or (heard_at is not None and heard_at > last) else last
        return {site: SiteUplink(missing=dict(sorted(by_category.items())), heard_at=heard[site])
                for site, by_category in sorted(missing.items())}

    async def streams(self, site_id: str | None = None) -> list[dict[str, Any]]:
        """The streams of this consumer (for operators and tests): what is missing, gone and lost."""
        c = uplink_streams.c
        query = select(uplink_streams).where(c.consumer == self.consumer)
        if site_id is not None:
            query = query.where(c.site_id == site_id)
        async with self._db.session() as session:
            rows = (await session.execute(query.order_by(c.site_id, c.store_id, c.category))).mappings().all()
        out = []
        for row in rows:
            stream = Stream(done_through=row["done_through"], received=json.loads(row["received"]),
                            high_water=row["high_water"])
            out.append({"site_id": row["site_id"], "store_id": row["store_id"], "category": row["category"],
                        "done_through": stream.done_through, "high_water": stream.high_water,
                        "missing": stream.missing(), "gone": row["gone"], "lost": row["lost"],
                        "requests": row["requests"]})
        return out
