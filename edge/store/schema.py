"""The store's schema: one ordered migration step per version, kept in ``PRAGMA user_version``.

Each step is applied in its own transaction together with the version bump (zigpy style). A
database from a newer edge is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

log = structlog.get_logger("edge.store")


class StoreError(RuntimeError):
    """The database cannot be used by this edge (e.g. it was written by a newer version)."""


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


async def scalar(db: aiosqlite.Connection, sql: str) -> Any:
    rows = list(await db.execute_fetchall(sql))
    return rows[0][0] if rows else None


async def store_id(db: aiosqlite.Connection) -> str:
    """The database's instance id, created the first time a database is opened (a new or a replaced
    database gets a new one; a database of an older edge gets one at its first open by this edge)."""
    await db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))
    return str(await scalar(db, "SELECT value FROM meta WHERE key = 'store_id'"))


async def migrate(db: aiosqlite.Connection, path: Path | str = "<db>") -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`, one step per transaction. Returns the old version."""
    current = int(await scalar(db, "PRAGMA user_version"))
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
