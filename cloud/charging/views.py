"""What the charging use cases answer: the read models the REST API returns as they are."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from cloud.charging.domain import EVERYTHING, ReaderScope, RemoteCommand, Session, SiteRates, Station, rates_by_class
from cloud.contracts.charging import ChargingAnomaly


class SessionView(BaseModel):
    session_id: str
    site_id: str
    store_id: str
    charger_id: str
    connector_id: int | None
    transaction_id: int
    id_tag: str | None
    status: str
    started_at: datetime | None
    stopped_at: datetime | None
    duration_s: int | None
    energy_wh: int
    stop_reason: str | None
    clock_suspect: bool
    closed_by: str | None = None
    power_w: float | None = Field(default=None, description="the last power the charger reported (W)")
    soc_percent: float | None = Field(default=None, description="state of charge, when the charger reports it "
                                      "(the edge's meter values carry none yet: always null)")
    energy_finished_at: datetime | None = Field(default=None, description="when the vehicle stopped drawing while "
                                                "plugged in (GLOSSARY: energy finished)")
    meter_backwards: int = Field(default=0, description="meter values below the previous one, kept out of the "
                                 "energy figure")
    power_class: str | None = None
    cost_so_far: Decimal | None = Field(default=None, description="running sessions: the gross amount if it ended "
                                        "now, by the site's tariff (null without a tariff)")
    currency: str | None = None

    @classmethod
    def of(cls, session: Session, scope: ReaderScope = EVERYTHING) -> SessionView:
        """The session as a caller with ``scope`` sees it (no idTag for operators and technicians)."""
        return cls(session_id=session.id, site_id=session.site_id, store_id=session.store_id,
                   charger_id=session.charger_id,
                   connector_id=session.connector_id, transaction_id=session.transaction_id,
                   id_tag=scope.id_tag(session.id_tag), status=session.status, started_at=session.started_at,
                   stopped_at=session.stopped_at, duration_s=session.duration_seconds(),
                   energy_wh=session.energy_wh, stop_reason=session.stop_reason,
                   clock_suspect=session.clock_suspect, closed_by=session.closed_by, power_w=session.power_w,
                   energy_finished_at=session.energy_finished_at, meter_backwards=session.meter_backwards,
                   power_class=session.power_class)

    def seen_with(self, scope: ReaderScope) -> SessionView:
        """This (full) view as a caller with ``scope`` sees it."""
        return self if scope.shows_id_tags else self.model_copy(update={"id_tag": None})


class StatusView(BaseModel):
    """Whether a vehicle charges now: its running sessions, newest start first."""

    vehicle_id: str
    charging: bool
    sessions: list[SessionView]


class HistoryView(BaseModel):
    """One page of a vehicle's completed sessions, newest stop first."""

    vehicle_id: str
    sessions: list[SessionView]
    limit: int
    offset: int


class AnomaliesView(BaseModel):
    """One page of charging anomalies, newest first (``site_id`` None: every site the caller sees)."""

    site_id: str | None
    anomalies: list[ChargingAnomaly]
    limit: int
    offset: int


class StartRequest(BaseModel):
    vehicle_id: str = Field(min_length=1, max_length=64)
    site_id: str = Field(min_length=1, max_length=64)
    charger_id: str = Field(min_length=1, max_length=64)
    connector_id: int | None = Field(default=None, ge=1, le=99)


class StopRequest(BaseModel):
    """One of ``session_id`` or ``vehicle_id`` (its running session)."""

    session_id: str | None = Field(default=None, min_length=1, max_length=100)
    vehicle_id: str | None = Field(default=None, min_length=1, max_length=64)


class CommandAnswer(BaseModel):
    """What the charger answered a remote start or stop: ``Accepted`` or ``Rejected`` (also for a command the
    edge could not carry out: ``detail`` says why). ``session_id`` once the session exists, else null (a
    remote start's session appears when the car plugs in)."""

    status: Literal["Accepted", "Rejected"]
    session_id: str | None
    command_id: str
    connector_id: int | None = None
    detail: str | None = None


class UnlockRequest(BaseModel):
    connector_id: int = Field(ge=1, le=99)


class ResetRequest(BaseModel):
    type: Literal["Soft", "Hard"] = "Soft"


class AvailabilityRequest(BaseModel):
    connector_id: int = Field(default=0, ge=0, le=99, description="0: the whole charger")
    type: Literal["Operative", "Inoperative"]


class StationCommandAnswer(BaseModel):
    """The edge's outcome (``accepted``, ``rejected``, ``failed``, ``expired``) and the charger's own answer
    (OCPP ``status``: Unlocked, UnlockFailed, NotSupported, Accepted, Rejected, Scheduled)."""

    command_id: str
    outcome: str
    charger_status: str | None
    detail: str | None

    @classmethod
    def of(cls, command: RemoteCommand) -> StationCommandAnswer:
        return cls(command_id=command.id, outcome=command.status, charger_status=command.charger_status,
                   detail=command.detail)


class ConnectorView(BaseModel):
    connector_id: int
    status: str = Field(description="Available, Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing, Reserved, "
                        "Unavailable, Faulted; Offline while the charger is not connected; Unknown before it said")
    error_code: str | None
    info: str | None
    status_at: datetime | None
    session_id: str | None = Field(description="the running session (shown to the site's staff and admins only)")


class StationView(BaseModel):
    charger_id: str
    online: bool
    online_since: datetime | None
    status: str = Field(description="the charger itself (connector 0)")
    max_power_w: int | None
    power_class: str | None
    connectors: list[ConnectorView]

    @classmethod
    def of(cls, station: Station, sessions: dict[int, str] | None) -> StationView:
        """``sessions``: connector → running session id, None when the caller may not see them."""
        return cls(charger_id=station.charger_id, online=station.online, online_since=station.online_since,
                   status=station.live_status(0), max_power_w=station.max_power_w, power_class=station.power_class,
                   connectors=[ConnectorView(connector_id=n, status=station.live_status(n),
                                             error_code=station.connectors[n].error_code,
                                             info=station.connectors[n].info,
                                             status_at=station.connectors[n].status_at,
                                             session_id=(sessions or {}).get(n))
                               for n in sorted(station.connectors) if n >= 1])


class StationsView(BaseModel):
    site_id: str
    stations: list[StationView]


class RateClassView(BaseModel):
    bay_type: str
    power_class: str
    elements: list[dict[str, Any]] = Field(description="the tariff's elements that may apply there, in order "
                                           "(components with prices, restrictions); the first that matches wins")


class RatesView(BaseModel):
    site_id: str
    currency: str
    version: int
    changed_at: datetime
    tax_rate: Decimal
    time_zone: str
    rates: list[RateClassView]

    @classmethod
    def of(cls, rates: SiteRates) -> RatesView:
        return cls(site_id=rates.site_id, currency=rates.currency, version=rates.version, changed_at=rates.changed_at,
                   tax_rate=rates.tariff.tax_rate, time_zone=rates.tariff.time_zone,
                   rates=[RateClassView(bay_type=bay, power_class=power, elements=[e for _, e in elements])
                          for bay, power, elements in rates_by_class(rates.tariff)])
