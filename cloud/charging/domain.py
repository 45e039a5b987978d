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
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from cloud.contracts.errors import DomainError
from cloud.contracts.identity import SITE_SCOPED, Forbidden, Principal
from cloud.pricing import SessionUsage, Stay, Tariff, running_cost
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
    power_w: float | None = None
    """The last power the charger reported (W)."""
    sampled_at: datetime | None = None
    low_power_since: datetime | None = None
    energy_finished_at: datetime | None = None
    meter_backwards: int = 0
    """Meter values below the last one, kept out of the energy figure (flagged)."""
    power_class: str | None = None

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
        """Update the running energy (a register that went backwards is kept out and flagged, see
        :func:`note_meter`); returns False when the reading changes nothing."""
        if self.status == COMPLETED or body.energy_register_wh is None:
            return False
        note_meter(self, body.energy_register_wh, None, body.sampled_at, held_at_zero=True)
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


# --- the live session: power, energy finished, a meter that goes backwards -------------------------

LOW_POWER_W = 100.0
"""Under this draw (W) a session counts as drawing nothing (GLOSSARY, "energy finished")."""
LOW_POWER_SECONDS = 300.0
"""... for this long (5 minutes): then the vehicle's energy is finished."""
FINISHED_STATUSES = {"SuspendedEV": "suspended_ev", "Finishing": "finishing"}
"""Connector statuses that say the vehicle stopped drawing (the trigger named in ``charging.energy_finished``).
``SuspendedEVSE`` is the charger (or the site's load manager) holding the car back: never energy finished."""
ABNORMAL_STOPS = frozenset({"EmergencyStop", "PowerLoss", "Reboot", "HardReset", "SoftReset", "Other"})
"""OCPP 1.6 stop reasons (§7.45) that end a session the driver did not end: ``charging.failed`` (abnormal_stop)."""


def finished_trigger(status: str) -> str | None:
    """The energy-finished trigger a connector status is, if any."""
    return FINISHED_STATUSES.get(status)


def note_meter(session: Session, register_wh: int | None, power_w: float | None, at: datetime, *,
               held_at_zero: bool, low_power_seconds: float = LOW_POWER_SECONDS) -> bool:
    """A meter value of a running session: the register, the power and when it was sampled.

    A register below the last one (a replaced meter, a rollover, a charger bug) is kept out of the
    energy figure and counted in ``meter_backwards``. Returns True when this reading makes the
    vehicle's energy finished: under :data:`LOW_POWER_W` for ``low_power_seconds`` while nothing
    holds it at 0 A (a charging profile or the site's load manager: ``held_at_zero``)."""
    if not session.active:
        return False
    if register_wh is not None:
        if session.meter_last_wh is not None and register_wh < session.meter_last_wh:
            session.meter_backwards += 1
        else:
            session.meter_last_wh = register_wh
            if session.meter_start_wh is not None:
                session.energy_wh = max(0, register_wh - session.meter_start_wh)
    if power_w is not None:
        session.power_w = power_w
    session.sampled_at = at
    if power_w is None or session.energy_finished_at is not None:
        return False
    if power_w >= LOW_POWER_W or held_at_zero:
        session.low_power_since = None
        return False
    if session.low_power_since is None:
        session.low_power_since = at
    if (at - session.low_power_since).total_seconds() >= low_power_seconds:
        session.energy_finished_at = session.low_power_since
        return True
    return False


def note_status(session: Session, status: str, at: datetime) -> str | None:
    """The connector of a running session reported ``status``; returns the energy-finished trigger
    when this status finishes the vehicle's energy now (once per session)."""
    trigger = finished_trigger(status)
    if status == "SuspendedEVSE":
        session.low_power_since = None  # held by the charger: the low-power clock starts again after it
    if trigger is None or not session.active or session.energy_finished_at is not None:
        return None
    session.energy_finished_at = at
    return trigger


# --- chargers and their connectors ---------------------------------------------------------------

OFFLINE = "Offline"
UNKNOWN = "Unknown"
STARTABLE = frozenset({"Available", "Preparing"})
"""A remote start is sent only to a connector in one of these states (Preparing: a car is plugged in)."""
DC_ABOVE_W = 43_000
"""A charger of more than 43 kW is DC (AC charging ends at 3 x 63 A); the power class until the site
inventory names it."""


def power_class_of(max_power_w: int | None) -> str | None:
    if max_power_w is None:
        return None
    return "dc" if max_power_w > DC_ABOVE_W else "ac"


@dataclass
class ConnectorState:
    connector_id: int
    status: str = UNKNOWN
    error_code: str | None = None
    info: str | None = None
    status_at: datetime | None = None
    profile_limit: float | None = None
    """The limit (A or W) of the last charging profile the charger accepted for it; 0: held at 0."""


@dataclass
class Station:
    """One charger of a site, as its inventory and its messages describe it; connector 0 is the charger."""

    site_id: str
    charger_id: str
    updated_at: datetime
    online: bool = False
    online_since: datetime | None = None
    max_power_w: int | None = None
    connector_count: int = 0
    connectors: dict[int, ConnectorState] = field(default_factory=dict)

    @property
    def power_class(self) -> str | None:
        return power_class_of(self.max_power_w)

    def connector(self, connector_id: int) -> ConnectorState:
        if connector_id not in self.connectors:
            self.connectors[connector_id] = ConnectorState(connector_id)
        return self.connectors[connector_id]

    def apply_inventory(self, max_power_w: int | None, connectors: int, now: datetime) -> None:
        self.max_power_w = max_power_w
        self.connector_count = connectors
        for n in range(0, connectors + 1):
            self.connector(n)
        self.updated_at = now

    def apply_connection(self, online: bool, at: datetime) -> bool:
        """True when the charger's link changed (online ⇄ offline)."""
        changed = online != self.online
        if changed:
            self.online = online
            self.online_since = at
        self.updated_at = at
        return changed

    def apply_status(self, connector_id: int, status: str, error_code: str | None, info: str | None,
                     at: datetime) -> bool:
        """Record a StatusNotification (a charger that reports one is connected); True when the connector (or
        the charger, connector 0) turned Faulted with it. An older status than the one kept changes nothing."""
        state = self.connector(connector_id)
        self.connector_count = max(self.connector_count, connector_id)
        if state.status_at is not None and at < state.status_at:
            return False
        became_faulted = status == "Faulted" and state.status != "Faulted"
        state.status, state.error_code, state.info, state.status_at = status, error_code, info, at
        if not self.online:
            self.online, self.online_since = True, at
        self.updated_at = at
        return became_faulted

    def apply_profile(self, connector_id: int, limit: float | None) -> None:
        self.connector(connector_id).profile_limit = limit

    def held_at_zero(self, connector_id: int) -> bool:
        """A charging profile (of the connector or of the whole charger) holds it at 0 A, or the charger
        says it holds the car back (SuspendedEVSE)."""
        own = self.connectors.get(connector_id)
        whole = self.connectors.get(0)
        return any(s is not None and s.profile_limit == 0 for s in (own, whole)) or (
            own is not None and own.status == "SuspendedEVSE")

    def live_status(self, connector_id: int) -> str:
        if not self.online:
            return OFFLINE
        state = self.connectors.get(connector_id)
        return state.status if state is not None else UNKNOWN

    def startable_connector(self, connector_id: int | None, busy: Collection[int]) -> int | None:
        """The connector a remote start may go to (None: none is free). ``busy``: connectors with a session."""
        candidates = [connector_id] if connector_id is not None else list(range(1, self.connector_count + 1))
        for n in candidates:
            state = self.connectors.get(n)
            status = state.status if state is not None else UNKNOWN
            if n not in busy and status in STARTABLE | {UNKNOWN}:
                return n
        return None


def profile_limit(payload: dict[str, object]) -> float | None:
    """The limit now of a SetChargingProfile request (its first schedule period), or None."""
    profile = payload.get("csChargingProfiles")
    if not isinstance(profile, dict):
        return None
    schedule = profile.get("chargingSchedule")
    periods = schedule.get("chargingSchedulePeriod") if isinstance(schedule, dict) else None
    if not isinstance(periods, list) or not periods or not isinstance(periods[0], dict):
        return None
    limit = periods[0].get("limit")
    return float(limit) if isinstance(limit, int | float) else None


# --- who may start, stop and command --------------------------------------------------------------


class NoAnswer(DomainError):
    """The site or the charger did not answer within the bound (the command has expired at the edge)."""

    status = 504
    title = "No answer from the charger"


class SiteUnreachable(DomainError):
    status = 503
    title = "Sites unreachable"


def may_start_for(principal: Principal, owner_id: str | None) -> bool:
    """A driver starts and stops the charging of their own vehicles; an admin of any."""
    return principal.is_admin or is_owner(principal, owner_id)


def may_stop(principal: Principal, owner_id: str | None, site_id: str) -> bool:
    """The vehicle's owner, the site's operators and admins stop a session."""
    return may_start_for(principal, owner_id) or principal.manages(site_id)


def may_command_station(principal: Principal, site_id: str) -> bool:
    """Unlock, reset, availability: the site's operators and technicians, and admins."""
    return principal.operates(site_id)


def sees_sessions_of(principal: Principal, site_id: str) -> bool:
    """Who sees the session on each connector of a site's stations."""
    return principal.operates(site_id)


def may_see_stations(principal: Principal, site_id: str) -> bool:
    """Drivers see every site's stations (where to charge); operators and technicians their sites only."""
    return principal.is_admin or principal.is_driver or principal.operates(site_id)


# --- remote commands ------------------------------------------------------------------------------

PENDING = "pending"
TIMEOUT = "timeout"
REMOTE_START_WAIT_S = 20.0
"""How long a remote start (or stop, unlock, reset, availability) waits for the charger's answer (GLOSSARY)."""
COMMAND_TTL_S = 17.0
"""The command expires at the edge this long after it is issued, before the cloud stops waiting, so the
answer of a command the edge still carried out has time to come back, and a command the cloud gave up
on is refused by the edge (``expired``): a car plugged in later starts nothing."""
SESSION_WAIT_S = 3.0
"""After an accepted remote start, how long the answer waits for the StartTransaction (within the bound)."""


@dataclass
class RemoteCommand:
    """A command sent to a charger through its site's edge, and the edge's (the charger's) answer."""

    id: str
    site_id: str
    charger_id: str
    type: str
    issued_at: datetime
    expires_at: datetime
    connector_id: int | None = None
    vehicle_id: str | None = None
    owner_id: str | None = None
    id_tag: str | None = None
    status: str = PENDING
    detail: str | None = None
    response: dict[str, object] | None = None
    answered_at: datetime | None = None

    @property
    def answered(self) -> bool:
        return self.status not in (PENDING, TIMEOUT)

    def answer(self, status: str, detail: str | None, response: dict[str, object] | None, at: datetime) -> bool:
        """The edge's result; True when it is the first answer (a late answer after the cloud stopped waiting
        is kept, but announces nothing: the failure was told already)."""
        first = self.status == PENDING
        if self.answered:
            return False
        self.status, self.detail, self.response, self.answered_at = status, detail, response, at
        return first

    def give_up(self, at: datetime) -> bool:
        """No answer within the bound; True if none had come."""
        if self.status != PENDING:
            return False
        self.status, self.answered_at = TIMEOUT, at
        return True

    @property
    def unanswered_by_charger(self) -> bool:
        """The edge answered, but not the charger: the command expired before the edge had it, or the charger
        did not answer (or was not connected) in time; nothing was carried out."""
        return self.status == "expired" or (self.status == "failed" and self.response is None
                                            and self.answered_at is not None and self.detail is not None
                                            and not self.detail.startswith("not sent"))

    @property
    def charger_status(self) -> str | None:
        """What the charger answered (OCPP ``status``: Accepted, Rejected, Unlocked, Scheduled, ...)."""
        payload = (self.response or {}).get("payload") if isinstance(self.response, dict) else None
        status = payload.get("status") if isinstance(payload, dict) else None
        return str(status) if status is not None else None


# --- the tariff read model ------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteRates:
    site_id: str
    currency: str
    version: int
    changed_at: datetime
    tariff: Tariff


def rates_by_class(tariff: Tariff) -> list[tuple[str, str, list[tuple[int, dict[str, object]]]]]:
    """Per bay type and power class, the tariff elements that may apply there (in the tariff's order, the
    first matching one wins at any moment), each with its index: what a driver pays in that bay."""
    out: list[tuple[str, str, list[tuple[int, dict[str, object]]]]] = []
    for bay_type in ("ev", "regular", "accessible"):
        for power_class in ("ac", "dc"):
            applicable = []
            for index, element in enumerate(tariff.elements):
                r = element.restrictions
                if r.bay_types is not None and bay_type not in r.bay_types:
                    continue
                if r.power_classes is not None and power_class not in r.power_classes:
                    continue
                applicable.append((index, element.model_dump(mode="json")))
            out.append((bay_type, power_class, applicable))
    return out


def cost_so_far(rates: SiteRates, session: Session, now: datetime) -> Decimal | None:
    """The gross amount the running session would cost if it ended now: the pricing engine on a stay
    from the session's start (bay type ``ev``) whose car is still there, with the energy so far. None
    for a session without a trustworthy start."""
    if session.started_at is None or session.clock_suspect or now < session.started_at:
        return None
    usage = SessionUsage(power_class="dc" if session.power_class == "dc" else "ac", started_at=session.started_at,
                         stopped_at=now,
                         energy_wh=session.energy_wh if now > session.started_at else 0,
                         energy_finished_at=session.energy_finished_at
                         if session.energy_finished_at is not None
                         and session.started_at <= session.energy_finished_at <= now else None)
    stay = Stay(bay_type="ev", arrived_at=session.started_at, departed_at=now, sessions=[usage])
    return running_cost(rates.tariff, stay, now)


# --- the driver-debt projection -------------------------------------------------------------------
#
# payments publishes ``payment.failed`` (1.1: ``refuse_driver``, the site's setting when it failed) for an
# invoice left due, and ``payment.completed`` with the same ``invoice_id`` once it is paid (a wallet top-up
# pays the account's due invoices, oldest first). Charging keeps one row per invoice so that a remote start
# is refused while the driver owes the site money and the site says so. A paid invoice stays paid: a
# failure delivered after its completion (redelivery, another queue's order) reopens nothing.


@dataclass(frozen=True)
class Debt:
    invoice_id: str
    account_id: str
    site_id: str | None
    amount: Decimal
    currency: str
    refuse: bool
    failed_at: datetime | None = None
    paid_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.paid_at is None

    @property
    def refuses(self) -> bool:
        """Open, and its site refuses the driver remote starts until it is paid."""
        return self.open and self.refuse


def debt_failed(kept: Debt | None, *, invoice_id: str, account_id: str, site_id: str | None, amount: Decimal,
                currency: str, refuse: bool, failed_at: datetime) -> Debt:
    """The row after a failed payment of the invoice: opened; an open one takes the newest failure's
    setting; a paid one stays paid."""
    if kept is None:
        return Debt(invoice_id=invoice_id, account_id=account_id, site_id=site_id, amount=amount, currency=currency,
                    refuse=refuse, failed_at=failed_at)
    if not kept.open or (kept.failed_at is not None and failed_at < kept.failed_at):
        return kept
    return Debt(invoice_id=kept.invoice_id, account_id=kept.account_id, site_id=kept.site_id, amount=amount,
                currency=currency, refuse=refuse, failed_at=failed_at)


def debt_paid(kept: Debt | None, *, invoice_id: str, account_id: str, site_id: str | None, amount: Decimal,
              currency: str, paid_at: datetime) -> Debt:
    """The row after the invoice was paid: settled (kept, so that a late failure does not reopen it)."""
    if kept is None:
        return Debt(invoice_id=invoice_id, account_id=account_id, site_id=site_id, amount=amount, currency=currency,
                    refuse=False, paid_at=paid_at)
    if not kept.open:
        return kept
    return Debt(invoice_id=kept.invoice_id, account_id=kept.account_id, site_id=kept.site_id, amount=kept.amount,
                currency=kept.currency, refuse=kept.refuse, failed_at=kept.failed_at, paid_at=paid_at)


class DriverInDebt(DomainError):
    """The driver owes the site an invoice whose payment failed, and the site refuses remote starts until it
    is paid (HTTP 402, naming the oldest such invoice)."""

    status = 402
    title = "Payment required"

    def __init__(self, debt: Debt) -> None:
        super().__init__(f"invoice {debt.invoice_id} of {debt.amount} {debt.currency} is unpaid: this site refuses "
                         "remote starts until it is paid (a wallet top-up pays it)", code="unpaid_invoice")
        self.invoice_id = debt.invoice_id
        self.amount = debt.amount
        self.currency = debt.currency
