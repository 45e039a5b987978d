"""Tables of the parking service (its own database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class Bay(SQLModel, table=True):
    """One parking bay of a site, as its occupancy sensor last reported it."""

    __tablename__ = "bays"

    site_id: str = Field(primary_key=True, max_length=64)
    bay_id: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=16, description="occupied | free | unknown")
    changed_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    type: str | None = Field(default=None, max_length=16, description="ev | regular | accessible (inventory)")
    charger_id: str | None = Field(default=None, max_length=64)
    connector_id: int | None = None
    in_service: bool = True
    # bay.usage of a charger-served bay (null until the edge reports one)
    usage: str | None = Field(default=None, max_length=16, description="free | charging | idle | overstay | unknown")
    usage_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    usage_transaction_id: int | None = None
    usage_reported_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()),
                                               description="envelope ts of the report applied last")
    slot_id: str | None = Field(default=None, max_length=36, description="the API's opaque id of (site_id, bay_id)")
    out_of_service: bool = Field(default=False, description="an operator took the bay out of service")
    service_reason: str | None = Field(default=None, max_length=200)
    service_changed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class ChargerStation(SQLModel, table=True):
    """A charger of a site, as the site's inventory lists it."""

    __tablename__ = "charger_stations"

    site_id: str = Field(primary_key=True, max_length=64)
    charger_id: str = Field(primary_key=True, max_length=64)
    connectors: int
    max_power_w: int | None = None
    in_service: bool = True
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Site(SQLModel, table=True):
    """A site as the parking service knows it: its inventory's power settings, the uplink drops
    its edge reported, and the power limit an operator asked for."""

    __tablename__ = "parking_sites"

    site_id: str = Field(primary_key=True, max_length=64)
    last_seen_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()),
                                          description="when the cloud last received a message of the site")
    # mirrored from the last site.inventory (its envelope ts in inventory_at)
    inventory_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_limit_a: float | None = None
    phases: int | None = None
    voltage: float | None = None
    # site.outbox_dropped: running total and the latest report
    dropped_total: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"))
    last_drop_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    last_drop_policy: str | None = Field(default=None, max_length=32)
    last_drop_dropped: int | None = None
    last_drop_by_type: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    last_drop_first_seq: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_drop_last_seq: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_drop_backlog: int | None = Field(default=None, sa_column=Column(BigInteger))
    last_drop_backlog_bytes: int | None = Field(default=None, sa_column=Column(BigInteger))
    # the power limit requested through the API, and the site.set_power_limit command carrying it
    power_requested_a: float | None = None
    power_requested_w: float | None = None
    power_requested_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_status: str | None = Field(default=None, max_length=16,
                                     description="pending | accepted | rejected | failed | expired")
    power_detail: str | None = Field(default=None, max_length=500)
    power_command_id: str | None = Field(default=None, max_length=36)
    power_command_issued_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_command_expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_command_sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()),
                                                   description="null: the current command has not gone out yet")
    power_attempts: int = Field(default=0, description="commands sent for the current request")
    power_next_send_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_settled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    # the limit the site applies: from the newest of an accepted command.result and the inventory
    power_applied_a: float | None = None
    power_applied_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    power_applied_source: str | None = Field(default=None, max_length=16, description="command | inventory")
    # the list of sites: registered by `evpark sites add` (null: known only from its messages)
    registered_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    # the site's MQTT link (mqtt.link statuses and hellos)
    link_state: str | None = Field(default=None, max_length=16, description="online | offline; null: never heard")
    link_since: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    link_reason: str | None = Field(default=None, max_length=16, description="connected | hello | stopped | lost")
    link_connection_id: str | None = Field(default=None, max_length=64)
    link_connected_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    reservation_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"),
                                 description="reserves of the site so far: the per-site lock and OCPP reservationId")
    status_version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, server_default="0"),
                                description="bumped by every change of the site's status: its cache key")


class Reservation(SQLModel, table=True):
    """A driver's reservation of a bay for a window, and what the bay's charger answered."""

    __tablename__ = "parking_reservations"

    reservation_id: str = Field(primary_key=True, max_length=36)
    site_id: str = Field(max_length=64)
    bay_id: str = Field(max_length=64)
    slot_id: str = Field(max_length=36)
    bay_type: str = Field(max_length=16)
    vehicle_id: str = Field(max_length=64)
    owner_id: str = Field(max_length=64)
    starts_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    ends_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    charger_id: str | None = Field(default=None, max_length=64)
    connector_id: int | None = None
    ocpp_reservation_id: int | None = None
    id_tag: str | None = Field(default=None, max_length=20)
    charger_status: str | None = Field(default=None, max_length=32)
    charger_detail: str | None = Field(default=None, max_length=500)
    reserve_command_id: str | None = Field(default=None, max_length=36)
    reserve_sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    cancel_wanted: bool = False
    cancel_command_id: str | None = Field(default=None, max_length=36)
    cancel_sent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    cancel_status: str | None = Field(default=None, max_length=32)
    fulfilled_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    stay_id: str | None = Field(default=None, max_length=36)


class Stay(SQLModel, table=True):
    """A stay in a bay: open while ``departed_at`` is null, then a line of the parking history."""

    __tablename__ = "parking_history"

    stay_id: str = Field(primary_key=True, max_length=36)
    site_id: str = Field(max_length=64)
    bay_id: str = Field(max_length=64)
    slot_id: str = Field(max_length=36)
    bay_type: str = Field(max_length=16)
    arrived_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    departed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    reservation_id: str | None = Field(default=None, max_length=36)
    vehicle_id: str | None = Field(default=None, max_length=64)
    owner_id: str | None = Field(default=None, max_length=64)
    charger_id: str | None = Field(default=None, max_length=64)
    connector_id: int | None = None
    limit_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    limit_kind: str = Field(max_length=16)
    overstay_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    overstay_minutes: int = 0
    session_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    sensor_known: bool = True
    closed_by: str | None = Field(default=None, max_length=16)


class LotConfiguration(SQLModel, table=True):
    """A site's lot rules, as its operators set them (defaults from the glossary until then)."""

    __tablename__ = "lot_configuration"

    site_id: str = Field(primary_key=True, max_length=64)
    name: str | None = Field(default=None, max_length=120)
    time_zone: str = Field(max_length=64)
    opening_hours: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    reservable_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    max_reservation_minutes: int
    booking_horizon_days: int
    arrival_grace_minutes: int
    max_stay_minutes: int
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class Vehicle(SQLModel, table=True):
    """The vehicle registry's vehicles, as their events tell parking: kind, owner, first idTag."""

    __tablename__ = "parking_vehicles"

    vehicle_id: str = Field(primary_key=True, max_length=64)
    owner_id: str | None = Field(default=None, max_length=64)
    type: str = Field(max_length=32)
    id_tag: str | None = Field(default=None, max_length=20)
    deleted: bool = False


class ParkingDebt(SQLModel, table=True):
    """One invoice of the driver-debt projection: open while ``paid_at`` is None (``payment.failed``),
    settled once ``payment.completed`` names it (a settled row stays, so a late failure reopens nothing).
    A reservation is refused (402) while the driver has an open row with ``refuse`` at the site."""

    __tablename__ = "parking_debts"

    invoice_id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(max_length=64)
    site_id: str | None = Field(default=None, max_length=64)
    amount: str = Field(max_length=32, description="the amount due as a decimal string")
    currency: str = Field(max_length=3)
    refuse: bool = Field(default=False, description="the site refuses the driver new reservations until paid")
    failed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    paid_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
