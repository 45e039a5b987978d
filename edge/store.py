"""The site's local state in SQLite (aiosqlite): chargers, sessions, auth list, uplink outbox.

Durability choices
    * ``journal_mode=WAL``: readers never block the writer and a commit is one append.
    * ``synchronous=FULL``: the WAL is fsynced at every commit. With NORMAL a power cut
      (common at the edge: garages lose power, cabinets get unplugged) may drop the last
      commits, and then a transactionId already handed to a charger could be handed out
      again, or a cloud command already acknowledged to the broker would be forgotten.
      The edge commits once per charger message, so the fsync costs little.

Schema versions live in ``PRAGMA user_version``; :data:`MIGRATIONS` holds one ordered step
per version, applied in its own transaction together with the version bump (zigpy style).
A database from a newer edge is refused rather than guessed at.

Concurrency: one connection, one writer. Every unit of work runs inside
:meth:`Store.transaction`, which holds an asyncio lock for its duration, so statements of two
coroutines never interleave inside one SQLite transaction. A change the cloud must learn
about writes its outbox row through :meth:`StoreTransaction.emit` in that same transaction.

Bounded outbox: :class:`OutboxCap` limits the rows waiting for the broker (count and bytes,
estimated from the stored rows). At the cap, ``drop_oldest_telemetry`` deletes the oldest meter
samples, then the oldest bay changes (in :meth:`Store.maintain`, off the charger's path) and
``refuse_new`` stops storing new ones; session, charger and command records are never dropped
nor refused, so they may exceed the cap. Either way a ``site.outbox_dropped`` envelope tells the
cloud what was lost, and the metrics count it.

Group commit: a unit of work that only writes (the hot charger messages: MeterValues,
Heartbeat, StatusNotification) may run in :meth:`Store.writes` instead. Its statements are
queued, and one committer runs every queued unit in one SQLite transaction: one fsync for
hundreds of chargers instead of one each. Each caller still returns only after the transaction
holding its unit committed, so nothing is acknowledged before it is durable; if that shared
transaction fails, every unit in it is retried alone, so one bad unit fails only its caller.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol

import aiosqlite
import structlog

from edge.domain import AuthEntry
from edge.metrics import (
    OUTBOX_AT_CAP,
    OUTBOX_BACKLOG,
    OUTBOX_BYTES,
    OUTBOX_DROPPED,
    OUTBOX_OLDEST_AGE,
    RETENTION_PRUNED,
)
from mqtt.payloads import AuthListEntry, IdTagStatus, OutboxDropped
from mqtt.topics import category_of

log = structlog.get_logger(__name__)


class StoreError(RuntimeError):
    """The database cannot be used by this edge (e.g. it was written by a newer version)."""


@dataclass(frozen=True, slots=True)
class BayRecord:
    """A bay's last reported occupancy and (for a charger-served bay) usage."""

    bay_id: str
    occupancy: str | None
    occupancy_since: datetime | None
    usage: str | None
    usage_since: datetime | None
    usage_tx: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> BayRecord:
        return cls(bay_id=row["bay_id"], occupancy=row["occupancy"],
                   occupancy_since=_parse_ts(row["occupancy_since"]), usage=row["usage"],
                   usage_since=_parse_ts(row["usage_since"]), usage_tx=row["usage_tx"])


def _parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class UplinkBody(Protocol):
    """A typed body of the MQTT contract (mqtt.payloads bodies and CommandResult)."""

    TYPE: ClassVar[str]

    def model_dump(self, *, mode: str = ...) -> dict[str, Any]: ...


# One tuple of statements per schema version; never edit a released step, add a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # version 1: the foundation schema
    (
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        "INSERT INTO meta (key, value) VALUES ('authlist_version', '0')",
        """CREATE TABLE chargers (
            id                  TEXT PRIMARY KEY,
            vendor              TEXT,
            model               TEXT,
            serial              TEXT,
            firmware            TEXT,
            registration_status TEXT,  -- NULL until its first BootNotification
            last_seen           TEXT,
            created_at          TEXT NOT NULL
        )""",
        """CREATE TABLE connectors (
            charger_id   TEXT NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
            connector_id INTEGER NOT NULL CHECK (connector_id >= 0),
            status       TEXT NOT NULL,
            error_code   TEXT NOT NULL,
            info         TEXT,
            updated_at   TEXT NOT NULL,
            PRIMARY KEY (charger_id, connector_id)
        )""",
        # AUTOINCREMENT: OCPP 1.6 transactionIds are never reused, even after the row with
        # the highest id is deleted or the edge restarts (sqlite_sequence keeps the maximum).
        """CREATE TABLE transactions (
            id                 INTEGER PRIMARY KEY AUTOINCREMENT,
            charger_id         TEXT NOT NULL,
            connector_id       INTEGER NOT NULL,
            id_tag             TEXT NOT NULL,
            id_tag_status      TEXT NOT NULL,
            meter_start        INTEGER NOT NULL,
            started_at         TEXT NOT NULL,
            reported_started_at TEXT NOT NULL,
            reservation_id     INTEGER,
            meter_stop         INTEGER,
            stopped_at         TEXT,
            reported_stopped_at TEXT,
            stop_id_tag        TEXT,
            reason             TEXT,
            state              TEXT NOT NULL CHECK (state IN ('active', 'stopped')),
            clock_suspect      INTEGER NOT NULL DEFAULT 0
        )""",
        # Finds a repeated StartTransaction (a retry after a lost CALLRESULT).
        """CREATE INDEX transactions_start_key
           ON transactions (charger_id, connector_id, id_tag, meter_start, reported_started_at)""",
        "CREATE INDEX transactions_active ON transactions (charger_id, connector_id) WHERE state = 'active'",
        # Stops of transactions the edge never saw start (unknown id or -1), kept once each; also the
        # stops a charger sent for another charger's transaction (never applied: see Site.stop_transaction).
        """CREATE TABLE reconciled_stops (
            id                  INTEGER PRIMARY KEY AUTOINCREMENT,
            charger_id          TEXT NOT NULL,
            transaction_id      INTEGER NOT NULL,
            meter_stop          INTEGER NOT NULL,
            reported_stopped_at TEXT NOT NULL,
            stopped_at          TEXT NOT NULL,
            id_tag              TEXT,
            reason              TEXT,
            received_at         TEXT NOT NULL,
            UNIQUE (charger_id, transaction_id, meter_stop, reported_stopped_at)
        )""",
        """CREATE TABLE auth_list (
            id_tag        TEXT PRIMARY KEY,
            status        TEXT NOT NULL,
            expiry_date   TEXT,
            parent_id_tag TEXT,
            vehicle_id    TEXT
        )""",
        # seq is the per-site envelope seq: AUTOINCREMENT so it only grows, also after the
        # drained rows are deleted.
        """CREATE TABLE outbox (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            envelope_id TEXT NOT NULL UNIQUE,
            type        TEXT NOT NULL,
            body        TEXT NOT NULL,
            ts          TEXT NOT NULL
        )""",
    ),
    # version 2: security profiles, Pending registration, the charger's own messages, reservations,
    # charging profiles, the calls sent to chargers, and handled cloud commands
    (
        "ALTER TABLE chargers ADD COLUMN security_profile INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE chargers ADD COLUMN auth_key_hash TEXT",  # scrypt, see edge.security
        "ALTER TABLE chargers ADD COLUMN firmware_status TEXT",
        "ALTER TABLE chargers ADD COLUMN diagnostics_status TEXT",
        "ALTER TABLE chargers ADD COLUMN local_list_version INTEGER",
        """CREATE TABLE charger_events (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            charger_id  TEXT NOT NULL,
            action      TEXT NOT NULL,
            payload     TEXT NOT NULL,
            received_at TEXT NOT NULL
        )""",
        "CREATE INDEX charger_events_by_charger ON charger_events (charger_id, id)",
        """CREATE TABLE charger_calls (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            charger_id  TEXT NOT NULL,
            action      TEXT NOT NULL,
            request     TEXT NOT NULL,
            outcome     TEXT NOT NULL,  -- result, error, timeout, offline
            response    TEXT,
            origin      TEXT NOT NULL,
            sent_at     TEXT NOT NULL
        )""",
        """CREATE TABLE reservations (
            id           INTEGER PRIMARY KEY,  -- the reservationId sent to the charger
            charger_id   TEXT NOT NULL,
            connector_id INTEGER NOT NULL,
            id_tag       TEXT NOT NULL,
            expiry_date  TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('active', 'cancelled', 'used')),
            updated_at   TEXT NOT NULL
        )""",
        """CREATE TABLE charging_profiles (
            charger_id   TEXT NOT NULL,
            connector_id INTEGER NOT NULL,
            profile_id   INTEGER NOT NULL,
            purpose      TEXT NOT NULL,
            stack_level  INTEGER NOT NULL,
            profile      TEXT NOT NULL,
            set_at       TEXT NOT NULL,
            PRIMARY KEY (charger_id, profile_id)
        )""",
        """CREATE TABLE handled_commands (
            command_id TEXT PRIMARY KEY,
            status     TEXT NOT NULL,
            handled_at TEXT NOT NULL
        )""",
    ),
    # version 3: each bay's last reported occupancy and usage (arrival and overstay survive a
    # restart; the current states are re-sent when the outbox cap lost bay changes)
    (
        """CREATE TABLE bays (
            bay_id          TEXT PRIMARY KEY,
            occupancy       TEXT,
            occupancy_since TEXT,
            usage           TEXT,
            usage_since     TEXT,
            usage_tx        INTEGER,
            updated_at      TEXT NOT NULL
        )""",
    ),
    # version 4: end-to-end delivery. Every envelope gets a seq within its uplink category (no hole,
    # so the cloud sees what it missed); acknowledged envelopes move to outbox_sent and are kept for
    # the retention window, to be published again when the cloud asks (site.resend).
    (
        "ALTER TABLE outbox ADD COLUMN category TEXT",
        "ALTER TABLE outbox ADD COLUMN category_seq INTEGER",
        """UPDATE outbox SET category = CASE WHEN type LIKE 'command.%' THEN 'result'
                                          ELSE substr(type, 1, instr(type, '.') - 1) END""",
        """UPDATE outbox SET category_seq = (SELECT count(*) FROM outbox o
                                             WHERE o.category = outbox.category AND o.seq <= outbox.seq)""",
        # The last category_seq assigned per category; it only grows (rows are deleted, it is not).
        """CREATE TABLE outbox_streams (
            category TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL
        )""",
        "INSERT INTO outbox_streams (category, last_seq) SELECT category, max(category_seq) FROM outbox"
        " WHERE category IS NOT NULL GROUP BY category",
        """CREATE TRIGGER outbox_category_seq AFTER INSERT ON outbox BEGIN
            INSERT INTO outbox_streams (category, last_seq) VALUES (NEW.category, NEW.category_seq)
                ON CONFLICT (category) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq);
        END""",
        """CREATE TABLE outbox_sent (
            seq          INTEGER PRIMARY KEY,
            envelope_id  TEXT NOT NULL,
            type         TEXT NOT NULL,
            body         TEXT NOT NULL,
            ts           TEXT NOT NULL,
            category     TEXT NOT NULL,
            category_seq INTEGER NOT NULL,
            sent_at      TEXT NOT NULL
        )""",
        "CREATE INDEX outbox_sent_by_category ON outbox_sent (category, category_seq)",
    ),
    # v5: idTags are case-insensitive (OCPP 1.6 IdToken: "case insensitive"): the list's key compares
    # without case, so a card the charger reads as 04a2b3c4 finds the entry 04A2B3C4. Of entries that
    # differ only in case (the cloud refuses new ones), the first stored is kept.
    (
        """CREATE TABLE auth_list_v5 (
            id_tag        TEXT PRIMARY KEY COLLATE NOCASE,
            status        TEXT NOT NULL,
            expiry_date   TEXT,
            parent_id_tag TEXT COLLATE NOCASE,
            vehicle_id    TEXT
        )""",
        """INSERT OR IGNORE INTO auth_list_v5 (id_tag, status, expiry_date, parent_id_tag, vehicle_id)
           SELECT id_tag, status, expiry_date, parent_id_tag, vehicle_id FROM auth_list ORDER BY rowid""",
        "DROP TABLE auth_list",
        "ALTER TABLE auth_list_v5 RENAME TO auth_list",
    ),
    # v6: a session the charger forgot is written off once and for all (it never counts as running
    # again, whatever the connector reports later; a late stop still ends it), and a charger's next
    # AuthorizationKey, adopted on the charger's Accepted, valid beside the old one until first used.
    (
        "ALTER TABLE transactions ADD COLUMN written_off_at TEXT",
        "ALTER TABLE transactions ADD COLUMN written_off_reason TEXT",
        """UPDATE transactions SET written_off_reason = 'connector_available', written_off_at = (
               SELECT c.updated_at FROM connectors c WHERE c.charger_id = transactions.charger_id
               AND c.connector_id = transactions.connector_id)
           WHERE state = 'active' AND EXISTS (
               SELECT 1 FROM connectors c WHERE c.charger_id = transactions.charger_id
               AND c.connector_id = transactions.connector_id AND c.status IN ('Available', 'Preparing')
               AND c.updated_at > transactions.started_at)""",
        "ALTER TABLE chargers ADD COLUMN next_auth_key_hash TEXT",  # scrypt, see edge.security
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# --- records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargerRecord:
    id: str
    vendor: str | None
    model: str | None
    serial: str | None
    firmware: str | None
    registration_status: str | None
    last_seen: datetime | None
    security_profile: int = 0
    auth_key_hash: str | None = None
    firmware_status: str | None = None
    diagnostics_status: str | None = None
    local_list_version: int | None = None
    next_auth_key_hash: str | None = None
    """An AuthorizationKey the charger accepted (ChangeConfiguration), valid beside ``auth_key_hash`` until
    the charger's first connection with it."""

    @property
    def accepted(self) -> bool:
        return self.registration_status == "Accepted"

    @property
    def pending(self) -> bool:
        return self.registration_status == "Pending"


@dataclass(frozen=True, slots=True)
class ConnectorRecord:
    charger_id: str
    connector_id: int
    status: str
    error_code: str
    info: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    id: int
    charger_id: str
    connector_id: int
    id_tag: str
    id_tag_status: str
    meter_start: int
    started_at: datetime
    reported_started_at: str
    reservation_id: int | None
    meter_stop: int | None
    stopped_at: datetime | None
    reason: str | None
    state: str
    clock_suspect: bool
    written_off_at: datetime | None = None
    written_off_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def running(self) -> bool:
        """Active and not written off (the charger forgot it: see :meth:`StoreTransaction.write_off`)."""
        return self.state == "active" and self.written_off_at is None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    envelope_id: uuid.UUID
    type: str
    body: dict[str, Any]
    ts: datetime
    category_seq: int | None = None


def _charger(row: sqlite3.Row) -> ChargerRecord:
    return ChargerRecord(id=row["id"], vendor=row["vendor"], model=row["model"], serial=row["serial"],
                         firmware=row["firmware"], registration_status=row["registration_status"],
                         last_seen=_dt(row["last_seen"]), security_profile=row["security_profile"],
                         auth_key_hash=row["auth_key_hash"], firmware_status=row["firmware_status"],
                         diagnostics_status=row["diagnostics_status"], local_list_version=row["local_list_version"],
                         next_auth_key_hash=row["next_auth_key_hash"])


def _transaction(row: sqlite3.Row) -> TransactionRecord:
    return TransactionRecord(
        id=row["id"], charger_id=row["charger_id"], connector_id=row["connector_id"], id_tag=row["id_tag"],
        id_tag_status=row["id_tag_status"], meter_start=row["meter_start"],
        started_at=datetime.fromisoformat(row["started_at"]), reported_started_at=row["reported_started_at"],
        reservation_id=row["reservation_id"], meter_stop=row["meter_stop"], stopped_at=_dt(row["stopped_at"]),
        reason=row["reason"], state=row["state"], clock_suspect=bool(row["clock_suspect"]),
        written_off_at=_dt(row["written_off_at"]), written_off_reason=row["written_off_reason"],
    )


def _auth_entry(row: sqlite3.Row) -> AuthEntry:
    return AuthEntry(id_tag=row["id_tag"], status=IdTagStatus(row["status"]),
                     expiry_date=_dt(row["expiry_date"]), parent_id_tag=row["parent_id_tag"],
                     vehicle_id=row["vehicle_id"])


# --- the outbox cap -----------------------------------------------------------------------

ROW_OVERHEAD_BYTES = 80
"""Per-row bytes besides type and body (envelope id, timestamp, seq, SQLite record header)."""

DROPPABLE_TYPES: tuple[str, ...] = ("session.meter", "bay.occupancy", "bay.usage")
"""What may be dropped or refused at the cap, in the order it is dropped. Sessions (started,
stopped), charger records and command results never are: billing depends on them."""

_DROPPABLE = frozenset(DROPPABLE_TYPES)
_BAY_TYPES = frozenset({"bay.occupancy", "bay.usage"})
_NOTHING: frozenset[str] = frozenset()
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


def _ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
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
            "oldest_at": _iso(self.oldest_ts), "oldest_age_s": round(self.age_seconds(now), 3),
            "at_cap": self.at_cap,
            "cap": {"max_events": self.cap.max_events, "max_bytes": self.cap.max_bytes, "policy": self.cap.policy},
            "dropped": dict(self.dropped), "dropped_total": sum(self.dropped.values()),
        }


# --- the units of work ------------------------------------------------------------------

_LIVE_WHERE = "AND t.written_off_at IS NULL"
# category_seq: the next of the category; the outbox_category_seq trigger books it in outbox_streams
# (per row, so it also holds for the rows of one group commit's executemany).
_INSERT_OUTBOX = """INSERT INTO outbox (envelope_id, type, body, ts, category, category_seq) VALUES
    (?1, ?2, ?3, ?4, ?5, coalesce((SELECT last_seq FROM outbox_streams WHERE category = ?5), 0) + 1)"""
_TOUCH_CHARGER = "UPDATE chargers SET last_seen = ? WHERE id = ?"
_UPSERT_CONNECTOR = """INSERT INTO connectors (charger_id, connector_id, status, error_code, info, updated_at)
   VALUES (?, ?, ?, ?, ?, ?)
   ON CONFLICT (charger_id, connector_id) DO UPDATE SET status = excluded.status,
       error_code = excluded.error_code, info = excluded.info, updated_at = excluded.updated_at"""


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


def _outbox_row(body: UplinkBody, ts: datetime | None) -> tuple[str, str, str, str | None, str]:
    category = category_of(body.TYPE)  # refuse a type without an uplink topic now, not at drain time
    dump_json = getattr(body, "model_dump_json", None)
    text = dump_json() if dump_json is not None else json.dumps(body.model_dump(mode="json"))
    return (_envelope_id(), body.TYPE, text, _iso(ts or datetime.now(UTC)), category)


class StoreWrites:
    """A write-only unit of work for group commit (:meth:`Store.writes`).

    Its methods only record statements: blind writes (no reads, no results) to rows no other
    statement kind of a write unit touches, so running a batch of units grouped by statement,
    in order within each statement, is the same as running them one after another.
    """

    def __init__(self, refuse: frozenset[str] = _NOTHING) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.counted: list[tuple[str, tuple[Any, ...]]] = []
        """Statements whose changed-row count the caller wants (run one by one)."""
        self.changed = 0
        self.emitted = 0
        self.emitted_bytes = 0
        self._refuse = refuse
        self.refused: list[str] = []

    async def emit(self, body: UplinkBody, *, ts: datetime | None = None) -> None:
        """Queue an uplink envelope; it exists only if the unit commits (and the cap lets it in)."""
        if body.TYPE in self._refuse:
            self.refused.append(body.TYPE)
            return
        row = _outbox_row(body, ts)
        self.statements.append((_INSERT_OUTBOX, row))
        self.emitted += 1
        self.emitted_bytes += row_bytes(row[1], row[2])

    async def touch_charger(self, charger_id: str, now: datetime) -> None:
        self.statements.append((_TOUCH_CHARGER, (_iso(now), charger_id)))

    async def record_connector_status(self, charger_id: str, connector_id: int, *, status: str,
                                      error_code: str, info: str | None, at: datetime) -> None:
        self.statements.append((_UPSERT_CONNECTOR, (charger_id, connector_id, status, error_code, info, _iso(at))))

    def delete_outbox(self, seqs: Sequence[int], *, keep: bool = True) -> None:
        """Forget acknowledged rows; ``keep``: move them to outbox_sent (the retention) first."""
        marks = ", ".join("?" * len(seqs))
        if keep:
            self.counted.append((
                "INSERT OR REPLACE INTO outbox_sent (seq, envelope_id, type, body, ts, category, category_seq,"
                f" sent_at) SELECT seq, envelope_id, type, body, ts, category, category_seq, ? FROM outbox"
                f" WHERE seq IN ({marks})", (_iso(datetime.now(UTC)), *seqs)))
        self.counted.append((f"DELETE FROM outbox WHERE seq IN ({marks})", tuple(seqs)))



class StoreTransaction:
    """The statements of one SQLite transaction. Obtain it from :meth:`Store.transaction`."""

    def __init__(self, db: aiosqlite.Connection, refuse: frozenset[str] = _NOTHING) -> None:
        self._db = db
        self.emitted = 0
        self.emitted_bytes = 0
        self._refuse = refuse
        self.refused: list[str] = []

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = list(await self._db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._db.execute_fetchall(sql, params))

    async def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a write; returns the number of rows it changed."""
        async with self._db.execute(sql, params) as cursor:
            return cursor.rowcount

    async def _insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._db.execute(sql, params) as cursor:
            if cursor.lastrowid is None:  # pragma: no cover - sqlite always sets it on INSERT
                raise StoreError("insert returned no rowid")
            return cursor.lastrowid

    # outbox

    async def emit(self, body: UplinkBody, *, ts: datetime | None = None) -> int | None:
        """Queue an uplink envelope; it exists only if this transaction commits. Returns its seq, or
        None when the outbox is at its cap under ``refuse_new`` and the body is telemetry."""
        if body.TYPE in self._refuse:
            self.refused.append(body.TYPE)
            return None
        row = _outbox_row(body, ts)
        seq = await self._insert(_INSERT_OUTBOX, row)
        self.emitted += 1
        self.emitted_bytes += row_bytes(row[1], row[2])
        return seq

    async def high_water(self) -> dict[str, int]:
        """The last category_seq assigned, per uplink category."""
        return {row[0]: int(row[1]) for row in await self._all("SELECT category, last_seq FROM outbox_streams")}

    async def resend(self, category: str, first_seq: int, last_seq: int) -> ResendOutcome:
        """Queue again the kept (acknowledged) envelopes of ``category`` numbered ``first_seq``..``last_seq``,
        with their own seq, id and body; the uplink publishes them before anything newer."""
        params = (category, first_seq, last_seq)
        where = "category = ? AND category_seq BETWEEN ? AND ?"
        moved = await self._all(
            "INSERT INTO outbox (seq, envelope_id, type, body, ts, category, category_seq)"
            f" SELECT seq, envelope_id, type, body, ts, category, category_seq FROM outbox_sent WHERE {where}"
            " ORDER BY seq RETURNING category_seq, length(type) + length(body)", params)
        if moved:
            await self._run(f"DELETE FROM outbox_sent WHERE {where}", params)
            self.emitted += len(moved)
            self.emitted_bytes += sum(int(row[1]) + ROW_OVERHEAD_BYTES for row in moved)
        waiting = {int(row[0]) for row in await self._all(f"SELECT category_seq FROM outbox WHERE {where}", params)}
        last = await self._one("SELECT last_seq FROM outbox_streams WHERE category = ?", (category,))
        assigned = min(last_seq, int(last[0]) if last is not None else 0)
        gone = _ranges(set(range(first_seq, assigned + 1)) - waiting)
        return ResendOutcome(resent=len(moved), pending=len(waiting) - len(moved), gone=gone)

    async def get_meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            await self._run("DELETE FROM meta WHERE key = ?", (key,))
        else:
            await self._set_meta(key, value)

    # bays

    async def put_bay_occupancy(self, bay_id: str, state: str, since: datetime, now: datetime) -> None:
        await self._run(
            "INSERT INTO bays (bay_id, occupancy, occupancy_since, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (bay_id) DO UPDATE SET occupancy = excluded.occupancy,"
            " occupancy_since = excluded.occupancy_since, updated_at = excluded.updated_at",
            (bay_id, state, _iso(since), _iso(now)))

    async def put_bay_usage(self, bay_id: str, usage: str, since: datetime, transaction_id: int | None,
                            now: datetime) -> None:
        await self._run(
            "INSERT INTO bays (bay_id, usage, usage_since, usage_tx, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (bay_id) DO UPDATE SET usage = excluded.usage, usage_since = excluded.usage_since,"
            " usage_tx = excluded.usage_tx, updated_at = excluded.updated_at",
            (bay_id, usage, _iso(since), transaction_id, _iso(now)))

    async def bays(self) -> list[BayRecord]:
        return [BayRecord.from_row(row) for row in await self._all("SELECT * FROM bays ORDER BY bay_id")]

    # meta

    async def authlist_version(self) -> int:
        row = await self._one("SELECT value FROM meta WHERE key = 'authlist_version'")
        return int(row["value"]) if row else 0

    async def _set_meta(self, key: str, value: str) -> None:
        await self._run("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # chargers

    async def get_charger(self, charger_id: str) -> ChargerRecord | None:
        row = await self._one("SELECT * FROM chargers WHERE id = ?", (charger_id,))
        return None if row is None else _charger(row)

    async def chargers(self) -> list[ChargerRecord]:
        return [_charger(r) for r in await self._all("SELECT * FROM chargers ORDER BY id")]

    async def set_registration_status(self, charger_id: str, status: str) -> bool:
        changed = await self._run("UPDATE chargers SET registration_status = ? WHERE id = ?", (status, charger_id))
        return changed == 1

    async def set_charger_security(self, charger_id: str, *, security_profile: int, auth_key_hash: str | None,
                                   now: datetime) -> None:
        await self.register_charger(charger_id, now)
        await self._run("UPDATE chargers SET security_profile = ?, auth_key_hash = ?, next_auth_key_hash = NULL"
                        " WHERE id = ?", (security_profile, auth_key_hash, charger_id))

    async def set_next_auth_key(self, charger_id: str, next_hash: str) -> None:
        """The charger accepted a new AuthorizationKey: valid beside the current one until first used. A
        charger without a key (profile 0) moves to profile 1 with it."""
        await self._run(
            """UPDATE chargers SET
                   security_profile = CASE WHEN security_profile = 0 THEN 1 ELSE security_profile END,
                   auth_key_hash = CASE WHEN auth_key_hash IS NULL THEN ?1 ELSE auth_key_hash END,
                   next_auth_key_hash = CASE WHEN auth_key_hash IS NULL THEN NULL ELSE ?1 END
               WHERE id = ?2""", (next_hash, charger_id))

    async def promote_next_auth_key(self, charger_id: str, next_hash: str) -> bool:
        """The charger connected with its new key: it replaces the old one, which is no longer valid."""
        changed = await self._run("UPDATE chargers SET auth_key_hash = next_auth_key_hash, next_auth_key_hash = NULL"
                                  " WHERE id = ? AND next_auth_key_hash = ?", (charger_id, next_hash))
        return changed == 1

    async def set_charger_field(self, charger_id: str, column: str, value: Any) -> None:
        if column not in {"firmware_status", "diagnostics_status", "local_list_version"}:
            raise ValueError(f"not a settable charger column: {column}")
        await self._run(f"UPDATE chargers SET {column} = ? WHERE id = ?", (value, charger_id))

    async def record_charger_event(self, charger_id: str, action: str, payload: Mapping[str, Any],
                                   now: datetime) -> int:
        return await self._insert(
            "INSERT INTO charger_events (charger_id, action, payload, received_at) VALUES (?, ?, ?, ?)",
            (charger_id, action, json.dumps(payload, default=str), _iso(now)))

    async def charger_events(self, charger_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM charger_events WHERE charger_id = ? ORDER BY id DESC LIMIT ?",
                               (charger_id, limit))
        return [{"id": r["id"], "action": r["action"], "payload": json.loads(r["payload"]),
                 "received_at": r["received_at"]} for r in rows]

    async def record_charger_call(self, charger_id: str, action: str, request: Mapping[str, Any], *,
                                  outcome: str, response: Any, origin: str, now: datetime) -> int:
        return await self._insert(
            """INSERT INTO charger_calls (charger_id, action, request, outcome, response, origin, sent_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (charger_id, action, json.dumps(request, default=str), outcome,
             None if response is None else json.dumps(response, default=str), origin, _iso(now)))

    async def charger_calls(self, charger_id: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM charger_calls WHERE charger_id = ? ORDER BY id DESC LIMIT ?",
                               (charger_id, limit))
        return [{"id": r["id"], "action": r["action"], "request": json.loads(r["request"]), "outcome": r["outcome"],
                 "response": None if r["response"] is None else json.loads(r["response"]), "origin": r["origin"],
                 "sent_at": r["sent_at"]} for r in rows]

    # reservations and charging profiles (what the chargers accepted)

    async def upsert_reservation(self, *, reservation_id: int, charger_id: str, connector_id: int, id_tag: str,
                                 expiry_date: str, now: datetime) -> None:
        await self._run(
            """INSERT INTO reservations (id, charger_id, connector_id, id_tag, expiry_date, state, updated_at)
               VALUES (?, ?, ?, ?, ?, 'active', ?)
               ON CONFLICT (id) DO UPDATE SET charger_id = excluded.charger_id,
                   connector_id = excluded.connector_id, id_tag = excluded.id_tag,
                   expiry_date = excluded.expiry_date, state = 'active', updated_at = excluded.updated_at""",
            (reservation_id, charger_id, connector_id, id_tag, expiry_date, _iso(now)))

    async def end_reservation(self, reservation_id: int, state: str, now: datetime) -> bool:
        changed = await self._run("UPDATE reservations SET state = ?, updated_at = ? WHERE id = ? AND state = 'active'",
                                  (state, _iso(now), reservation_id))
        return changed == 1

    async def reservations(self, charger_id: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE charger_id = ?", (charger_id,)) if charger_id else ("", ())
        rows = await self._all(f"SELECT * FROM reservations {where} ORDER BY id", params)
        return [dict(r) for r in rows]

    async def save_charging_profile(self, charger_id: str, connector_id: int, profile: Mapping[str, Any],
                                    now: datetime) -> None:
        await self._run(
            """INSERT INTO charging_profiles (charger_id, connector_id, profile_id, purpose, stack_level, profile,
                                              set_at) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (charger_id, profile_id) DO UPDATE SET connector_id = excluded.connector_id,
                   purpose = excluded.purpose, stack_level = excluded.stack_level, profile = excluded.profile,
                   set_at = excluded.set_at""",
            (charger_id, connector_id, int(profile["chargingProfileId"]), str(profile["chargingProfilePurpose"]),
             int(profile["stackLevel"]), json.dumps(profile), _iso(now)))

    async def clear_charging_profiles(self, charger_id: str, *, profile_id: int | None, connector_id: int | None,
                                      purpose: str | None, stack_level: int | None) -> int:
        # OCPP 1.6 ClearChargingProfile: an id clears that profile; otherwise the given criteria all match.
        if profile_id is not None:
            return await self._run("DELETE FROM charging_profiles WHERE charger_id = ? AND profile_id = ?",
                                   (charger_id, profile_id))
        clauses, params = ["charger_id = ?"], list[Any]([charger_id])
        for column, value in (("connector_id", connector_id), ("purpose", purpose), ("stack_level", stack_level)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return await self._run(f"DELETE FROM charging_profiles WHERE {' AND '.join(clauses)}", params)

    async def end_tx_profiles(self, charger_id: str, connector_id: int | None = None) -> int:
        """OCPP 1.6 §3.13.2: a TxProfile applies to one transaction; the charger deletes it when the
        transaction stops (or the charger reboots). Forget them here too; returns how many."""
        if connector_id is None:
            return await self._run("DELETE FROM charging_profiles WHERE charger_id = ? AND purpose = 'TxProfile'",
                                   (charger_id,))
        return await self._run("DELETE FROM charging_profiles WHERE charger_id = ? AND connector_id = ? "
                               "AND purpose = 'TxProfile'", (charger_id, connector_id))

    async def charging_profiles(self, charger_id: str) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM charging_profiles WHERE charger_id = ? ORDER BY profile_id",
                               (charger_id,))
        return [{"connector_id": r["connector_id"], "profile_id": r["profile_id"], "purpose": r["purpose"],
                 "stack_level": r["stack_level"], "profile": json.loads(r["profile"])} for r in rows]

    # cloud commands already handled (a redelivery is answered again, not applied again)

    async def handled_command(self, command_id: uuid.UUID) -> str | None:
        row = await self._one("SELECT status FROM handled_commands WHERE command_id = ?", (str(command_id),))
        return None if row is None else str(row["status"])

    async def mark_command_handled(self, command_id: uuid.UUID, status: str, now: datetime) -> None:
        await self._run("INSERT OR REPLACE INTO handled_commands (command_id, status, handled_at) VALUES (?, ?, ?)",
                        (str(command_id), status, _iso(now)))

    async def register_charger(self, charger_id: str, now: datetime) -> bool:
        """Make a charger id known (it may connect). False when it already was."""
        changed = await self._run("INSERT OR IGNORE INTO chargers (id, created_at) VALUES (?, ?)",
                                  (charger_id, _iso(now)))
        return changed == 1

    async def record_boot(self, charger_id: str, *, vendor: str, model: str, serial: str | None,
                          firmware: str | None, registration_status: str, now: datetime) -> None:
        await self._run(
            """INSERT INTO chargers (id, vendor, model, serial, firmware, registration_status, last_seen,
                                     created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET vendor = excluded.vendor, model = excluded.model,
                   serial = excluded.serial, firmware = excluded.firmware,
                   registration_status = excluded.registration_status, last_seen = excluded.last_seen""",
            (charger_id, vendor, model, serial, firmware, registration_status, _iso(now), _iso(now)),
        )

    async def touch_charger(self, charger_id: str, now: datetime) -> None:
        await self._run("UPDATE chargers SET last_seen = ? WHERE id = ?", (_iso(now), charger_id))

    async def record_connector_status(self, charger_id: str, connector_id: int, *, status: str,
                                      error_code: str, info: str | None, at: datetime) -> None:
        await self._run(
            """INSERT INTO connectors (charger_id, connector_id, status, error_code, info, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (charger_id, connector_id) DO UPDATE SET status = excluded.status,
                   error_code = excluded.error_code, info = excluded.info, updated_at = excluded.updated_at""",
            (charger_id, connector_id, status, error_code, info, _iso(at)),
        )

    async def connector_counts(self) -> dict[str, int]:
        """Each accepted charger's highest connector id reported (0: none reported yet)."""
        rows = await self._all(
            """SELECT c.id AS id, coalesce(max(k.connector_id), 0) AS n FROM chargers c
               LEFT JOIN connectors k ON k.charger_id = c.id
               WHERE c.registration_status = 'Accepted' GROUP BY c.id""")
        return {row["id"]: int(row["n"]) for row in rows}

    async def connectors(self, charger_id: str) -> list[ConnectorRecord]:
        rows = await self._all("SELECT * FROM connectors WHERE charger_id = ? ORDER BY connector_id",
                               (charger_id,))
        return [ConnectorRecord(charger_id=r["charger_id"], connector_id=r["connector_id"], status=r["status"],
                                error_code=r["error_code"], info=r["info"],
                                updated_at=datetime.fromisoformat(r["updated_at"])) for r in rows]

    # local authorization list

    async def get_auth_entry(self, id_tag: str) -> AuthEntry | None:
        row = await self._one("SELECT * FROM auth_list WHERE id_tag = ?", (id_tag,))
        return None if row is None else _auth_entry(row)

    async def auth_entries(self) -> list[AuthEntry]:
        return [_auth_entry(r) for r in await self._all("SELECT * FROM auth_list ORDER BY id_tag")]

    async def replace_auth_list(self, entries: Iterable[AuthListEntry], version: int) -> None:
        await self._run("DELETE FROM auth_list")
        await self.upsert_auth_entries(entries, version)

    async def put_auth_entry(self, entry: AuthEntry) -> None:
        """An operator's local change to one idTag; it does not move the cloud's list version."""
        await self._run(
            """INSERT INTO auth_list (id_tag, status, expiry_date, parent_id_tag, vehicle_id) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status, expiry_date = excluded.expiry_date,
                   parent_id_tag = excluded.parent_id_tag,
                   vehicle_id = coalesce(excluded.vehicle_id, auth_list.vehicle_id)""",
            (entry.id_tag, str(entry.status), _iso(entry.expiry_date), entry.parent_id_tag, entry.vehicle_id))

    async def upsert_auth_entries(self, entries: Iterable[AuthListEntry], version: int) -> None:
        await self._db.executemany(
            """INSERT INTO auth_list (id_tag, status, expiry_date, parent_id_tag, vehicle_id)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status,
                   expiry_date = excluded.expiry_date, parent_id_tag = excluded.parent_id_tag,
                   vehicle_id = excluded.vehicle_id""",
            [(e.id_tag, str(e.status), _iso(e.expiry_date), e.parent_id_tag, e.vehicle_id) for e in entries],
        )
        await self._set_meta("authlist_version", str(version))

    # transactions

    async def get_transaction(self, transaction_id: int) -> TransactionRecord | None:
        row = await self._one("SELECT * FROM transactions WHERE id = ?", (transaction_id,))
        return None if row is None else _transaction(row)

    async def active_transactions_of(self, id_tag: str, *, live: bool = False) -> list[TransactionRecord]:
        """The idTag's transactions not stopped; ``live``: without the ghosts (see :meth:`live_transactions`)."""
        rows = await self._all(f"SELECT t.* FROM transactions t "
                               f"WHERE t.id_tag = ? COLLATE NOCASE AND t.state = 'active' "
                               f"{_LIVE_WHERE if live else ''} ORDER BY t.id",
                               (id_tag,))
        return [_transaction(r) for r in rows]

    async def live_transactions(self) -> list[TransactionRecord]:
        """Transactions in progress, without the ghosts: a transaction written off because its charger
        forgot it (:meth:`write_off`) stays active in the store, so a late stop is still billed, but it
        no longer takes a share of the site limit nor blocks its idTag (ConcurrentTx), ever again."""
        rows = await self._all(f"SELECT t.* FROM transactions t WHERE t.state = 'active' {_LIVE_WHERE} "
                               "ORDER BY t.id")
        return [_transaction(r) for r in rows]

    async def write_off(self, charger_id: str, *, reason: str, now: datetime, connector_id: int | None = None,
                        started_before: datetime | None = None,
                        except_id: int | None = None) -> list[TransactionRecord]:
        """Mark the charger's running transactions (of one connector, started before a time, but one) as
        forgotten by the charger; returns those newly written off. Written off is for good: a later
        status of the connector does not bring a transaction back; only its StopTransaction ends it."""
        clauses = ["charger_id = ?", "state = 'active'", "written_off_at IS NULL"]
        params: list[Any] = [charger_id]
        if connector_id is not None:
            clauses.append("connector_id = ?")
            params.append(connector_id)
        if started_before is not None:
            clauses.append("started_at < ?")
            params.append(_iso(started_before))
        if except_id is not None:
            clauses.append("id != ?")
            params.append(except_id)
        where = " AND ".join(clauses)
        rows = await self._all(f"SELECT * FROM transactions WHERE {where} ORDER BY id", params)
        if rows:
            await self._run(f"UPDATE transactions SET written_off_at = ?, written_off_reason = ? WHERE {where}",
                            [_iso(now), reason, *params])
        return [_transaction(r) for r in rows]

    async def transactions(self, *, charger_id: str | None = None, state: str | None = None,
                           limit: int = 100) -> list[TransactionRecord]:
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if charger_id is not None:
            clauses.append("charger_id = ?")
            params.append(charger_id)
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        rows = await self._all(f"SELECT * FROM transactions WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?",
                               [*params, limit])
        return [_transaction(r) for r in rows]

    async def ended_transactions(self, *, since: datetime, limit: int) -> list[TransactionRecord]:
        """The latest ``limit`` transactions stopped at or after ``since`` (reconciliation reports)."""
        rows = await self._all("SELECT * FROM transactions WHERE state = 'stopped' AND stopped_at >= ?"
                               " ORDER BY id DESC LIMIT ?", (_iso(since), limit))
        return [_transaction(r) for r in rows]

    async def last_transaction_id(self) -> int:
        """The highest transactionId this store has handed out (0: none yet)."""
        row = await self._one("SELECT seq FROM sqlite_sequence WHERE name = 'transactions'")
        return int(row["seq"]) if row is not None else 0

    async def find_started(self, charger_id: str, connector_id: int, id_tag: str, meter_start: int,
                           reported_started_at: str) -> TransactionRecord | None:
        """The latest transaction started with exactly these StartTransaction fields."""
        row = await self._one(
            """SELECT * FROM transactions WHERE charger_id = ? AND connector_id = ? AND id_tag = ?
               AND meter_start = ? AND reported_started_at = ? ORDER BY id DESC LIMIT 1""",
            (charger_id, connector_id, id_tag, meter_start, reported_started_at),
        )
        return None if row is None else _transaction(row)

    async def insert_transaction(self, *, charger_id: str, connector_id: int, id_tag: str, id_tag_status: str,
                                 meter_start: int, started_at: datetime, reported_started_at: str,
                                 reservation_id: int | None, clock_suspect: bool) -> int:
        return await self._insert(
            """INSERT INTO transactions (charger_id, connector_id, id_tag, id_tag_status, meter_start, started_at,
                                         reported_started_at, reservation_id, state, clock_suspect)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)""",
            (charger_id, connector_id, id_tag, id_tag_status, meter_start, _iso(started_at), reported_started_at,
             reservation_id, int(clock_suspect)),
        )

    async def finish_transaction(self, transaction_id: int, *, meter_stop: int, stopped_at: datetime,
                                 reported_stopped_at: str, stop_id_tag: str | None, reason: str | None,
                                 clock_suspect: bool) -> bool:
        """Stop an active transaction. False when it was already stopped (a repeated stop)."""
        changed = await self._run(
            """UPDATE transactions SET state = 'stopped', meter_stop = ?, stopped_at = ?, reported_stopped_at = ?,
                   stop_id_tag = ?, reason = ?, clock_suspect = clock_suspect OR ?
               WHERE id = ? AND state = 'active'""",
            (meter_stop, _iso(stopped_at), reported_stopped_at, stop_id_tag, reason, int(clock_suspect),
             transaction_id),
        )
        return changed == 1

    async def record_reconciled_stop(self, *, charger_id: str, transaction_id: int, meter_stop: int,
                                     reported_stopped_at: str, stopped_at: datetime, id_tag: str | None,
                                     reason: str | None, now: datetime) -> bool:
        """Keep a stop of an unknown transaction. False when the same stop was kept before."""
        changed = await self._run(
            """INSERT OR IGNORE INTO reconciled_stops (charger_id, transaction_id, meter_stop, reported_stopped_at,
                                                       stopped_at, id_tag, reason, received_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (charger_id, transaction_id, meter_stop, reported_stopped_at, _iso(stopped_at), id_tag, reason,
             _iso(now)),
        )
        return changed == 1


# --- the store --------------------------------------------------------------------------


class Store:
    """The edge database. ``async with await Store.open(path) as store`` or ``open``/``close``."""

    def __init__(self, db: aiosqlite.Connection, path: Path, cap: OutboxCap | None = None, *,
                 store_id: str = "", retention: Retention | None = None) -> None:
        self._db = db
        self.path = path
        self.retention = retention or Retention()
        self.store_id = store_id
        """This database's instance id (``meta.store_id``): a uuid4 in hex, made when the database was
        created and kept in it; every uplink envelope carries it (see :mod:`mqtt.envelope`)."""
        self._lock = asyncio.Lock()
        self._backlog = 0
        self._bytes = 0
        self.cap = cap or OutboxCap()
        self._refuse: frozenset[str] = _NOTHING
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
        self.outbox_changed = asyncio.Event()
        """Set after a commit that added outbox rows; the uplink's drainer waits on it."""
        self.bays_lost = asyncio.Event()
        """Set when the cap cost bay changes (dropped, or refused and the cap since left): the
        cloud may hold stale bay states, so the current ones should be queued again."""
        self._bays_refused = False
        self._queued: list[tuple[StoreWrites, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path, *, cap: OutboxCap | None = None, retention: Retention | None = None) -> Store:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; Store.transaction issues BEGIN itself.
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            mode = await _scalar(db, "PRAGMA journal_mode=WAL")
            if str(mode).lower() != "wal":
                raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode!r})")
            await db.execute("PRAGMA synchronous=FULL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            await migrate(db, path)
            store = cls(db, path, cap, store_id=await _store_id(db), retention=retention)
            await store._count_outbox()
        except BaseException:
            await db.close()
            raise
        log.info("store.opened", path=str(path), schema_version=SCHEMA_VERSION, store_id=store.store_id,
                 outbox_backlog=store._backlog)
        return store

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        if self._unreported:  # refusals not reported yet: the next start would not know of them
            try:
                await self._report_drops(now=True)
            except Exception as exc:  # closing must not fail for it; the warning says what is lost
                log.warning("outbox.refusals_not_reported", refused=dict(self._unreported), error=repr(exc))
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[StoreTransaction]:
        """One atomic unit of work: commits on success, rolls back on any exception."""
        async with self._lock:
            tx = StoreTransaction(self._db, self._refuse)
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
                    self._added(tx.emitted, tx.emitted_bytes, tx.refused)

    @asynccontextmanager
    async def writes(self) -> AsyncIterator[StoreWrites]:
        """A write-only unit of work, committed together with the others queued at the same time.

        Returns once its transaction committed; a body that raises queues nothing.
        """
        unit = StoreWrites(self._refuse)
        yield unit
        if unit.statements or unit.counted:
            await self._commit_grouped(unit)
        elif unit.refused:
            self._added(0, 0, unit.refused)

    async def _commit_grouped(self, unit: StoreWrites) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((unit, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._run_committer(), name="store.group-commit")
        # Not shielded: a caller cancelled here may still see its unit committed (like a COMMIT in flight).
        await done

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
            await self._commit_units([unit for unit, _ in batch])
        except Exception as error:
            if len(batch) == 1:
                _settle(batch, error)
                return
            # One unit may be at fault: give each its own transaction and its own outcome.
            for single in batch:
                try:
                    await self._commit_units([single[0]])
                except Exception as own_error:
                    _settle([single], own_error)
                else:
                    _settle([single])
            return
        _settle(batch)

    async def _commit_units(self, units: Sequence[StoreWrites]) -> None:
        """One transaction for ``units``, in one trip to the database thread (BEGIN … COMMIT), so the
        lock is held for the statements and the fsync only, not for several event-loop turns."""
        async with self._lock:
            # aiosqlite's own queue to its thread: statements stay in order with every other one.
            await self._db._execute(_commit_sync, self._db._conn, units)
            for unit in units:
                self._added(unit.emitted, unit.emitted_bytes, unit.refused)

    # outbox, for the uplink

    @property
    def outbox_backlog(self) -> int:
        return self._backlog

    @property
    def outbox_bytes(self) -> int:
        """Estimated bytes of the rows waiting (type + body + :data:`ROW_OVERHEAD_BYTES` each)."""
        return self._bytes

    def outbox_status(self) -> OutboxStatus:
        return OutboxStatus(backlog=self._backlog, bytes=self._bytes, oldest_ts=self._oldest_ts, cap=self.cap,
                            at_cap=self.cap.reached(self._backlog, self._bytes), dropped=dict(self.dropped))

    def _added(self, emitted: int, emitted_bytes: int, refused: Sequence[str]) -> None:
        """Book a commit's outbox rows (and the rows the cap refused)."""
        if emitted:
            if self._backlog == 0 and self._oldest_ts is None:
                self._oldest_ts = datetime.now(UTC)
            self._backlog += emitted
            self._bytes += emitted_bytes
            OUTBOX_BACKLOG.set(self._backlog)
            OUTBOX_BYTES.set(self._bytes)
            self.outbox_changed.set()
        if refused:
            for type_ in refused:
                OUTBOX_DROPPED.labels(type=type_, policy=self.cap.policy).inc()
            self.dropped.update(refused)
            self._unreported.update(refused)
            self._bays_refused = self._bays_refused or any(t in _BAY_TYPES for t in refused)
            self._maintenance.set()
        # A commit that added nothing (the upkeep's own, when it could drop nothing) must not wake the upkeep
        # again: at the cap with every droppable row in flight, it spun on itself and starved the edge.
        self._check_cap(wake=bool(emitted))

    def _check_cap(self, *, wake: bool = True) -> None:
        """Keep the at-cap gauge and the refuse_new switch; wake the upkeep (``wake``) when over the cap."""
        at_cap = self.cap.reached(self._backlog, self._bytes)
        OUTBOX_AT_CAP.set(int(at_cap))
        if self.cap.policy == "refuse_new":
            refuse = _DROPPABLE if at_cap else _NOTHING
            if refuse is not self._refuse:
                self._refuse = refuse
                if not at_cap and self._bays_refused:
                    self._bays_refused = False
                    self.bays_lost.set()
                log.warning("outbox.at_cap" if at_cap else "outbox.below_cap", policy=self.cap.policy,
                            backlog=self._backlog, backlog_bytes=self._bytes)
                self._maintenance.set()  # report what was refused once the cap is left
        elif at_cap and wake:
            self._maintenance.set()

    async def _count_outbox(self) -> None:
        """Recount the outbox from the table (at open, and now and then against drift)."""
        async with self._lock:
            rows = list(await self._db.execute_fetchall(
                "SELECT count(*), total(length(type) + length(body)) FROM outbox"))
            oldest = list(await self._db.execute_fetchall("SELECT ts FROM outbox ORDER BY seq LIMIT 1"))
        count, size = rows[0][0], rows[0][1]
        self._backlog = int(count)
        self._bytes = int(size) + self._backlog * ROW_OVERHEAD_BYTES
        self._oldest_ts = datetime.fromisoformat(oldest[0][0]) if oldest else None
        OUTBOX_BACKLOG.set(self._backlog)
        OUTBOX_BYTES.set(self._bytes)
        self._check_cap(wake=False)  # the upkeep recounts; at open, it runs first thing anyway

    async def outbox_batch(self, limit: int = 100, *, sending: bool = False) -> list[OutboxRow]:
        """The oldest ``limit`` rows. ``sending``: the uplink is about to publish them; the cap
        leaves them alone until :meth:`delete_outbox` (they may reach the cloud any moment)."""
        # One statement, so no BEGIN/COMMIT: one trip to the database thread. The lock keeps it out
        # of another coroutine's open transaction (same connection: it would see rows that may still
        # roll back) and after a commit in flight.
        async with self._lock:
            rows = list(await self._db.execute_fetchall("SELECT * FROM outbox ORDER BY seq LIMIT ?", (limit,)))
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

    async def delete_outbox(self, seqs: Iterable[int]) -> int:
        """Forget rows the broker acknowledged from the outbox; they are kept in ``outbox_sent`` for the
        retention window (:class:`Retention`), to be published again if the cloud misses them."""
        seqs = list(seqs)
        if not seqs:
            return 0
        # Group-committed with the charger messages: the relay costs no fsync of its own.
        async with self.writes() as unit:
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
                    await self.prune_history(datetime.now(UTC) - timedelta(days=history_days))
                if time.monotonic() - last_retention >= recount_every:
                    last_retention = time.monotonic()
                    await self.prune_sent(datetime.now(UTC))
                if time.monotonic() - last_recount >= recount_every:
                    await self._count_outbox()
                    last_recount = time.monotonic()
                await self.enforce_cap()
                await self._report_drops()
                if self._backlog and self._oldest_ts is None:
                    await self._count_outbox()
                OUTBOX_OLDEST_AGE.set(self.outbox_status().age_seconds(datetime.now(UTC)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a busy disk must not stop the upkeep for good
                log.warning("outbox.maintenance_failed", error=repr(exc))
            with suppress(TimeoutError):
                await asyncio.wait_for(self._maintenance.wait(), interval)

    async def prune_history(self, before: datetime) -> int:
        """Forget the site's own history older than ``before``: charger notifications, the CALLs sent
        to chargers, handled cloud commands. Sessions are kept (they recognise repeated starts)."""
        cutoff = _iso(before)
        async with self.transaction() as tx:
            deleted = await tx._run("DELETE FROM charger_events WHERE received_at < ?", (cutoff,))
            deleted += await tx._run("DELETE FROM charger_calls WHERE sent_at < ?", (cutoff,))
            deleted += await tx._run("DELETE FROM handled_commands WHERE handled_at < ?", (cutoff,))
        if deleted:
            log.info("store.history_pruned", rows=deleted, before=cutoff)
        return deleted

    async def prune_sent(self, now: datetime) -> int:
        """Forget acknowledged envelopes past the retention (older than its days, or beyond its count,
        oldest first). The cloud is told they are gone if it asks for them."""
        cutoff = _iso(now - timedelta(days=self.retention.days))
        async with self.transaction() as tx:
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
        async with self._lock:
            return int(await _scalar(self._db, "SELECT count(*) FROM outbox_sent"))

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
        async with self.transaction() as tx:
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
        await self._count_outbox()
        for type_, count in dropped.items():
            OUTBOX_DROPPED.labels(type=type_, policy=cap.policy).inc(count)
        self.dropped.update(dropped)
        if any(t in _BAY_TYPES for t in dropped):
            self.bays_lost.set()
        log.warning("outbox.dropped_oldest_telemetry", dropped=len(seqs), by_type=dict(dropped),
                    first_seq=min(seqs), last_seq=max(seqs), backlog=self._backlog, backlog_bytes=self._bytes)
        return len(seqs)

    async def _report_drops(self, *, now: bool = False) -> None:
        """Under refuse_new, report what was refused: when the cap is left, every REPORT_EVERY s,
        and at close (``now``)."""
        if not self._unreported:
            return
        at = time.monotonic()
        if self._refuse and at - self._last_report < REPORT_EVERY and not now:
            return
        refused, self._unreported = self._unreported, collections.Counter()
        self._last_report = at
        try:
            async with self.transaction() as tx:
                await tx.emit(OutboxDropped(
                    policy="refuse_new", dropped=sum(refused.values()), by_type=dict(refused),
                    backlog=self._backlog, backlog_bytes=self._bytes, at=datetime.now(UTC)))
        except BaseException:
            self._unreported.update(refused)  # reported at the next try
            raise
        log.warning("outbox.refused_new_telemetry", refused=sum(refused.values()), by_type=dict(refused),
                    backlog=self._backlog, backlog_bytes=self._bytes)

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
        async with self._lock:
            return await StoreTransaction(self._db).get_charger(charger_id)

    async def get_transaction(self, transaction_id: int) -> TransactionRecord | None:
        async with self.transaction() as tx:
            return await tx.get_transaction(transaction_id)

    async def auth_entries(self) -> list[AuthEntry]:
        async with self.transaction() as tx:
            return await tx.auth_entries()


def _commit_sync(db: sqlite3.Connection, units: Sequence[StoreWrites]) -> None:
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


async def _scalar(db: aiosqlite.Connection, sql: str) -> Any:
    rows = list(await db.execute_fetchall(sql))
    return rows[0][0] if rows else None


async def _store_id(db: aiosqlite.Connection) -> str:
    """The database's instance id, created the first time a database is opened (a new or a replaced
    database gets a new one; a database of an older edge gets one at its first open by this edge)."""
    await db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))
    return str(await _scalar(db, "SELECT value FROM meta WHERE key = 'store_id'"))


async def migrate(db: aiosqlite.Connection, path: Path | str = "<db>") -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`, one step per transaction. Returns the old version."""
    current = int(await _scalar(db, "PRAGMA user_version"))
    if current > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {current} is newer than this edge knows ({SCHEMA_VERSION}); "
                         "upgrade the edge instead of downgrading the database")
    for version in range(current + 1, SCHEMA_VERSION + 1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version - 1]:
                await db.execute(statement)
            # user_version lives in the database header and is part of this transaction.
            await db.execute(f"PRAGMA user_version = {version:d}")
            await db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.OperationalError):
                await db.execute("ROLLBACK")
            raise
        log.info("store.migrated", path=str(path), version=version)
    return current
