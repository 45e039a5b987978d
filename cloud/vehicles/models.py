"""Tables of the vehicle registry (its own database).

Energy and power are integers (Wh, W); the API speaks kWh and kW as decimals.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class Vehicle(SQLModel, table=True):
    __tablename__ = "vehicles"

    id: str = Field(primary_key=True, max_length=36)
    plate: str = Field(max_length=16, unique=True)
    plate_key: str = Field(max_length=40, unique=True, description="the plate without case, spaces or dashes")
    make: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    owner_id: str | None = Field(default=None, max_length=255, index=True)
    """The account (token subject) that registered it; NULL for vehicles older than ownership."""
    kind: str = Field(default="electric", max_length=16, index=True)
    vehicle_type_id: str | None = Field(default=None, max_length=64)
    battery_wh: int | None = None
    connector_types: str = Field(default="", max_length=128, description="comma-separated")
    version: int = 1
    updated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class IdTag(SQLModel, table=True):
    """An RFID card or app token (OCPP idTag, CiString20) that belongs to one vehicle."""

    __tablename__ = "id_tags"
    __table_args__ = (
        Index("uq_id_tags_folded", "id_tag_folded", unique=True, sqlite_where=text("blocked_reason IS NULL"),
              postgresql_where=text("blocked_reason IS NULL")),
    )

    id_tag: str = Field(primary_key=True, max_length=20)
    id_tag_folded: str = Field(max_length=20, description="upper case: idTags are case-insensitive")
    vehicle_id: str = Field(foreign_key="vehicles.id", max_length=36, index=True)
    status: str = Field(max_length=16, default="Accepted")
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    blocked_reason: str | None = Field(default=None, max_length=200)


class AuthListChange(SQLModel, table=True):
    """Every change to the authorization list; its id is the list version the sites sync to."""

    __tablename__ = "authlist_changes"

    version: int | None = Field(default=None, primary_key=True)
    id_tag: str = Field(max_length=20, index=True)
    status: str = Field(max_length=16)
    vehicle_id: str | None = Field(default=None, max_length=36)
    changed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Site(SQLModel, table=True):
    """A site's edge as seen by the registry: which list version it has confirmed."""

    __tablename__ = "sites"

    site_id: str = Field(primary_key=True, max_length=64)
    synced_version: int = 0
    pending_command_id: str | None = Field(default=None, max_length=36)
    pending_version: int | None = None
    pending_sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    last_seen_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class VehicleType(SQLModel, table=True):
    """The catalogue of vehicle models (migration 0004 loads common EVs)."""

    __tablename__ = "vehicle_types"
    __table_args__ = (UniqueConstraint("make", "model", name="uq_vehicle_types_make_model"),)

    id: str = Field(primary_key=True, max_length=64)
    make: str = Field(max_length=64)
    model: str = Field(max_length=64)
    kind: str = Field(default="electric", max_length=16)
    battery_wh: int | None = None
    max_ac_w: int | None = None
    max_dc_w: int | None = None
    connector_types: str = Field(default="", max_length=128)
    source: str | None = Field(default=None, max_length=300)
    version: int = 1


class VehicleRegistration(SQLModel, table=True):
    """The history of a vehicle's plates and owners; kept after the vehicle is deleted."""

    __tablename__ = "vehicle_registration"

    id: int | None = Field(default=None, primary_key=True)
    vehicle_id: str = Field(max_length=36, index=True)
    plate: str = Field(max_length=16)
    owner_id: str | None = Field(default=None, max_length=255)
    started_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    ended_because: str | None = Field(default=None, max_length=32)


class VehicleStatus(SQLModel, table=True):
    """Where a vehicle is and what it does, from parking.* and charging.* events."""

    __tablename__ = "vehicle_status"

    vehicle_id: str = Field(primary_key=True, max_length=36)
    site_id: str | None = Field(default=None, max_length=64)
    charger_id: str | None = Field(default=None, max_length=64)
    connector_id: int | None = None
    bay_id: str | None = Field(default=None, max_length=64)
    parked_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    left_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    session_id: str | None = Field(default=None, max_length=100)
    charging: bool = False
    charging_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    energy_wh: int = 0
    reservation_id: str | None = Field(default=None, max_length=64)
    reserved_site_id: str | None = Field(default=None, max_length=64)
    reserved_bay_id: str | None = Field(default=None, max_length=64)
    reserved_from: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    reserved_until: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    updated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class StatusBay(SQLModel, table=True):
    """A bay as parking's events describe it: the connector serving it, and its occupancy."""

    __tablename__ = "status_bays"

    site_id: str = Field(primary_key=True, max_length=64)
    bay_id: str = Field(primary_key=True, max_length=64)
    charger_id: str | None = Field(default=None, max_length=64)
    connector_id: int | None = None
    occupied: bool | None = None
    since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
