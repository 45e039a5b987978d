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
