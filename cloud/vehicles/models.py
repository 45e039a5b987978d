"""Tables of the vehicle registry (its own database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class Vehicle(SQLModel, table=True):
    __tablename__ = "vehicles"

    id: str = Field(primary_key=True, max_length=36)
    plate: str = Field(max_length=16, unique=True)
    make: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    owner_id: str | None = Field(default=None, max_length=255, index=True)
    """The account (token subject) that registered it; NULL for vehicles older than ownership."""


class IdTag(SQLModel, table=True):
    """An RFID card or app token (OCPP idTag, CiString20) that belongs to one vehicle."""

    __tablename__ = "id_tags"

    id_tag: str = Field(primary_key=True, max_length=20)
    vehicle_id: str = Field(foreign_key="vehicles.id", max_length=36, index=True)
    status: str = Field(max_length=16, default="Accepted")
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


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
