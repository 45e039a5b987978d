"""Parking rules, free of I/O: how a sensor report changes a bay, how a bay's usage turns into
idle and overstay periods, how a site's inventory is mirrored, and how a site's power-limit
request is sent and settled; and who may see and change a site (:func:`check_may_see_site`,
:func:`check_may_change_power_limit`).

The objects here are the parking domain's own (dataclasses, not table rows): a :class:`Bay`, a
:class:`ChargerStation`, a :class:`Site` with its :class:`PowerLimitRequest`. Rules change them
in place and return what happened (a :class:`UsageChange`, a settled status, a command to send);
the use cases store them and turn those facts into events.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from cloud.contracts.errors import Conflict, DomainError, NotFound
from cloud.contracts.identity import SITE_SCOPED, Forbidden, Principal
from mqtt import (
    BayOccupancy,
    BayUsage,
    Command,
    CommandResult,
    CommandStatus,
    InventoryBay,
    InventoryCharger,
    OutboxDropped,
    SetPowerLimit,
    SiteInventory,
)
from mqtt.link import OFFLINE, ONLINE, LinkState, LinkStatus
from mqtt.topics import validate_site_id

NEVER_REPORTED = datetime(1970, 1, 1, tzinfo=UTC)
"""``changed_at`` of a bay known from the inventory whose sensor has not reported yet: any
real report is newer."""

Occupancy = Literal["occupied", "free", "unknown"]
UsageState = Literal["free", "charging", "idle", "blocked", "unknown"]
"""The glossary's words: ``blocked`` an EV bay occupied with no session since the car came, ``idle``
the car still there after its session ended (``bay.usage`` of edges before MQTT contract 1.1 said
``idle`` and ``overstay`` for these: :attr:`mqtt.BayUsage.glossary_state` translates)."""

OCCUPIED: Final = "occupied"
FREE: Final = "free"
UNKNOWN: Final = "unknown"

CHARGING: Final = "charging"
IDLE: Final = "idle"
BLOCKED: Final = "blocked"
USAGES: tuple[UsageState, ...] = (FREE, CHARGING, IDLE, BLOCKED, UNKNOWN)
BILLABLE_USAGES: tuple[UsageState, ...] = (BLOCKED, IDLE)
"""Usage states a bay can be billed (or its driver notified) for: the car blocks a charger."""


# --- bays and their occupancy ----------------------------------------------------------------


@dataclass
class Bay:
    """One parking bay of a site: what its occupancy sensor last said, what the site's inventory
    says it is, and (for a bay served by a charger) how it is used."""

    site_id: str
    bay_id: str
    state: Occupancy
    changed_at: datetime
    updated_at: datetime
    type: str | None = None
    charger_id: str | None = None
    connector_id: int | None = None
    in_service: bool = True
    usage: UsageState | None = None
    usage_since: datetime | None = None
    usage_transaction_id: int | None = None
    usage_reported_at: datetime | None = None
    """Envelope ``ts`` of the usage report applied last."""
    out_of_service: bool = False
    """An operator took the bay out of service (``PUT /parking/slots/{slot_id}/service``)."""
    service_reason: str | None = None
    service_changed_at: datetime | None = None

    @classmethod
    def unreported(cls, site_id: str, bay_id: str, now: datetime) -> Bay:
        """A bay known (from the inventory or a usage report) before its sensor reported."""
        return cls(site_id=site_id, bay_id=bay_id, state=UNKNOWN, changed_at=NEVER_REPORTED, updated_at=now)

    @classmethod
    def sensed(cls, site_id: str, report: BayOccupancy, now: datetime) -> Bay:
        """A bay first named by its sensor's report."""
        return cls(site_id=site_id, bay_id=report.bay_id, state=report.state, changed_at=report.changed_at,
                   updated_at=now)

    @property
    def ever_reported(self) -> bool:
        return self.changed_at != NEVER_REPORTED

    def take_out_of_service(self, now: datetime) -> None:
        """The inventory no longer lists the bay: kept, with its history, in case it comes back."""
        self.in_service = False
        self.updated_at = now


def apply_occupancy(bay: Bay, report: BayOccupancy, now: datetime) -> bool:
    """Apply a sensor report; returns True when the bay's state changed.

    A report older than the one already applied (a replayed backlog arriving after a newer
    live message) never overwrites the newer state.
    """
    if report.changed_at < bay.changed_at:
        return False
    changed = bay.state != report.state
    bay.state = report.state
    bay.changed_at = report.changed_at
    bay.updated_at = now
    return changed


def apply_inventory_bay(bay: Bay, item: InventoryBay, now: datetime) -> None:
    """The site's file says what the bay is; its occupancy stays what the sensor said."""
    bay.type = item.type
    bay.charger_id = item.charger_id
    bay.connector_id = item.connector_id
    bay.in_service = True
    bay.updated_at = now


@dataclass(frozen=True)
class Availability:
    total: int
    free: int
    occupied: int
    unknown: int

    @classmethod
    def of(cls, bays: Iterable[Bay]) -> Availability:
        states = [bay.state for bay in bays if bay.in_service]
        return cls(total=len(states), free=states.count(FREE), occupied=states.count(OCCUPIED),
                   unknown=states.count(UNKNOWN))


# --- charger stations and the site's inventory -------------------------------------------------


@dataclass
class ChargerStation:
    """A charger of a site, as the site's inventory lists it."""

    site_id: str
    charger_id: str
    connectors: int
    updated_at: datetime
    max_power_w: int | None = None
    in_service: bool = True

    @classmethod
    def listed(cls, site_id: str, item: InventoryCharger, now: datetime) -> ChargerStation:
        station = cls(site_id=site_id, charger_id=item.charger_id, connectors=0, updated_at=now)
        apply_inventory_charger(station, item, now)
        return station

    def take_out_of_service(self, now: datetime) -> None:
        """The inventory no longer lists the charger: kept in case it comes back."""
        self.in_service = False
        self.updated_at = now


def apply_inventory_charger(station: ChargerStation, item: InventoryCharger, now: datetime) -> None:
    station.connectors = item.connectors
    station.max_power_w = item.max_power_w
    station.in_service = True
    station.updated_at = now


@dataclass(frozen=True)
class MirroredInventory:
    """What mirroring an inventory changed: every bay and charger station of the site (new, still
    listed, or gone out of service), and how many of each the inventory lists."""

    bays: list[Bay]
    stations: list[ChargerStation]
    listed_bays: int
    listed_chargers: int


def mirror_inventory(site: Site, bays: Iterable[Bay], stations: Iterable[ChargerStation],
                     inventory: SiteInventory, received_at: datetime, now: datetime) -> MirroredInventory | None:
    """The site's inventory replaces what we knew: new bays and chargers appear, missing ones
    go out of service (kept, with their history, in case they come back). An inventory older
    than the one mirrored (a replayed backlog) changes nothing (None).

    ``received_at`` is the inventory envelope's ``ts``; the site's power settings follow it, and
    so does the limit the site applies unless an accepted command is newer.
    """
    if not is_newer(received_at, site.inventory_at):
        return None
    known = {bay.bay_id: bay for bay in bays}
    mirrored_bays: list[Bay] = []
    for item in inventory.bays:
        bay = known.pop(item.bay_id, None) or Bay.unreported(site.site_id, item.bay_id, now)
        apply_inventory_bay(bay, item, now)
        mirrored_bays.append(bay)
    for gone in known.values():
        gone.take_out_of_service(now)
        mirrored_bays.append(gone)
    known_stations = {station.charger_id: station for station in stations}
    mirrored_stations: list[ChargerStation] = []
    for charger in inventory.chargers:
        station = known_stations.pop(charger.charger_id, None)
        if station is None:
            station = ChargerStation.listed(site.site_id, charger, now)
        else:
            apply_inventory_charger(station, charger, now)
        mirrored_stations.append(station)
    for gone_station in known_stations.values():
        gone_station.take_out_of_service(now)
        mirrored_stations.append(gone_station)
    site.inventory_at = received_at
    site.power_limit_a = inventory.power_limit_a
    site.phases = inventory.phases
    site.voltage = inventory.voltage
    if is_newer(received_at, site.applied_at):
        site.applied = AppliedLimit(limit_a=inventory.power_limit_a, at=received_at, source="inventory")
    return MirroredInventory(bays=mirrored_bays, stations=mirrored_stations, listed_bays=len(inventory.bays),
                             listed_chargers=len(inventory.chargers))


# --- bay usage: idle and overstay periods ------------------------------------------------


@dataclass(frozen=True)
class UsagePeriod:
    """A stretch of one usage state of a bay, from ``since``."""

    state: UsageState
    since: datetime
    transaction_id: int | None


@dataclass(frozen=True)
class EndedPeriod:
    period: UsagePeriod
    ended_at: datetime
    next_state: UsageState

    @property
    def duration_s(self) -> int:
        """Whole seconds, never negative (a report may correct a start time backwards)."""
        return max(0, int((self.ended_at - self.period.since).total_seconds()))


@dataclass(frozen=True)
class UsageChange:
    """What a usage report did to a bay's billable (idle, overstay) periods."""

    ended: EndedPeriod | None = None
    started: UsagePeriod | None = None


def is_stale_usage(bay: Bay, report: BayUsage, reported_at: datetime) -> bool:
    """True for a report older than the one already applied.

    Reports are ordered by the envelope's ``ts`` (when the edge decided the bay's usage), then
    by ``since``. ``since`` alone does not order them: a session that the charger started
    before the sensor saw the car gives a ``charging`` report whose ``since`` precedes the
    ``idle`` report sent just before it, and that newer report must win. A replayed backlog
    arriving after a live message is older on both counts and is ignored.
    """
    if bay.usage_reported_at is None or bay.usage_since is None:
        return False
    return (reported_at, report.since) < (bay.usage_reported_at, bay.usage_since)


def apply_usage(bay: Bay, report: BayUsage, reported_at: datetime, now: datetime) -> UsageChange | None:
    """Apply a ``bay.usage`` report; None when it is stale and changed nothing.

    A billable period is identified by its state and ``since``: the same state with a new
    ``since`` is a new period (the reports between them were lost), so the old one ends where
    the new one starts; a changed ``transaction_id`` alone only corrects the period.
    """
    if is_stale_usage(bay, report, reported_at):
        return None
    before = (UsagePeriod(bay.usage, bay.usage_since, bay.usage_transaction_id)
              if bay.usage is not None and bay.usage_since is not None else None)
    after = UsagePeriod(report.glossary_state, report.since, report.transaction_id)
    bay.usage = report.glossary_state
    bay.usage_since = report.since
    bay.usage_transaction_id = report.transaction_id
    bay.usage_reported_at = reported_at
    if bay.charger_id is None:  # a bay the inventory has not described yet
        bay.charger_id = report.charger_id
        bay.connector_id = report.connector_id
    bay.updated_at = now
    same_period = before is not None and (before.state, before.since) == (after.state, after.since)
    if same_period:
        return UsageChange()
    ended = (EndedPeriod(before, ended_at=after.since, next_state=after.state)
             if before is not None and before.state in BILLABLE_USAGES else None)
    started = after if after.state in BILLABLE_USAGES else None
    return UsageChange(ended=ended, started=started)


# --- site power limit ----------------------------------------------------------------------

PowerStatus = Literal["pending", "accepted", "rejected", "failed", "expired"]
LimitSource = Literal["command", "inventory"]

PENDING: Final = "pending"
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
FAILED: Final = "failed"
EXPIRED: Final = "expired"
POWER_STATUSES: tuple[PowerStatus, ...] = (PENDING, ACCEPTED, REJECTED, FAILED, EXPIRED)

COMMAND_TTL = timedelta(minutes=10)
"""How long a site.set_power_limit command may wait (at the broker, for an offline site) before
the edge refuses it: a limit is a safety setting, applying one hours late surprises people."""
MAX_RESEND_INTERVAL = timedelta(hours=1)
REQUEST_MAX_AGE = timedelta(hours=24)
"""A request no site answered for this long is given up (``expired``): ask again if still wanted."""

MAX_LIMIT_A = 10_000.0
MAX_LIMIT_W = 10_000_000.0
ONE_LIMIT = "give exactly one of limit_a (amps per phase) or limit_w (watts)"
MAX_DETAIL = 500
"""The longest explanation of a site's answer that is kept."""


class InvalidPowerLimit(DomainError):
    title = "Invalid power limit"


def power_limit_errors(limit_a: float | None, limit_w: float | None) -> list[tuple[str, str]]:
    """(field, message) for each field of a power-limit request that breaks the rules."""
    errors: list[tuple[str, str]] = []
    if limit_a is None and limit_w is None:
        return [("limit_a", ONE_LIMIT), ("limit_w", ONE_LIMIT)]
    if limit_a is not None and limit_w is not None:
        return [("limit_a", ONE_LIMIT), ("limit_w", ONE_LIMIT)]
    for name, value, maximum in (("limit_a", limit_a, MAX_LIMIT_A), ("limit_w", limit_w, MAX_LIMIT_W)):
        if value is None:
            continue
        if not math.isfinite(value) or value <= 0:
            errors.append((name, "must be greater than 0"))
        elif value > maximum:
            errors.append((name, f"must be at most {maximum:g}"))
    return errors


def check_power_limit(limit_a: float | None, limit_w: float | None) -> None:
    """Raise :class:`InvalidPowerLimit` naming every field of the request that breaks the rules."""
    errors = power_limit_errors(limit_a, limit_w)
    if errors:
        raise InvalidPowerLimit("; ".join(f"{name}: {message}" for name, message in errors),
                                code="invalid_power_limit")


def resend_interval(attempts: int) -> timedelta:
    """When to send a fresh command after the ``attempts``-th went unanswered: at its expiry
    first, then backing off (20 min, 40 min, then hourly), so an offline site's broker queue
    does not fill with commands it will refuse as expired anyway."""
    factor = 2 ** max(0, min(attempts - 1, 10))
    return min(COMMAND_TTL * factor, MAX_RESEND_INTERVAL)


def request_given_up(requested_at: datetime, now: datetime) -> bool:
    return now - requested_at >= REQUEST_MAX_AGE


def status_after_result(status: CommandStatus) -> PowerStatus:
    """The request's status after the edge answered its current command. ``expired`` stays
    pending: the request is still wanted and a fresh command is sent."""
    settled: dict[CommandStatus, PowerStatus] = {CommandStatus.ACCEPTED: ACCEPTED,
                                                 CommandStatus.REJECTED: REJECTED,
                                                 CommandStatus.FAILED: FAILED}
    return settled.get(status, PENDING)


def next_send_after_expired_answer(expires_at: datetime, scheduled: datetime, now: datetime) -> datetime:
    """The edge answered ``expired``. If the command had expired by our clock too (it waited at
    the broker while the site was away), send a fresh one now; if not, the two clocks disagree
    and resending at once would loop, so keep the back-off schedule."""
    return now if now >= expires_at else max(scheduled, now)


def applied_limit_from_result(data: dict[str, Any], requested_a: float | None) -> float | None:
    """The amps an accepted command applied: ``data.limit_a``, else the amps that were asked for."""
    value = data.get("limit_a")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return requested_a


def is_newer(at: datetime, than: datetime | None) -> bool:
    """A fact stamped ``at`` replaces one stamped ``than`` (ties go to the later arrival)."""
    return than is None or at >= than


@dataclass
class PowerCommand:
    """The site.set_power_limit command that carries a request to the site now."""

    command_id: str
    issued_at: datetime
    expires_at: datetime
    sent_at: datetime | None = None
    """None: this command has not gone out yet."""

    @classmethod
    def of(cls, command: Command) -> PowerCommand:
        return cls(command_id=str(command.id), issued_at=command.issued_at, expires_at=command.expires_at)


@dataclass
class PowerLimitRequest:
    """The power limit an operator asked for, and where its delivery to the site stands."""

    limit_a: float | None
    limit_w: float | None
    requested_at: datetime
    status: PowerStatus = PENDING
    detail: str | None = None
    command: PowerCommand | None = None
    attempts: int = 0
    """Commands sent for this request (a fresh one after each expiry)."""
    next_send_at: datetime | None = None
    settled_at: datetime | None = None

    def body(self) -> SetPowerLimit:
        return SetPowerLimit(limit_a=self.limit_a, limit_w=self.limit_w)

    def give_up(self, now: datetime) -> None:
        """No site answered for :data:`REQUEST_MAX_AGE`: the request is ``expired``."""
        hours = int(REQUEST_MAX_AGE.total_seconds() // 3600)
        self.status = EXPIRED
        self.detail = f"the site did not answer within {hours} h; request the limit again if it is still wanted"
        self.settled_at = now
        self.next_send_at = None


@dataclass
class AppliedLimit:
    """The limit the site applies: from the newest of an accepted command's result and its inventory."""

    limit_a: float | None
    at: datetime
    source: LimitSource


@dataclass
class UplinkDrop:
    """A site's report that its offline outbox dropped or refused messages."""

    at: datetime
    policy: str
    dropped: int | None
    by_type: dict[str, int]
    first_seq: int | None
    last_seq: int | None
    backlog: int | None
    backlog_bytes: int | None


LinkReason = Literal["connected", "hello", "stopped", "lost"]


@dataclass
class Link:
    """The state of a site's MQTT link as the cloud last learned it (``since``: cloud clock)."""

    state: LinkState
    since: datetime
    reason: LinkReason
    connection_id: str | None = None
    """The edge connection the state belongs to (mqtt.link); None when known only from a hello."""
    connected_at: datetime | None = None


@dataclass(frozen=True)
class LinkChange:
    """The link went online or offline; ``previous_since``: when the state before it began."""

    state: LinkState
    since: datetime
    reason: LinkReason
    previous_since: datetime | None
    connected_at: datetime | None


class SiteExists(Conflict):
    pass


class InvalidSiteId(DomainError):
    pass


def check_new_site_id(site_id: str, reserved_prefix: str = "evpark-") -> str:
    """A site id is its broker username and one topic level (:func:`mqtt.topics.validate_site_id`);
    ids starting with ``evpark-`` are the cloud services' broker users."""
    try:
        validate_site_id(site_id)
    except ValueError as exc:
        raise InvalidSiteId(str(exc), code="invalid_site_id") from None
    if site_id.startswith(reserved_prefix):
        raise InvalidSiteId(f"site id {site_id!r} must not start with {reserved_prefix!r}: those are the cloud "
                            "services' broker users", code="invalid_site_id")
    return site_id


@dataclass
class Site:
    """A site as the parking service knows it: its inventory's power settings, the uplink drops
    its edge reported, the power limit an operator asked for, and the state of its link."""

    site_id: str
    last_seen_at: datetime | None = None
    """When the cloud last received a message of the site."""
    inventory_at: datetime | None = None
    """Envelope ``ts`` of the inventory mirrored last."""
    power_limit_a: float | None = None
    phases: int | None = None
    voltage: float | None = None
    dropped_total: int = 0
    last_drop: UplinkDrop | None = None
    power_request: PowerLimitRequest | None = None
    applied: AppliedLimit | None = None
    registered_at: datetime | None = None
    """When ``evpark sites add`` registered it; None for a site known only from its messages."""
    link: Link | None = None

    def seen(self, now: datetime) -> None:
        self.last_seen_at = now

    # the list of sites and their links

    def register(self, now: datetime) -> None:
        """Register the site (a site known from its messages may be registered once, too)."""
        if self.registered_at is not None:
            raise SiteExists(f"site {self.site_id!r} exists already (registered {self.registered_at.isoformat()})",
                             code="site_exists")
        self.registered_at = now

    def report_link(self, status: LinkStatus, now: datetime) -> LinkChange | None:
        """The edge's link status (its own ``online`` or ``stopped``, or its will: ``lost``).

        Statuses are ordered by connection: news of a connection older than the current one
        changes nothing, nor does an ``online`` of a connection already reported offline (only a
        retained copy can arrive so late). Returns the change when the state flips."""
        link = self.link
        same = link is not None and link.connection_id == status.connection_id
        if link is not None and not same and link.connected_at is not None \
                and status.connected_at <= link.connected_at:
            return None
        if same and link is not None and link.state == OFFLINE and status.state == ONLINE:
            return None
        reason: LinkReason = status.reason
        return self._set_link(Link(state=status.state, since=now, reason=reason, connection_id=status.connection_id,
                                   connected_at=status.connected_at))

    def said_hello(self, now: datetime) -> LinkChange | None:
        """A hello proves the link is up; it decides the state only for edges that send no link
        status (older versions): for the others the status and the will are the truth."""
        if self.link is not None and self.link.connection_id is not None:
            return None
        return self._set_link(Link(state=ONLINE, since=now, reason="hello"))

    def _set_link(self, new: Link) -> LinkChange | None:
        old = self.link
        if old is not None and old.state == new.state:
            new.since = old.since  # the same state goes on (e.g. a reconnect whose will never came)
            self.link = new
            return None
        self.link = new
        return LinkChange(state=new.state, since=new.since, reason=new.reason,
                          previous_since=None if old is None else old.since, connected_at=new.connected_at)

    def record_drop(self, report: OutboxDropped) -> None:
        """Every report adds to the total; only the newest is kept as the latest (a late older
        report does not replace it)."""
        self.dropped_total += report.dropped
        if self.last_drop is None or is_newer(report.at, self.last_drop.at):
            self.last_drop = UplinkDrop(at=report.at, policy=report.policy, dropped=report.dropped,
                                        by_type=dict(report.by_type), first_seq=report.first_seq,
                                        last_seq=report.last_seq, backlog=report.backlog,
                                        backlog_bytes=report.backlog_bytes)

    # the power limit

    def request_power_limit(self, limit_a: float | None, limit_w: float | None, now: datetime) -> Command | None:
        """Store the limit as a pending request with a fresh command (returned) for the sync loop
        to send. The same limit asked again while it is pending is the same request: None, and
        nothing changes."""
        request = self.power_request
        if request is not None and request.status == PENDING and (request.limit_a, request.limit_w) == (
                limit_a, limit_w):
            return None
        try:
            command = Command.new(self.site_id, SetPowerLimit(limit_a=limit_a, limit_w=limit_w), ttl=COMMAND_TTL,
                                  now=now)
        except ValueError as exc:
            raise InvalidPowerLimit(str(exc), code="invalid_power_limit") from exc
        self.power_request = PowerLimitRequest(limit_a=limit_a, limit_w=limit_w, requested_at=now,
                                               command=PowerCommand.of(command), next_send_at=now)
        return command

    def power_command_due(self, now: datetime) -> Command | None:
        """The command to send now for a pending request that is due, else None.

        The stored command when it has not gone out and is still valid, otherwise a fresh one,
        stored before it is sent so that even an instant answer finds it. A request nobody
        answered for :data:`REQUEST_MAX_AGE` is given up instead.
        """
        request = self.power_request
        if request is None or request.status != PENDING or request.next_send_at is None or request.next_send_at > now:
            return None
        if request_given_up(request.requested_at, now):
            request.give_up(now)
            return None
        stored = self.stored_power_command()
        if stored is not None and request.command is not None and request.command.sent_at is None \
                and not stored.expired(now):
            return stored
        command = Command.new(self.site_id, request.body(), ttl=COMMAND_TTL, now=now)
        request.command = PowerCommand.of(command)
        return command

    def stored_power_command(self) -> Command | None:
        """The current request's command as it went (or goes) to the site."""
        request = self.power_request
        if request is None or request.command is None:
            return None
        stored = request.command
        return Command(id=uuid.UUID(stored.command_id), site_id=self.site_id, type=SetPowerLimit.TYPE,
                       issued_at=stored.issued_at, expires_at=stored.expires_at,
                       body=request.body().model_dump(mode="json"))

    def power_command_sent(self, command_id: str, now: datetime) -> bool:
        """The command went out: count it and schedule the next one (see :func:`resend_interval`).
        False when a newer request replaced it meanwhile."""
        request = self.power_request
        if request is None or request.command is None or request.command.command_id != command_id:
            return False
        request.command.sent_at = now
        request.attempts += 1
        if request.status == PENDING:
            request.next_send_at = now + resend_interval(request.attempts)
        return True

    def settle_power_limit(self, result: CommandResult, reported_at: datetime, now: datetime) -> PowerStatus | None:
        """The edge answered a site.set_power_limit command (``reported_at``: the envelope's ts).

        An accepted command applied its limit, even one a newer request superseded. The answer to
        the current command of a pending request settles it; returns the request's status then
        (``pending`` after an ``expired`` answer: a fresh command is due, see
        :func:`next_send_after_expired_answer`), and None for any other answer (a late one to an
        older command does not reopen the newer request).
        """
        request = self.power_request
        current = (request is not None and request.command is not None
                   and request.command.command_id == str(result.command_id))
        if result.status == CommandStatus.ACCEPTED and is_newer(reported_at, self.applied_at):
            requested_a = request.limit_a if current and request is not None else None
            applied = applied_limit_from_result(result.data, requested_a)
            if applied is not None:
                self.applied = AppliedLimit(limit_a=applied, at=reported_at, source="command")
        if request is None or request.command is None or not current or request.status != PENDING:
            return None
        status = status_after_result(result.status)
        request.detail = result.detail[:MAX_DETAIL] if result.detail else None
        if status == PENDING:  # the command expired before the edge could apply it
            request.next_send_at = next_send_after_expired_answer(request.command.expires_at,
                                                                  request.next_send_at or now, now)
            return PENDING
        request.status = status
        request.settled_at = now
        request.next_send_at = None
        return status

    def reconnected(self, now: datetime) -> bool:
        """A site that says hello may have lost the commands queued for it: a pending request is
        due again now (True)."""
        request = self.power_request
        if request is None or request.status != PENDING:
            return False
        request.next_send_at = now
        return True

    @property
    def applied_at(self) -> datetime | None:
        return None if self.applied is None else self.applied.at


# --- who may see and change a site ---------------------------------------------------------------
#
# Sites are the resources. A site's availability is for everybody signed in (drivers choose where
# to park); its bays, chargers, site view and power limit are for an admin and the site's own
# operators and technicians; only an admin or the site's operators change its power limit. A
# site-scoped caller asking about another site is answered exactly as if that site did not exist.

SITE_DETAILS_FORBIDDEN = ("a site's bays, chargers and power settings are for its operators and technicians "
                          "and for admins; GET /parking/sites/{site_id}/availability is open to every account")
POWER_LIMIT_FORBIDDEN = "only an admin or an operator of the site may change its power limit"


def unknown_site(site_id: str) -> NotFound:
    """The answer for a site nobody knows, or one that is not the caller's (the same, on purpose)."""
    return NotFound(f"no site {site_id!r} is known", code="unknown_site")


def no_bays(site_id: str) -> NotFound:
    return NotFound(f"no bays are known for site {site_id!r}", code="unknown_site")


def no_chargers(site_id: str) -> NotFound:
    return NotFound(f"no charger stations are known for site {site_id!r}", code="unknown_site")


def check_may_see_availability(user: Principal) -> None:
    """Every signed-in caller sees how many bays of a site are free: nothing to refuse."""


def check_may_see_site(user: Principal, site_id: str, *, hidden: NotFound) -> None:
    """An admin, or an operator or technician of ``site_id``, sees the site's details. An operator
    or technician of other sites gets ``hidden`` (the answer for an unknown site, so nothing tells
    that the site exists); anybody else (a driver) is :class:`Forbidden`."""
    if user.operates(site_id):
        return
    if user.roles & set(SITE_SCOPED):
        raise hidden
    raise Forbidden(SITE_DETAILS_FORBIDDEN)


def check_may_change_power_limit(user: Principal, site_id: str) -> None:
    """An admin, or an operator of ``site_id``, changes its power limit. A technician of the site
    sees it but may not change it (:class:`Forbidden`); an operator or technician of other sites
    is answered as for an unknown site; a driver is :class:`Forbidden`."""
    if user.manages(site_id):
        return
    if user.operates(site_id):
        raise Forbidden(POWER_LIMIT_FORBIDDEN + "; a technician sees it but does not change it")
    if user.roles & set(SITE_SCOPED):
        raise unknown_site(site_id)
    raise Forbidden(POWER_LIMIT_FORBIDDEN)
