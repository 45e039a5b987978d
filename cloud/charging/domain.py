"""Charging rules, free of I/O: how the edge's session messages change a charging session.

Messages arrive at least once and, after an outage, possibly out of order (a stop before its
start). Each rule is idempotent and order-tolerant: a completed session never goes back to
active, and its energy is the edge's non-negative figure, counted once.

A :class:`Session` is one OCPP transaction, identified by what makes it unique: the site, the
edge's store instance (a replaced edge database starts its transaction ids at 1 again), the
charger and the transaction id. Its ``id`` is opaque (:func:`session_key`); sessions recorded
before store ids existed keep their old ``<site_id>:<transaction_id>`` id and belong to the
store :data:`LEGACY_STORE`, as do the sessions of edges that send no store id. Its rules
return whether the message is a fact the other services hear of: the session started
(``charging.started``) or completed (``charging.completed``).

Who reads a vehicle's sessions (:func:`reader_scope`): the vehicle's owner (the account the
vehicle service named in ``vehicle.registered`` 1.1) and an admin see every session with its
idTag; an operator or technician sees only the sessions at their sites, never the idTag (an
idTag is enough to clone a card), and only a vehicle that has a session at one of their sites;
to anyone else the vehicle does not exist (404, the same answer as for an unknown vehicle).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from cloud.contracts.identity import SITE_SCOPED, Forbidden, Principal
from mqtt import EndedTransaction, SessionMeter, SessionStarted, SessionStopped

ACTIVE = "active"
COMPLETED = "completed"
LEGACY_STORE = "legacy"
"""The store of sessions recorded before edges sent store ids, and of edges that still send none."""


def store_of(store_id: str | None) -> str:
    return store_id or LEGACY_STORE


def session_key(site_id: str, store_id: str, charger_id: str, transaction_id: int) -> str:
    """The opaque session id of (site, store, charger, transaction): ``cs_`` and 32 hex digits."""
    digest = hashlib.sha256("\x00".join((site_id, store_id, charger_id, str(transaction_id))).encode()).hexdigest()
    return f"cs_{digest[:32]}"


@dataclass
class Session:
    """A charging session as the edge's messages describe it so far."""

    site_id: str
    transaction_id: int
    charger_id: str
    updated_at: datetime
    store_id: str = LEGACY_STORE
    id: str = field(default="")
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
    closed_by: str | None = None
    """How a completed session ended: ``stop`` (the charger's StopTransaction) or ``reconciliation``."""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = session_key(self.site_id, self.store_id, self.charger_id, self.transaction_id)

    @classmethod
    def new(cls, site_id: str, transaction_id: int, charger_id: str, now: datetime,
            store_id: str = LEGACY_STORE) -> Session:
        """The session a first message of a transaction opens, whichever message that is."""
        return cls(site_id=site_id, transaction_id=transaction_id, charger_id=charger_id, updated_at=now,
                   store_id=store_id)

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
        self.closed_by = "stop"
        self.updated_at = now
        return True

    def close_with(self, ended: EndedTransaction, now: datetime) -> bool:
        """Reconciliation: the edge has this transaction stopped (its stop never came); complete it with
        the edge's final figures. True only on the transition to completed."""
        if self.status == COMPLETED:
            return False
        self.status = COMPLETED
        self.stopped_at = ended.stopped_at
        self.meter_stop_wh = ended.meter_stop_wh
        self.meter_last_wh = ended.meter_stop_wh
        self.energy_wh = ended.energy_wh
        if self.meter_start_wh is None:
            self.meter_start_wh = ended.meter_start_wh
        if self.started_at is None:
            self.started_at = ended.started_at
        self.stop_reason = ended.reason
        self.closed_by = "reconciliation"
        self.updated_at = now
        return True

    def close_lost(self, now: datetime) -> bool:
        """Reconciliation: the edge no longer has this transaction and cannot say how it ended; complete
        it with the energy known so far (an anomaly tells the operator). True on the transition."""
        if self.status == COMPLETED:
            return False
        self.status = COMPLETED
        self.stopped_at = now
        self.meter_stop_wh = self.meter_last_wh
        self.stop_reason = "Lost"
        self.closed_by = "reconciliation"
        self.updated_at = now
        return True

    def duration_seconds(self) -> int | None:
        """Never negative: a charger whose clock was unset (1970) must not corrupt durations."""
        if self.started_at is None or self.stopped_at is None or self.clock_suspect:
            return None
        return max(0, int((self.stopped_at - self.started_at).total_seconds()))


# --- who reads a vehicle's sessions ----------------------------------------------------------------


@dataclass(frozen=True)
class ReaderScope:
    """What one caller sees of one vehicle's sessions."""

    sites: frozenset[str] | None
    """The sites whose sessions are shown; ``None``: every site."""
    shows_id_tags: bool

    @property
    def site_scoped(self) -> bool:
        return self.sites is not None

    def covers(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites

    def id_tag(self, id_tag: str | None) -> str | None:
        """The idTag as this caller may see it."""
        return id_tag if self.shows_id_tags else None


EVERYTHING = ReaderScope(sites=None, shows_id_tags=True)


def require_session_reader(principal: Principal) -> None:
    """Every role may read some vehicle's sessions; a caller without any role never may (403)."""
    if not principal.roles:
        raise Forbidden("reading charging sessions needs a driver, operator, technician or admin role")


def is_owner(principal: Principal, owner_id: str | None) -> bool:
    """The caller's account registered the vehicle (a vehicle of a 1.0 event belongs to no one)."""
    return owner_id is not None and principal.subject == owner_id


def reader_scope(principal: Principal, owner_id: str | None) -> ReaderScope | None:
    """What ``principal`` sees of the sessions of a vehicle owned by ``owner_id``; ``None``: the
    vehicle is not theirs to see (answered exactly as an unknown vehicle)."""
    require_session_reader(principal)
    if principal.is_admin or is_owner(principal, owner_id):
        return EVERYTHING
    if principal.roles & set(SITE_SCOPED) and principal.sites:
        return ReaderScope(sites=frozenset(principal.sites), shows_id_tags=False)
    return None


def visible(scope: ReaderScope, sessions: Iterable[Session]) -> list[Session]:
    """The sessions of ``sessions`` at the scope's sites (in order)."""
    return [s for s in sessions if scope.covers(s.site_id)]


def sees_vehicle(scope: ReaderScope | None, has_sessions_at_sites: bool) -> bool:
    """Whether the vehicle exists for a caller with ``scope``: always for its owner and an admin;
    for an operator or technician only when the vehicle has a session (running or completed) at
    one of their sites; never for anyone else."""
    if scope is None:
        return False
    return not scope.site_scoped or has_sessions_at_sites
