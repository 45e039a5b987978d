"""What the charging use cases answer: the read models the REST API returns as they are."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from cloud.charging.domain import EVERYTHING, ReaderScope, Session
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

    @classmethod
    def of(cls, session: Session, scope: ReaderScope = EVERYTHING) -> SessionView:
        """The session as a caller with ``scope`` sees it (no idTag for operators and technicians)."""
        return cls(session_id=session.id, site_id=session.site_id, store_id=session.store_id,
                   charger_id=session.charger_id,
                   connector_id=session.connector_id, transaction_id=session.transaction_id,
                   id_tag=scope.id_tag(session.id_tag), status=session.status, started_at=session.started_at,
                   stopped_at=session.stopped_at, duration_s=session.duration_seconds(),
                   energy_wh=session.energy_wh, stop_reason=session.stop_reason,
                   clock_suspect=session.clock_suspect, closed_by=session.closed_by)

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
