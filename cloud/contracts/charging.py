"""Events of the charging domain, on the ``charging.events`` exchange."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event


class SessionFacts(EventBody):
    """What every session event says about the session."""

    session_id: str = Field(description="the charging service's id of the session (opaque)")
    site_id: str
    store_id: str | None = Field(default=None, description=(
        "the edge database (store instance) that gave the transactionId; 'legacy' for sessions of edges "
        "older than store ids (since 1.2)"))
    transaction_id: int = Field(description="the OCPP transactionId the site's edge gave the session (unique per "
                                            "site, store and charger only)")
    charger_id: str
    connector_id: int | None = None
    id_tag: str | None = Field(default=None, description="the idTag that started the session")
    vehicle_id: str | None = Field(default=None, description="the vehicle the idTag belongs to, if known")
    owner_id: str | None = Field(default=None, description="the account the vehicle belongs to, if known (since 1.1)")
    started_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    energy_wh: int = Field(ge=0, description="energy delivered so far (started) or in all (completed), in Wh")
    clock_suspect: bool = Field(default=False, description="the charger's clock was not trustworthy")


@event("charging.started", "1.2", "A site's charger started a charging session.")
class ChargingStarted(SessionFacts):
    """1.1 added ``owner_id``; 1.2 ``store_id``."""


@event("charging.completed", "1.2", "A charging session ended; its energy is final.")
class ChargingCompleted(SessionFacts):
    """1.1 added ``owner_id``; 1.2 ``store_id`` and ``closed_by``."""

    closed_by: Literal["stop", "reconciliation"] = Field(default="stop", description=(
        "stop: the edge relayed the charger's StopTransaction; reconciliation: the edge no longer had the "
        "session open and the charging service closed it (with the edge's final figures when it had them)"))


@event("charging.anomaly", "1.0", "Something about a session that the charging service could not explain.")
class ChargingAnomaly(EventBody):
    """``foreign_stop``: a charger sent a StopTransaction for another charger's transaction (answered, never
    applied); ``meter_out_of_range``: a meter value was kept out of the energy figures; ``session_lost``:
    reconciliation closed a session the edge no longer has and whose end it could not report."""

    anomaly_id: str
    kind: Literal["foreign_stop", "meter_out_of_range", "session_lost"]
    site_id: str
    store_id: str | None = None
    charger_id: str
    transaction_id: int | None = None
    session_id: str | None = Field(default=None, description="the session it is about, when known")
    detail: str
    observed_at: AwareDatetime
