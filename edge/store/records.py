"""What the store hands out: records of chargers, connectors, sessions, bays and outbox rows, and
the mappers from SQLite rows (timestamps are stored as ISO 8601 text in UTC)."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.domain import AuthEntry
from mqtt.payloads import IdTagStatus


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


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
                   occupancy_since=parse_ts(row["occupancy_since"]), usage=row["usage"],
                   usage_since=parse_ts(row["usage_since"]), usage_tx=row["usage_tx"])


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


def charger_from_row(row: sqlite3.Row) -> ChargerRecord:
    return ChargerRecord(id=row["id"], vendor=row["vendor"], model=row["model"], serial=row["serial"],
                         firmware=row["firmware"], registration_status=row["registration_status"],
                         last_seen=parse_ts(row["last_seen"]), security_profile=row["security_profile"],
                         auth_key_hash=row["auth_key_hash"], firmware_status=row["firmware_status"],
                         diagnostics_status=row["diagnostics_status"], local_list_version=row["local_list_version"],
                         next_auth_key_hash=row["next_auth_key_hash"])


def transaction_from_row(row: sqlite3.Row) -> TransactionRecord:
    return TransactionRecord(
        id=row["id"], charger_id=row["charger_id"], connector_id=row["connector_id"], id_tag=row["id_tag"],
        id_tag_status=row["id_tag_status"], meter_start=row["meter_start"],
        started_at=datetime.fromisoformat(row["started_at"]), reported_started_at=row["reported_started_at"],
        reservation_id=row["reservation_id"], meter_stop=row["meter_stop"], stopped_at=parse_ts(row["stopped_at"]),
        reason=row["reason"], state=row["state"], clock_suspect=bool(row["clock_suspect"]),
        written_off_at=parse_ts(row["written_off_at"]), written_off_reason=row["written_off_reason"],
    )


def auth_entry_from_row(row: sqlite3.Row) -> AuthEntry:
    return AuthEntry(id_tag=row["id_tag"], status=IdTagStatus(row["status"]),
                     expiry_date=parse_ts(row["expiry_date"]), parent_id_tag=row["parent_id_tag"],
                     vehicle_id=row["vehicle_id"])
