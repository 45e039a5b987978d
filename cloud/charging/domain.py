"""Charging rules, free of I/O: how the edge's session messages change a charging session.

Messages arrive at least once and, after an outage, possibly out of order (a stop before its
start). Each rule is idempotent and order-tolerant: a completed session never goes back to
active, and its energy is the edge's non-negative figure, counted once.

A :class:`Session` is one OCPP transaction of one site, keyed ``<site_id>:<transaction_id>``
(transaction ids are unique per site's edge only). Its rules return whether the message is a
fact the other services hear of: the session started (``charging.started``) or completed
(``charging.completed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mqtt import SessionMeter, SessionStarted, SessionStopped

ACTIVE = "active"
COMPLETED = "completed"


def session_key(site_id: str, transaction_id: int) -> str:
    return f"{site_id}:{transaction_id}"


@dataclass
class Session:
    """A charging session as the edge's messages describe it so far."""

    site_id: str
    transaction_id: int
    charger_id: str
    updated_at: datetime
    status: str = ACTIVE
    connector_id: int | None = None
    id_tag: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    meter_last_wh: int | None = None
    energy_wh: int = 0
    stop_reason: str | None = None
    clock_suspect: bool = False
    reconciled: bool = False

    @classmethod
    def new(cls, site_id: str, transaction_id: int, charger_id: str, now: datetime) -> Session:
        """The session a first message of a transaction opens, whichever message that is."""
        return cls(site_id=site_id, transaction_id=transaction_id, charger_id=charger_id, updated_at=now)

    @property
    def id(self) -> str:
        return session_key(self.site_id, self.transaction_id)

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def apply_started(self, body: SessionStarted, now: datetime) -> bool:
        """Record the start; returns True only when this is the session's start and it is still
        running (a start that arrives after its stop, or again, announces nothing)."""
        was_new = self.started_at is None
        self.connector_id = body.connector_id
        self.id_tag = body.id_tag
        self.started_at = body.started_at
        self.meter_start_wh = body.meter_start_wh
        self.clock_suspect = self.clock_suspect or body.clock_suspect
        if self.status != COMPLETED and self.meter_last_wh is None:
            self.meter_last_wh = body.meter_start_wh
        self.updated_at = now
        return was_new and self.status == ACTIVE

    def apply_meter(self, body: SessionMeter, now: datetime) -> bool:
        """Update the running energy; returns False when the reading changes nothing."""
        if self.status == COMPLETED or body.energy_register_wh is None:
            return False
        self.meter_last_wh = body.energy_register_wh
        if self.meter_start_wh is not None:
            self.energy_wh = max(0, body.energy_register_wh - self.meter_start_wh)
        self.updated_at = now
        return True

    def apply_stopped(self, body: SessionStopped, now: datetime) -> bool:
        """Complete the session; returns True only on the transition to completed."""
        if self.status == COMPLETED:
            return False
        self.status = COMPLETED
        self.stopped_at = body.stopped_at
        self.meter_stop_wh = body.meter_stop_wh
        self.meter_last_wh = body.meter_stop_wh
        self.energy_wh = body.energy_wh  # the edge already clamps negative energy to 0
        if body.meter_start_wh is not None and self.meter_start_wh is None:
            self.meter_start_wh = body.meter_start_wh
        if body.started_at is not None and self.started_at is None:
            self.started_at = body.started_at
        if body.id_tag and not self.id_tag:
            self.id_tag = body.id_tag
        self.stop_reason = body.reason
        self.reconciled = body.reconciled
        self.clock_suspect = self.clock_suspect or body.clock_suspect
        self.updated_at = now
        return True

    def duration_seconds(self) -> int | None:
        """Never negative: a charger whose clock was unset (1970) must not corrupt durations."""
        if self.started_at is None or self.stopped_at is None or self.clock_suspect:
            return None
        return max(0, int((self.stopped_at - self.started_at).total_seconds()))
