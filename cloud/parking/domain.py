"""Parking rules, free of I/O: how a sensor report changes a bay, how a bay's usage turns into
idle and overstay periods, and how a site's power-limit request is sent and settled."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud.parking.models import Bay
from mqtt import BayOccupancy, BayUsage, CommandStatus, InventoryBay

NEVER_REPORTED = datetime(1970, 1, 1, tzinfo=UTC)
"""``changed_at`` of a bay known from the inventory whose sensor has not reported yet: any
real report is newer."""

OCCUPIED = "occupied"
FREE = "free"
UNKNOWN = "unknown"

CHARGING = "charging"
IDLE = "idle"
OVERSTAY = "overstay"
USAGES = (FREE, CHARGING, IDLE, OVERSTAY, UNKNOWN)
BILLABLE_USAGES = (IDLE, OVERSTAY)
"""Usage states a bay can be billed (or its driver notified) for: the car blocks a charger."""


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
    def of(cls, bays: list[Bay]) -> Availability:
        states = [bay.state for bay in bays if bay.in_service]
        return cls(total=len(states), free=states.count(FREE), occupied=states.count(OCCUPIED),
                   unknown=states.count(UNKNOWN))


# --- bay usage: idle and overstay periods ------------------------------------------------


@dataclass(frozen=True)
class UsagePeriod:
    """A stretch of one usage state of a bay, from ``since``."""

    state: str
    since: datetime
    transaction_id: int | None


@dataclass(frozen=True)
class EndedPeriod:
    period: UsagePeriod
    ended_at: datetime
    next_state: str

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
    after = UsagePeriod(report.state, report.since, report.transaction_id)
    bay.usage = report.state
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

PENDING = "pending"
ACCEPTED = "accepted"
REJECTED = "rejected"
FAILED = "failed"
EXPIRED = "expired"
POWER_STATUSES = (PENDING, ACCEPTED, REJECTED, FAILED, EXPIRED)

COMMAND_TTL = timedelta(minutes=10)
"""How long a site.set_power_limit command may wait (at the broker, for an offline site) before
the edge refuses it: a limit is a safety setting, applying one hours late surprises people."""
MAX_RESEND_INTERVAL = timedelta(hours=1)
REQUEST_MAX_AGE = timedelta(hours=24)
"""A request no site answered for this long is given up (``expired``): ask again if still wanted."""

MAX_LIMIT_A = 10_000.0
MAX_LIMIT_W = 10_000_000.0
ONE_LIMIT = "give exactly one of limit_a (amps per phase) or limit_w (watts)"


def power_limit_errors(limit_a: float | None, limit_w: float | None) -> list[tuple[str, str]]:
    """(field, message) for each field of a power-limit request that breaks the rules."""
    errors: list[tuple[str, str]] = []
    if limit_a is None and limit_w is None:
        return [("limit_a", ONE_LIMIT), ("limit_w", ONE_LIMIT)]
    if limit_a is not None and limit_w is not None:
        return [("limit_a", ONE_LIMIT), ("limit_w", ONE_LIMIT)]
    for field, value, maximum in (("limit_a", limit_a, MAX_LIMIT_A), ("limit_w", limit_w, MAX_LIMIT_W)):
        if value is None:
            continue
        if not math.isfinite(value) or value <= 0:
            errors.append((field, "must be greater than 0"))
        elif value > maximum:
            errors.append((field, f"must be at most {maximum:g}"))
    return errors


def resend_interval(attempts: int) -> timedelta:
    """When to send a fresh command after the ``attempts``-th went unanswered: at its expiry
    first, then backing off (20 min, 40 min, then hourly), so an offline site's broker queue
    does not fill with commands it will refuse as expired anyway."""
    factor = 2 ** max(0, min(attempts - 1, 10))
    return min(COMMAND_TTL * factor, MAX_RESEND_INTERVAL)


def request_given_up(requested_at: datetime, now: datetime) -> bool:
    return now - requested_at >= REQUEST_MAX_AGE


def status_after_result(status: CommandStatus) -> str:
    """The request's status after the edge answered its current command. ``expired`` stays
    pending: the request is still wanted and a fresh command is sent."""
    return {CommandStatus.ACCEPTED: ACCEPTED, CommandStatus.REJECTED: REJECTED,
            CommandStatus.FAILED: FAILED}.get(status, PENDING)


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
