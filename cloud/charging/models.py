"""Tables of the charging service (its own database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
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
    power_w: float | None = None
    sampled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    low_power_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    energy_finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    meter_backwards: int = 0
    power_class: str | None = Field(default=None, max_length=2)


class ChargingHistoryRow(SQLModel, table=True):
    """A closed session as billing and analytics read it: energy, duration, stop reason, meter summary."""

    __tablename__ = "charging_history"

    session_id: str = Field(primary_key=True, max_length=100)
    site_id: str = Field(max_length=64, index=True)
    charger_id: str = Field(max_length=64)
    connector_id: int | None = None
    vehicle_id: str | None = Field(default=None, max_length=36, index=True)
    started_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    duration_s: int | None = None
    energy_wh: int = 0
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    stop_reason: str | None = Field(default=None, max_length=32)
    energy_finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_class: str | None = Field(default=None, max_length=2)
    meter_backwards: int = 0
    closed_by: str | None = Field(default=None, max_length=16)


class ChargerStationRow(SQLModel, table=True):
    """One connector of a charger of a site (connector 0: the charger itself, with its link and inventory)."""

    __tablename__ = "charging_stations"

    site_id: str = Field(primary_key=True, max_length=64)
    charger_id: str = Field(primary_key=True, max_length=64)
    connector_id: int = Field(primary_key=True)
    status: str = Field(max_length=32, default="Unknown")
    error_code: str | None = Field(default=None, max_length=64)
    info: str | None = Field(default=None, max_length=255)
    status_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    profile_limit: float | None = None
    online: bool = False
    online_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    max_power_w: int | None = None
    connector_count: int = 0
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ChargingRateRow(SQLModel, table=True):
    """The tariff in force at a site, from ``payment.tariff_changed`` (the newest version wins)."""

    __tablename__ = "charging_rates"

    site_id: str = Field(primary_key=True, max_length=64)
    currency: str = Field(max_length=3)
    version: int
    changed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    tariff: str = Field(sa_column=Column(Text(), nullable=False), description="cloud.pricing.Tariff as JSON")


class ChargingDebtRow(SQLModel, table=True):
    """One invoice of the driver-debt projection: open while ``paid_at`` is None (``payment.failed``),
    settled once ``payment.completed`` names it (a settled row stays, so a late failure reopens nothing)."""

    __tablename__ = "charging_debts"

    invoice_id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(max_length=64)
    site_id: str | None = Field(default=None, max_length=64)
    amount: str = Field(max_length=32, description="the amount due as a decimal string")
    currency: str = Field(max_length=3)
    refuse: bool = Field(default=False, description="the site refuses the driver remote starts until paid")
    failed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))


class ChargingCommandRow(SQLModel, table=True):
    """A remote command sent to a site's charger, and the answer that came back."""

    __tablename__ = "charging_commands"

    id: str = Field(primary_key=True, max_length=36)
    site_id: str = Field(max_length=64, index=True)
    charger_id: str = Field(max_length=64)
    connector_id: int | None = None
    type: str = Field(max_length=48)
    vehicle_id: str | None = Field(default=None, max_length=36)
    owner_id: str | None = Field(default=None, max_length=255)
    id_tag: str | None = Field(default=None, max_length=20)
    status: str = Field(max_length=16, description="pending | accepted | rejected | failed | expired | timeout")
    detail: str | None = Field(default=None, max_length=1000)
    response: str | None = Field(default=None, sa_column=Column(Text()))
    issued_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    answered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


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
