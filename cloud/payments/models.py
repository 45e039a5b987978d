"""Tables of the payment service (its own database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class BillingRate(SQLModel, table=True):
    """The tariff a site charges now (``cloud.pricing.Tariff`` as JSON, amounts as decimal strings)."""

    __tablename__ = "billing_rates"

    site_id: str = Field(primary_key=True, max_length=64)
    tariff: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    version: int = Field(description="1 for the site's first tariff, one more per change")
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_by: str = Field(max_length=255, description="the account (sub) that set this version")
