"""The units of work: the statements of one SQLite transaction.

Both kinds write the outbox envelope and a charger's hot rows (its last-seen time, a connector's
status) the same way, in :class:`UnitOfWork`; they differ only in when a statement runs.
:class:`StoreTransaction` runs each statement at once and may read; :class:`StoreWrites` queues blind
writes for group commit (:mod:`edge.store.group_commit`). A change the cloud must learn about writes
its outbox row through :meth:`UnitOfWork.emit` in the same transaction as the change.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from edge.domain import AuthEntry
from edge.store.outbox import (
    INSERT_OUTBOX,
    NOTHING,
    ROW_OVERHEAD_BYTES,
    ResendOutcome,
    UplinkBody,
    outbox_row,
    ranges,
    row_bytes,
)
from edge.store.records import (
    BayRecord,
    ChargerRecord,
    ConnectorRecord,
    TransactionRecord,
    auth_entry_from_row,
    charger_from_row,
    iso,
    transaction_from_row,
)
from edge.store.schema import StoreError
from mqtt.payloads import AuthListEntry

_LIVE_WHERE = "AND t.written_off_at IS NULL"
_TOUCH_CHARGER = "UPDATE chargers SET last_seen = ? WHERE id = ?"
_UPSERT_CONNECTOR = """INSERT INTO connectors (charger_id, connector_id, status, error_code, info, updated_at)
   VALUES (?, ?, ?, ?, ?, ?)
   ON CONFLICT (charger_id, connector_id) DO UPDATE SET status = excluded.status,
       error_code = excluded.error_code, info = excluded.info, updated_at = excluded.updated_at"""


class UnitOfWork(ABC):
    """What every unit of work writes alike: outbox envelopes (with the cap's refusals) and the hot
    charger rows. How a statement runs is the subclass's :meth:`_write`."""

    def __init__(self, refuse: frozenset[str] = NOTHING) -> None:
        self.emitted = 0
        self.emitted_bytes = 0
        self._refuse = refuse
        """Types not stored (DROPPABLE_TYPES while at the cap under refuse_new)."""
        self.refused: list[str] = []

    @abstractmethod
    async def _write(self, sql: str, params: tuple[Any, ...]) -> int | None:
        """Run a blind write, or queue it; the inserted row's id when it ran at once."""

    async def emit(self, body: UplinkBody, *, ts: datetime | None = None) -> int | None:
        """Queue an uplink envelope; it exists only if this unit commits. Returns its seq (None from a
        :class:`StoreWrites`, whose statements run later), or None when the outbox is at its cap under
        ``refuse_new`` and the body is telemetry."""
        if body.TYPE in self._refuse:
            self.refused.append(body.TYPE)
            return None
        row = outbox_row(body, ts)
        seq = await self._write(INSERT_OUTBOX, row)
        self.emitted += 1
        self.emitted_bytes += row_bytes(row[1], row[2])
        return seq

    async def touch_charger(self, charger_id: str, now: datetime) -> None:
        await self._write(_TOUCH_CHARGER, (iso(now), charger_id))

    async def record_connector_status(self, charger_id: str, connector_id: int, *, status: str,
                                      error_code: str, info: str | None, at: datetime) -> None:
        await self._write(_UPSERT_CONNECTOR, (charger_id, connector_id, status, error_code, info, iso(at)))


class StoreWrites(UnitOfWork):
    """A write-only unit of work for group commit (:meth:`Store.writes`).

    Its methods only record statements: blind writes (no reads, no results) to rows no other
    statement kind of a write unit touches, so running a batch of units grouped by statement,
    in order within each statement, is the same as running them one after another.
    """

    def __init__(self, refuse: frozenset[str] = NOTHING) -> None:
        super().__init__(refuse)
        self.statements: list[tuple[str, tuple[Any, ...]]] = []
        self.counted: list[tuple[str, tuple[Any, ...]]] = []
        """Statements whose changed-row count the caller wants (run one by one)."""
        self.changed = 0

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self.statements.append((sql, params))

    def delete_outbox(self, seqs: Sequence[int], *, keep: bool = True) -> None:
        """Forget acknowledged rows; ``keep``: move them to outbox_sent (the retention) first."""
        marks = ", ".join("?" * len(seqs))
        if keep:
            self.counted.append((
                "INSERT OR REPLACE INTO outbox_sent (seq, envelope_id, type, body, ts, category, category_seq,"
                f" sent_at) SELECT seq, envelope_id, type, body, ts, category, category_seq, ? FROM outbox"
                f" WHERE seq IN ({marks})", (iso(datetime.now(UTC)), *seqs)))
        self.counted.append((f"DELETE FROM outbox WHERE seq IN ({marks})", tuple(seqs)))


class StoreTransaction(UnitOfWork):
    """The statements of one SQLite transaction, run as they come. Obtain it from :meth:`Store.transaction`."""

    def __init__(self, db: aiosqlite.Connection, refuse: frozenset[str] = NOTHING) -> None:
        super().__init__(refuse)
        self._db = db

    async def _write(self, sql: str, params: tuple[Any, ...]) -> int | None:
        async with self._db.execute(sql, params) as cursor:
            return cursor.lastrowid

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
        gone = ranges(set(range(first_seq, assigned + 1)) - waiting)
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
            (bay_id, state, iso(since), iso(now)))

    async def put_bay_usage(self, bay_id: str, usage: str, since: datetime, transaction_id: int | None,
                            now: datetime) -> None:
        await self._run(
            "INSERT INTO bays (bay_id, usage, usage_since, usage_tx, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (bay_id) DO UPDATE SET usage = excluded.usage, usage_since = excluded.usage_since,"
            " usage_tx = excluded.usage_tx, updated_at = excluded.updated_at",
            (bay_id, usage, iso(since), transaction_id, iso(now)))

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
        return None if row is None else charger_from_row(row)

    async def chargers(self) -> list[ChargerRecord]:
        return [charger_from_row(r) for r in await self._all("SELECT * FROM chargers ORDER BY id")]

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
            (charger_id, action, json.dumps(payload, default=str), iso(now)))

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
             None if response is None else json.dumps(response, default=str), origin, iso(now)))

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
            (reservation_id, charger_id, connector_id, id_tag, expiry_date, iso(now)))

    async def end_reservation(self, reservation_id: int, state: str, now: datetime) -> bool:
        changed = await self._run("UPDATE reservations SET state = ?, updated_at = ? WHERE id = ? AND state = 'active'",
                                  (state, iso(now), reservation_id))
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
             int(profile["stackLevel"]), json.dumps(profile), iso(now)))

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
                        (str(command_id), status, iso(now)))

    async def register_charger(self, charger_id: str, now: datetime) -> bool:
        """Make a charger id known (it may connect). False when it already was."""
        changed = await self._run("INSERT OR IGNORE INTO chargers (id, created_at) VALUES (?, ?)",
                                  (charger_id, iso(now)))
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
            (charger_id, vendor, model, serial, firmware, registration_status, iso(now), iso(now)),
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
        return None if row is None else auth_entry_from_row(row)

    async def auth_entries(self) -> list[AuthEntry]:
        return [auth_entry_from_row(r) for r in await self._all("SELECT * FROM auth_list ORDER BY id_tag")]

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
            (entry.id_tag, str(entry.status), iso(entry.expiry_date), entry.parent_id_tag, entry.vehicle_id))

    async def upsert_auth_entries(self, entries: Iterable[AuthListEntry], version: int) -> None:
        await self._db.executemany(
            """INSERT INTO auth_list (id_tag, status, expiry_date, parent_id_tag, vehicle_id)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (id_tag) DO UPDATE SET status = excluded.status,
                   expiry_date = excluded.expiry_date, parent_id_tag = excluded.parent_id_tag,
                   vehicle_id = excluded.vehicle_id""",
            [(e.id_tag, str(e.status), iso(e.expiry_date), e.parent_id_tag, e.vehicle_id) for e in entries],
        )
        await self._set_meta("authlist_version", str(version))

    # transactions

    async def get_transaction(self, transaction_id: int) -> TransactionRecord | None:
        row = await self._one("SELECT * FROM transactions WHERE id = ?", (transaction_id,))
        return None if row is None else transaction_from_row(row)

    async def active_transactions_of(self, id_tag: str, *, live: bool = False) -> list[TransactionRecord]:
        """The idTag's transactions not stopped; ``live``: without the ghosts (see :meth:`live_transactions`)."""
        rows = await self._all(f"SELECT t.* FROM transactions t "
                               f"WHERE t.id_tag = ? COLLATE NOCASE AND t.state = 'active' "
                               f"{_LIVE_WHERE if live else ''} ORDER BY t.id",
                               (id_tag,))
        return [transaction_from_row(r) for r in rows]

    async def live_transactions(self) -> list[TransactionRecord]:
        """Transactions in progress, without the ghosts: a transaction written off because its charger
        forgot it (:meth:`write_off`) stays active in the store, so a late stop is still billed, but it
        no longer takes a share of the site limit nor blocks its idTag (ConcurrentTx), ever again."""
        rows = await self._all(f"SELECT t.* FROM transactions t WHERE t.state = 'active' {_LIVE_WHERE} "
                               "ORDER BY t.id")
        return [transaction_from_row(r) for r in rows]

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
            params.append(iso(started_before))
        if except_id is not None:
            clauses.append("id != ?")
            params.append(except_id)
        where = " AND ".join(clauses)
        rows = await self._all(f"SELECT * FROM transactions WHERE {where} ORDER BY id", params)
        if rows:
            await self._run(f"UPDATE transactions SET written_off_at = ?, written_off_reason = ? WHERE {where}",
                            [iso(now), reason, *params])
        return [transaction_from_row(r) for r in rows]

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
        return [transaction_from_row(r) for r in rows]

    async def ended_transactions(self, *, since: datetime, limit: int) -> list[TransactionRecord]:
        """The latest ``limit`` transactions stopped at or after ``since`` (reconciliation reports)."""
        rows = await self._all("SELECT * FROM transactions WHERE state = 'stopped' AND stopped_at >= ?"
                               " ORDER BY id DESC LIMIT ?", (iso(since), limit))
        return [transaction_from_row(r) for r in rows]

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
        return None if row is None else transaction_from_row(row)

    async def insert_transaction(self, *, charger_id: str, connector_id: int, id_tag: str, id_tag_status: str,
                                 meter_start: int, started_at: datetime, reported_started_at: str,
                                 reservation_id: int | None, clock_suspect: bool) -> int:
        return await self._insert(
            """INSERT INTO transactions (charger_id, connector_id, id_tag, id_tag_status, meter_start, started_at,
                                         reported_started_at, reservation_id, state, clock_suspect)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)""",
            (charger_id, connector_id, id_tag, id_tag_status, meter_start, iso(started_at), reported_started_at,
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
            (meter_stop, iso(stopped_at), reported_stopped_at, stop_id_tag, reason, int(clock_suspect),
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
            (charger_id, transaction_id, meter_stop, reported_stopped_at, iso(stopped_at), id_tag, reason,
             iso(now)),
        )
        return changed == 1
