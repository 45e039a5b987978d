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
