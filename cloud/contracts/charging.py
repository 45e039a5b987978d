"""Events of the charging domain, on the ``charging.events`` exchange."""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event


class SessionFacts(EventBody):
    """What every session event says about the session."""

    session_id: str = Field(description="the charging service's id of the session")
    site_id: str
    transaction_id: int = Field(description="the OCPP transactionId the site's edge gave the session")
    charger_id: str
    connector_id: int | None = None
    id_tag: str | None = Field(default=None, description="the idTag that started the session")
    vehicle_id: str | None = Field(default=None, description="the vehicle the idTag belongs to, if known")
    owner_id: str | None = Field(default=None, description="the account the vehicle belongs to, if known (since 1.1)")
    started_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    energy_wh: int = Field(ge=0, description="energy delivered so far (started) or in all (completed), in Wh")
    clock_suspect: bool = Field(default=False, description="the charger's clock was not trustworthy")


@event("charging.started", "1.1", "A site's charger started a charging session.")
class ChargingStarted(SessionFacts):
    """1.1 added ``owner_id``."""


@event("charging.completed", "1.1", "A charging session ended; its energy is final.")
class ChargingCompleted(SessionFacts):
    """1.1 added ``owner_id``."""
