"""The uplink outbox: what each row costs, its cap and the retention of acknowledged rows, and
:class:`Outbox`, which keeps the backlog's counts and runs the upkeep.

Bounded outbox: :class:`OutboxCap` limits the rows waiting for the broker (count and bytes,
estimated from the stored rows). At the cap, ``drop_oldest_telemetry`` deletes the oldest meter
samples, then the oldest bay changes (in :meth:`Outbox.maintain`, off the charger's path) and
``refuse_new`` stops storing new ones; session, charger and command records are never dropped
nor refused, so they may exceed the cap. Either way a ``site.outbox_dropped`` envelope tells the
cloud what was lost, and the metrics count it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import structlog

from edge.metrics import (
    OUTBOX_AT_CAP,
    OUTBOX_BACKLOG,
    OUTBOX_BYTES,
    OUTBOX_DROPPED,
    OUTBOX_OLDEST_AGE,
    RETENTION_PRUNED,
)
from edge.store.records import OutboxRow, iso
from mqtt.payloads import OutboxDropped
from mqtt.topics import category_of

if TYPE_CHECKING:
    from edge.store.unit_of_work import StoreTransaction, StoreWrites

log = structlog.get_logger("edge.store")

ROW_OVERHEAD_BYTES = 80
"""Per-row bytes besides type and body (envelope id, timestamp, seq, SQLite record header)."""

DROPPABLE_TYPES: tuple[str, ...] = ("session.meter", "bay.occupancy", "bay.usage")
"""What may be dropped or refused at the cap, in the order it is dropped. Sessions (started,
stopped), charger records and command results never are: billing depends on them."""

DROPPABLE = frozenset(DROPPABLE_TYPES)
BAY_TYPES = frozenset({"bay.occupancy", "bay.usage"})
NOTHING: frozenset[str] = frozenset()
DROP_TO = 0.9
"""drop_oldest_telemetry drops down to this fraction of the cap, so it does not run at every commit."""
HISTORY_DAYS = 90.0
"""Days the edge keeps charger notifications, the CALLs it sent and handled commands."""
REPORT_EVERY = 10.0
"""Seconds between two site.outbox_dropped reports while refuse_new keeps refusing."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long acknowledged envelopes are kept to be published again (the site file's ``[uplink]``):
    ``retention_days`` or ``retention_envelopes``, whichever is reached first."""

    days: float = 7.0
    envelopes: int = 100_000

    def __post_init__(self) -> None:
        if self.days < 0 or self.envelopes < 0:
            raise ValueError("the retention of acknowledged envelopes must not be negative")


@dataclass(frozen=True, slots=True)
class ResendOutcome:
    """What :meth:`StoreTransaction.resend` did with a range of one category."""

    resent: int
    pending: int
    gone: list[tuple[int, int]]
    """``[first, last]`` ranges not kept any more (dropped at the cap, or past the retention)."""


def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def row_bytes(type_: str, body_text: str) -> int:
    return len(type_) + len(body_text) + ROW_OVERHEAD_BYTES


@dataclass(frozen=True, slots=True)
class OutboxCap:
    """How much the outbox may hold, and what happens at the cap (the site file's ``[uplink]``)."""

    max_events: int = 1_000_000
    max_bytes: int = 512 * 1024 * 1024
    policy: str = "drop_oldest_telemetry"  # or "refuse_new"

    def __post_init__(self) -> None:
        if self.policy not in ("drop_oldest_telemetry", "refuse_new"):
            raise ValueError(f"unknown outbox policy {self.policy!r}")
        if self.max_events < 1 or self.max_bytes < 1:
            raise ValueError("the outbox cap must be positive")

    def reached(self, events: int, size: int) -> bool:
        return events >= self.max_events or size >= self.max_bytes


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    backlog: int
    bytes: int
    oldest_ts: datetime | None
    cap: OutboxCap
    at_cap: bool
    dropped: Mapping[str, int]
    """Envelopes dropped or refused since the edge started, by type."""

    def age_seconds(self, now: datetime) -> float:
        return 0.0 if self.oldest_ts is None else max(0.0, (now - self.oldest_ts).total_seconds())

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "backlog": self.backlog, "backlog_bytes": self.bytes,
            "oldest_at": iso(self.oldest_ts), "oldest_age_s": round(self.age_seconds(now), 3),
            "at_cap": self.at_cap,
            "cap": {"max_events": self.cap.max_events, "max_bytes": self.cap.max_bytes, "policy": self.cap.policy},
            "dropped": dict(self.dropped), "dropped_total": sum(self.dropped.values()),
        }


class UplinkBody(Protocol):
    """A typed body of the MQTT contract (mqtt.payloads bodies and CommandResult)."""

    TYPE: ClassVar[str]

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


# category_seq: the next of the category; the outbox_category_seq trigger books it in outbox_streams
# (per row, so it also holds for the rows of one group commit's executemany).
INSERT_OUTBOX = """INSERT INTO outbox (envelope_id, type, body, ts, category, category_seq) VALUES
    (?1, ?2, ?3, ?4, ?5, coalesce((SELECT last_seq FROM outbox_streams WHERE category = ?5), 0) + 1)"""


class _EnvelopeIds:
    """Random (version 4) UUIDs as text, like ``str(uuid.uuid4())``, from the OS's random source 4 KiB
    at a time: one getrandom call per 256 envelopes instead of one each (a system call on every
    charger message, and a chance for the database thread to take the GIL)."""

    def __init__(self) -> None:
        self._pool = b""
        self._next = 0

    def __call__(self) -> str:
        at = self._next
        if at >= len(self._pool):
            self._pool, at = os.urandom(4096), 0
        self._next = at + 16
        raw = bytearray(self._pool[at:at + 16])
        raw[6] = raw[6] & 0x0F | 0x40  # version 4
        raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
        text = raw.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_envelope_id = _EnvelopeIds()


def outbox_row(body: UplinkBody, ts: datetime | None) -> tuple[str, str, str, str | None, str]:
    category = category_of(body.TYPE)  # refuse a type without an uplink topic now, not at drain time
    dump_json = getattr(body, "model_dump_json", None)
    text = dump_json() if dump_json is not None else json.dumps(body.model_dump(mode="json"))
    return (_envelope_id(), body.TYPE, text, iso(ts or datetime.now(UTC)), category)


class Units(Protocol):
    """The store's units of work, as the outbox uses them (see :class:`edge.store.Store`)."""

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]: ...

    def writes(self) -> AbstractAsyncContextManager[StoreWrites]: ...

    def reading(self) -> AbstractAsyncContextManager[StoreTransaction]: ...

    async def prune_history(self, before: datetime) -> int: ...


class Outbox:
    """The outbox's counts (kept in memory, recounted now and then), the cap's switch, and its upkeep.

    Every commit books its outbox rows here (:meth:`added`); the uplink reads and deletes rows
    through :meth:`batch` and :meth:`delete`; :meth:`maintain` enforces the cap and the retention.
    """

    def __init__(self, units: Units, cap: OutboxCap | None = None, retention: Retention | None = None) -> None:
        self._units = units
        self.cap = cap or OutboxCap()
        self.retention = retention or Retention()
        self._backlog = 0
        self._bytes = 0
        self.refuse: frozenset[str] = NOTHING
        """Types new units skip: DROPPABLE_TYPES while at the cap under refuse_new."""
        self._sizes: dict[int, int] = {}
        """Bytes of the rows read from the outbox and not yet deleted, by seq."""
        self._sending: set[int] = set()
        """Seqs the uplink took to publish and the broker has not acknowledged yet."""
        self._oldest_ts: datetime | None = None
        self.dropped: collections.Counter[str] = collections.Counter()
        """Envelopes dropped or refused at the cap since start, by type."""
        self._unreported: collections.Counter[str] = collections.Counter()
        self._last_report = 0.0
        self._maintenance = asyncio.Event()
        self.changed = asyncio.Event()
        """Set after a commit that added outbox rows; the uplink's drainer waits on it."""
        self.bays_lost = asyncio.Event()
        """Set when the cap cost bay changes (dropped, or refused and the cap since left): the
        cloud may hold stale bay states, so the current ones should be queued again."""
        self._bays_refused = False

    @property
    def backlog(self) -> int:
        return self._backlog

    @property
    def bytes(self) -> int:
        """Estimated bytes of the rows waiting (type + body + :data:`ROW_OVERHEAD_BYTES` each)."""
        return self._bytes

    @property
    def unreported(self) -> dict[str, int]:
        """Refusals not reported to the cloud yet, by type."""
        return dict(self._unreported)

    def status(self) -> OutboxStatus:
        return OutboxStatus(backlog=self._backlog, bytes=self._bytes, oldest_ts=self._oldest_ts, cap=self.cap,
                            at_cap=self.cap.reached(self._backlog, self._bytes), dropped=dict(self.dropped))

    def added(self, emitted: int, emitted_bytes: int, refused: Sequence[str]) -> None:
        """Book a commit's outbox rows (and the rows the cap refused)."""
        if emitted:
            if self._backlog == 0 and self._oldest_ts is None:
                self._oldest_ts = datetime.now(UTC)
            self._backlog += emitted
            self._bytes += emitted_bytes
            OUTBOX_BACKLOG.set(self._backlog)
            OUTBOX_BYTES.set(self._bytes)
            self.changed.set()
        if refused:
            for type_ in refused:
                OUTBOX_DROPPED.labels(type=type_, policy=self.cap.policy).inc()
            self.dropped.update(refused)
            self._unreported.update(refused)
            self._bays_refused = self._bays_refused or any(t in BAY_TYPES for t in refused)
            self._maintenance.set()
        # A commit that added nothing (the upkeep's own, when it could drop nothing) must not wake the upkeep
        # again: at the cap with every droppable row in flight, it spun on itself and starved the edge.
        self._check_cap(wake=bool(emitted))

    def _check_cap(self, *, wake: bool = True) -> None:
        """Keep the at-cap gauge and the refuse_new switch; wake the upkeep (``wake``) when over the cap."""
        at_cap = self.cap.reached(self._backlog, self._bytes)
        OUTBOX_AT_CAP.set(int(at_cap))
        if self.cap.policy == "refuse_new":
            refuse = DROPPABLE if at_cap else NOTHING
            if refuse is not self.refuse:
                self.refuse = refuse
                if not at_cap and self._bays_refused:
                    self._bays_refused = False
                    self.bays_lost.set()
                log.warning("outbox.at_cap" if at_cap else "outbox.below_cap", policy=self.cap.policy,
                            backlog=self._backlog, backlog_bytes=self._bytes)
                self._maintenance.set()  # report what was refused once the cap is left
        elif at_cap and wake:
            self._maintenance.set()

    async def recount(self) -> None:
        """Recount the outbox from the table (at open, and now and then against drift)."""
        async with self._units.reading() as tx:
            rows = await tx._all("SELECT count(*), total(length(type) + length(body)) FROM outbox")
            oldest = await tx._all("SELECT ts FROM outbox ORDER BY seq LIMIT 1")
        count, size = rows[0][0], rows[0][1]
        self._backlog = int(count)
        self._bytes = int(size) + self._backlog * ROW_OVERHEAD_BYTES
        self._oldest_ts = datetime.fromisoformat(oldest[0][0]) if oldest else None
        OUTBOX_BACKLOG.set(self._backlog)
        OUTBOX_BYTES.set(self._bytes)
        self._check_cap(wake=False)  # the upkeep recounts; at open, it runs first thing anyway

    async def batch(self, limit: int = 100, *, sending: bool = False) -> list[OutboxRow]:
        """The oldest ``limit`` rows. ``sending``: the uplink is about to publish them; the cap
        leaves them alone until :meth:`delete` (they may reach the cloud any moment)."""
        # One statement, so no BEGIN/COMMIT: one trip to the database thread. The lock keeps it out
        # of another coroutine's open transaction (same connection: it would see rows that may still
        # roll back) and after a commit in flight.
        async with self._units.reading() as tx:
            rows = await tx._all("SELECT * FROM outbox ORDER BY seq LIMIT ?", (limit,))
        for r in rows:
            self._sizes[r["seq"]] = row_bytes(r["type"], r["body"])
        if sending:
            self._sending.update(r["seq"] for r in rows)
        batch = [OutboxRow(seq=r["seq"], envelope_id=uuid.UUID(r["envelope_id"]), type=r["type"],
                           body=json.loads(r["body"]), ts=datetime.fromisoformat(r["ts"]),
                           category_seq=r["category_seq"]) for r in rows]
        if batch:
            self._oldest_ts = batch[0].ts
        return batch

    async def delete(self, seqs: Iterable[int]) -> int:
        """Forget rows the broker acknowledged from the outbox; they are kept in ``outbox_sent`` for the
        retention window (:class:`Retention`), to be published again if the cloud misses them."""
        seqs = list(seqs)
        if not seqs:
            return 0
        # Group-committed with the charger messages: the relay costs no fsync of its own.
        async with self._units.writes() as unit:
            unit.delete_outbox(seqs, keep=self.retention.envelopes > 0)
        # kept: the rows copied and the rows deleted are the same rows, counted once each
        deleted = unit.changed // 2 if self.retention.envelopes > 0 else unit.changed
        freed = sum(self._sizes.pop(seq, 0) for seq in seqs)
        self._sending.difference_update(seqs)
        self._forget(deleted, freed)
        return deleted

    def _forget(self, deleted: int, freed: int) -> None:
        self._backlog = max(0, self._backlog - deleted)
        self._bytes = max(0, self._bytes - freed) if self._backlog else 0
        if self._backlog == 0:
            self._oldest_ts = None
        OUTBOX_BACKLOG.set(self._backlog)
        OUTBOX_BYTES.set(self._bytes)
        self._check_cap()

    # the outbox's upkeep: the cap, the drop reports, the age gauge

    async def maintain(self, *, interval: float = 1.0, recount_every: float = 60.0,
                       history_days: float = HISTORY_DAYS) -> None:
        """Runs until cancelled: enforces the cap, reports drops, keeps the backlog-age gauge, and
        once an hour forgets charger notifications, calls and handled commands older than
        ``history_days``."""
        last_recount = time.monotonic()
        last_prune = last_retention = 0.0
        while True:
            self._maintenance.clear()
            try:
                if time.monotonic() - last_prune >= 3600:
                    last_prune = time.monotonic()
                    await self._units.prune_history(datetime.now(UTC) - timedelta(days=history_days))
                if time.monotonic() - last_retention >= recount_every:
                    last_retention = time.monotonic()
                    await self.prune_sent(datetime.now(UTC))
                if time.monotonic() - last_recount >= recount_every:
                    await self.recount()
                    last_recount = time.monotonic()
                await self.enforce_cap()
                await self.report_drops()
                if self._backlog and self._oldest_ts is None:
                    await self.recount()
                OUTBOX_OLDEST_AGE.set(self.status().age_seconds(datetime.now(UTC)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a busy disk must not stop the upkeep for good
                log.warning("outbox.maintenance_failed", error=repr(exc))
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                    await self._maintenance.wait()

    async def prune_sent(self, now: datetime) -> int:
        """Forget acknowledged envelopes past the retention (older than its days, or beyond its count,
        oldest first). The cloud is told they are gone if it asks for them."""
        cutoff = iso(now - timedelta(days=self.retention.days))
        async with self._units.transaction() as tx:
            deleted = await tx._run("DELETE FROM outbox_sent WHERE sent_at < ?", (cutoff,))
            deleted += await tx._run(
                "DELETE FROM outbox_sent WHERE seq <= (SELECT seq FROM outbox_sent ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self.retention.envelopes,))
        if deleted:
            RETENTION_PRUNED.inc(deleted)
            log.info("outbox.retention_pruned", envelopes=deleted, older_than=cutoff,
                     kept_at_most=self.retention.envelopes)
        return deleted

    async def sent_count(self) -> int:
        """Acknowledged envelopes kept for a resend."""
        async with self._units.reading() as tx:
            rows = await tx._all("SELECT count(*) FROM outbox_sent")
        return int(rows[0][0])

    async def enforce_cap(self) -> int:
        """Under drop_oldest_telemetry, drop the oldest telemetry until the outbox is at
        :data:`DROP_TO` of its cap; queue a ``site.outbox_dropped``. Returns how many were dropped."""
        cap = self.cap
        if cap.policy != "drop_oldest_telemetry" or not cap.reached(self._backlog, self._bytes):
            return 0
        target_events, target_bytes = int(cap.max_events * DROP_TO), int(cap.max_bytes * DROP_TO)
        dropped: collections.Counter[str] = collections.Counter()
        seqs: list[int] = []
        freed = 0
        async with self._units.transaction() as tx:
            # Rows handed to the uplink may be on their way to the broker already: dropping (and
            # reporting) them would count them twice in the cloud, sent and dropped. Drop after them.
            # Read under the store's lock: the uplink takes its rows under it too.
            in_flight = max(self._sending, default=0)
            for type_ in DROPPABLE_TYPES:
                while True:
                    backlog, size = self._backlog - len(seqs), self._bytes - freed
                    if backlog <= target_events and size <= target_bytes:
                        break
                    average = max(1, size // max(1, backlog))
                    want = max(backlog - target_events, -(-(size - target_bytes) // average), 1)
                    rows = await tx._all(
                        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE type = ? AND seq > ?"
                        " ORDER BY seq LIMIT ?) RETURNING seq, length(type) + length(body)",
                        (type_, in_flight, min(want, 10_000)))
                    if not rows:
                        break
                    for row in rows:
                        seqs.append(row[0])
                        freed += row[1] + ROW_OVERHEAD_BYTES
                        self._sizes.pop(row[0], None)
                    dropped[type_] += len(rows)
            if not seqs:
                if in_flight:  # the uplink is sending; its acknowledged rows go by themselves
                    log.debug("outbox.over_cap_in_flight", backlog=self._backlog, in_flight_until=in_flight)
                else:
                    log.error("outbox.over_cap_nothing_to_drop", backlog=self._backlog, backlog_bytes=self._bytes,
                              hint="only session and charger records are waiting; they are never dropped")
                return 0
            await tx.emit(OutboxDropped(
                policy="drop_oldest_telemetry", dropped=len(seqs), by_type=dict(dropped), first_seq=min(seqs),
                last_seq=max(seqs), backlog=self._backlog - len(seqs), backlog_bytes=self._bytes - freed,
                at=datetime.now(UTC)))
        self._forget(len(seqs), freed)
        self._oldest_ts = None  # the oldest row may be gone; the next batch or recount finds it
        await self.recount()
        for type_, count in dropped.items():
            OUTBOX_DROPPED.labels(type=type_, policy=cap.policy).inc(count)
        self.dropped.update(dropped)
        if any(t in BAY_TYPES for t in dropped):
            self.bays_lost.set()
        log.warning("outbox.dropped_oldest_telemetry", dropped=len(seqs), by_type=dict(dropped),
                    first_seq=min(seqs), last_seq=max(seqs), backlog=self._backlog, backlog_bytes=self._bytes)
        return len(seqs)

    async def report_drops(self, *, now: bool = False) -> None:
        """Under refuse_new, report what was refused: when the cap is left, every REPORT_EVERY s,
        and at close (``now``)."""
        if not self._unreported:
            return
        at = time.monotonic()
        if self.refuse and at - self._last_report < REPORT_EVERY and not now:
            return
        refused, self._unreported = self._unreported, collections.Counter()
        self._last_report = at
        try:
            async with self._units.transaction() as tx:
                await tx.emit(OutboxDropped(
                    policy="refuse_new", dropped=sum(refused.values()), by_type=dict(refused),
                    backlog=self._backlog, backlog_bytes=self._bytes, at=datetime.now(UTC)))
        except BaseException:
            self._unreported.update(refused)  # reported at the next try
            raise
        log.warning("outbox.refused_new_telemetry", refused=sum(refused.values()), by_type=dict(refused),
                    backlog=self._backlog, backlog_bytes=self._bytes)
