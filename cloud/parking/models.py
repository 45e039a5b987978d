"""Tables of the parking service (its own database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
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


class ChargerStation(SQLModel, table=True):
    """A charger of a site, as the site's inventory lists it."""

    __tablename__ = "charger_stations"

    site_id: str = Field(primary_key=True, max_length=64)
    charger_id: str = Field(primary_key=True, max_length=64)
    connectors: int
    max_power_w: int | None = None
    in_service: bool = True
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
