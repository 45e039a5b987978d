"""Charging rules, free of I/O: how the edge's session messages change a session record.

Messages arrive at least once and, after an outage, possibly out of order (a stop before its
start). Each rule is idempotent and order-tolerant: a completed session never goes back to
active, and its energy is the edge's non-negative figure, counted once.
"""

from __future__ import annotations

from datetime import datetime

from cloud.charging.models import ChargingSession
from mqtt import SessionMeter, SessionStarted, SessionStopped

ACTIVE = "active"
COMPLETED = "completed"


def session_key(site_id: str, transaction_id: int) -> str:
    return f"{site_id}:{transaction_id}"


def new_session(site_id: str, transaction_id: int, charger_id: str, now: datetime) -> ChargingSession:
    return ChargingSession(id=session_key(site_id, transaction_id), site_id=site_id,
                           transaction_id=transaction_id, charger_id=charger_id, status=ACTIVE,
                           updated_at=now)


def apply_started(session: ChargingSession, body: SessionStarted, now: datetime) -> None:
    session.connector_id = body.connector_id
    session.id_tag = body.id_tag
    session.started_at = body.started_at
    session.meter_start_wh = body.meter_start_wh
    session.clock_suspect = session.clock_suspect or body.clock_suspect
    if session.status != COMPLETED and session.meter_last_wh is None:
        session.meter_last_wh = body.meter_start_wh
    session.updated_at = now


def apply_meter(session: ChargingSession, body: SessionMeter, now: datetime) -> bool:
    """Update the running energy; returns False when the reading changes nothing."""
    if session.status == COMPLETED or body.energy_register_wh is None:
        return False
    session.meter_last_wh = body.energy_register_wh
    if session.meter_start_wh is not None:
        session.energy_wh = max(0, body.energy_register_wh - session.meter_start_wh)
    session.updated_at = now
    return True


def apply_stopped(session: ChargingSession, body: SessionStopped, now: datetime) -> bool:
    """Complete the session; returns True only on the transition to completed."""
    if session.status == COMPLETED:
        return False
    session.status = COMPLETED
    session.stopped_at = body.stopped_at
    session.meter_stop_wh = body.meter_stop_wh
    session.meter_last_wh = body.meter_stop_wh
    session.energy_wh = body.energy_wh  # the edge already clamps negative energy to 0
    if body.meter_start_wh is not None and session.meter_start_wh is None:
        session.meter_start_wh = body.meter_start_wh
    if body.started_at is not None and session.started_at is None:
        session.started_at = body.started_at
    if body.id_tag and not session.id_tag:
        session.id_tag = body.id_tag
    session.stop_reason = body.reason
    session.reconciled = body.reconciled
    session.clock_suspect = session.clock_suspect or body.clock_suspect
    session.updated_at = now
    return True


def duration_seconds(session: ChargingSession) -> int | None:
    """Never negative: a charger whose clock was unset (1970) must not corrupt durations."""
    if session.started_at is None or session.stopped_at is None or session.clock_suspect:
        return None
    return max(0, int((session.stopped_at - session.started_at).total_seconds()))
