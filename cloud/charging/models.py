"""Tables of the charging service (its own database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class ChargingSession(SQLModel, table=True):
    __tablename__ = "charging_sessions"
    __table_args__ = (UniqueConstraint("site_id", "store_id", "charger_id", "transaction_id", name="uq_session_key"),)

    id: str = Field(primary_key=True, max_length=100,
                    description="opaque: cs_<hash of site, store, charger, transaction>; <site>:<tx> before 0004")
    site_id: str = Field(max_length=64, index=True)
    store_id: str = Field(max_length=64, default="legacy")
    transaction_id: int
    charger_id: str = Field(max_length=64)
    connector_id: int | None = None
    id_tag: str | None = Field(default=None, max_length=20, index=True)
    status: str = Field(max_length=16, description="active | completed")
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    meter_last_wh: int | None = None
    energy_wh: int = 0
    stop_reason: str | None = Field(default=None, max_length=32)
    clock_suspect: bool = False
    reconciled: bool = False
    closed_by: str | None = Field(default=None, max_length=16)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ChargingAnomalyRow(SQLModel, table=True):
    """What the service could not explain about a session, kept for the site's operators."""

    __tablename__ = "charging_anomalies"

    id: str = Field(primary_key=True, max_length=36)
    site_id: str = Field(max_length=64, index=True)
    store_id: str = Field(max_length=64)
    kind: str = Field(max_length=32)
    charger_id: str = Field(max_length=64)
    transaction_id: int | None = None
    session_id: str | None = Field(default=None, max_length=100)
    detail: str = Field(max_length=500)
    observed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    recorded_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))


class VehicleIdTag(SQLModel, table=True):
    """Which vehicle an idTag belongs to, learned from the vehicle service's events."""

    __tablename__ = "vehicle_id_tags"

    id_tag: str = Field(primary_key=True, max_length=20)
    vehicle_id: str = Field(max_length=36, index=True)


class VehicleOwner(SQLModel, table=True):
    """Which account a vehicle belongs to, learned from ``vehicle.registered`` (1.1 names it;
    a vehicle of a 1.0 event has a row with no owner: it belongs to no driver)."""

    __tablename__ = "vehicle_owners"

    vehicle_id: str = Field(primary_key=True, max_length=36)
    owner_id: str | None = Field(default=None, max_length=255)
