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


@event("charging.completed", "1.3", "A charging session ended; its energy is final.")
class ChargingCompleted(SessionFacts):
    """1.1 added ``owner_id``; 1.2 ``store_id`` and ``closed_by``; 1.3 the stop reason, duration, meter
    summary, energy-finished time and power class (what billing and analytics price and count)."""

    closed_by: Literal["stop", "reconciliation"] = Field(default="stop", description=(
        "stop: the edge relayed the charger's StopTransaction; reconciliation: the edge no longer had the "
        "session open and the charging service closed it (with the edge's final figures when it had them)"))
    stop_reason: str | None = Field(default=None, description=(
        "OCPP 1.6 StopTransaction reason (Local when the charger sent none, §7.45); null when reconciled "
        "without one (since 1.3)"))
    duration_s: int | None = Field(default=None, ge=0, description="stopped_at - started_at in seconds (since 1.3)")
    meter_start_wh: int | None = Field(default=None, ge=0, description="the meter at the start (since 1.3)")
    meter_stop_wh: int | None = Field(default=None, ge=0, description="the meter at the stop (since 1.3)")
    energy_finished_at: AwareDatetime | None = Field(default=None, description=(
        "when the vehicle stopped drawing energy (the glossary's energy finished), if it did before the stop; "
        "idle starts here (since 1.3)"))
    power_class: Literal["ac", "dc"] | None = Field(default=None, description=(
        "the charger's power class from the site inventory, if known (since 1.3)"))


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


class ChargerFacts(EventBody):
    site_id: str
    charger_id: str


@event("charging.failed", "1.0", "A charging attempt or session failed: remote start refused or unanswered, "
       "a charger fault mid-session, an abnormal stop.")
class ChargingFailed(ChargerFacts):
    reason: Literal["remote_start_rejected", "remote_start_timeout", "charger_faulted", "abnormal_stop"]
    connector_id: int | None = None
    session_id: str | None = Field(default=None, description="the session, when one had started")
    vehicle_id: str | None = None
    owner_id: str | None = Field(default=None, description="the account to tell, when known")
    stop_reason: str | None = Field(default=None, description="the OCPP stop reason of an abnormal stop "
                                    "(EmergencyStop, PowerLoss, EVDisconnected with a fault, ...)")
    detail: str = Field(default="", description="what the charger or the edge said")
    failed_at: AwareDatetime


@event("charging.energy_finished", "1.0", "A session's vehicle stopped drawing energy while still plugged in "
       "(never when the site's load manager or a profile holds it at 0 A); the idle-fee grace starts.")
class EnergyFinished(SessionFacts):
    energy_finished_at: AwareDatetime
    trigger: Literal["suspended_ev", "finishing", "low_power"] = Field(description=(
        "suspended_ev / finishing: the connector's status; low_power: under 100 W for 5 minutes"))


@event("charging.charger_faulted", "1.0", "A charger or connector reported Faulted.")
class ChargerFaulted(ChargerFacts):
    connector_id: int = Field(ge=0, description="0: the whole charger")
    error_code: str
    info: str | None = None
    vendor_error_code: str | None = None
    faulted_at: AwareDatetime


@event("charging.charger_offline", "1.0", "A charger lost its connection to the site's edge (or its site went "
       "offline).")
class ChargerOffline(ChargerFacts):
    since: AwareDatetime


@event("charging.charger_online", "1.0", "A charger is connected to its site's edge again.")
class ChargerOnline(ChargerFacts):
    since: AwareDatetime
