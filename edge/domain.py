"""Pure rules of the site: charger clocks, meter readings, billable energy, idTag status.

No I/O here; :mod:`edge.site` applies these rules to the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from mqtt.payloads import METER_MAX_WH, IdTagStatus

CLOCK_SET_AFTER = datetime(2000, 1, 1, tzinfo=UTC)
"""A charger timestamp before this is from a clock that was never set (often 1970)."""

FUTURE_TOLERANCE = timedelta(hours=1)
"""A charger timestamp further ahead of the edge than this is from a wrong clock too."""

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER_IMPORT = "Power.Active.Import"
CURRENT_IMPORT = "Current.Import"


@dataclass(frozen=True, slots=True)
class ChargerTime:
    """A time reported by a charger, and the time the edge uses for it.

    ``at`` is the reported time when it is believable, else the time the edge received it
    (``suspect`` is then True). ``reported`` keeps the charger's string for the record.
    """

    at: datetime
    reported: str | None
    suspect: bool


def parse_timestamp(raw: str) -> datetime | None:
    """An OCPP dateTime as an aware UTC datetime; None when it cannot be parsed.

    Chargers omit the offset now and then; OCPP 1.6 says all times are UTC, so a
    naive time is taken as UTC.
    """
    try:
        value = datetime.fromisoformat(raw.strip())
    except (ValueError, AttributeError):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def charger_time(raw: str | None, received_at: datetime) -> ChargerTime:
    """The time to use for a charger timestamp (OCPP-NOTES "Boot, heartbeat, clock").

    A missing optional timestamp means "now" and is not suspect. An unparsable one, one
    before 2000 (clock not set) or one far in the future is replaced by ``received_at`` and
    flagged, so it can never corrupt a duration or a bill.
    """
    if raw is None:
        return ChargerTime(at=received_at, reported=None, suspect=False)
    parsed = parse_timestamp(raw)
    if parsed is None or parsed < CLOCK_SET_AFTER or parsed > received_at + FUTURE_TOLERANCE:
        return ChargerTime(at=received_at, reported=raw, suspect=True)
    return ChargerTime(at=parsed, reported=raw, suspect=False)


def stop_time(stopped: ChargerTime, started_at: datetime | None) -> ChargerTime:
    """A stop never precedes its start: a stop time before the start is clamped and flagged."""
    if started_at is not None and stopped.at < started_at:
        return ChargerTime(at=started_at, reported=stopped.reported, suspect=True)
    return stopped


def billable_energy_wh(meter_start_wh: int | None, meter_stop_wh: int) -> int:
    """Energy of a session in Wh, never negative (a replaced or rolled-over meter reads lower)."""
    if meter_start_wh is None:
        return 0
    return max(0, meter_stop_wh - meter_start_wh)


def meter_wh(value: int) -> int:
    """A meter register from a charger as a contract value (Wh >= 0; see :func:`meter_in_range`)."""
    return max(0, value)


def meter_in_range(value: int) -> bool:
    """Whether a meterStart/meterStop fits the contract: at most :data:`METER_MAX_WH` (a negative one is
    taken as 0 by :func:`meter_wh`)."""
    return value <= METER_MAX_WH


POWER_MAX_W = Decimal(10) ** 9
"""A power sample beyond ±1 GW is no reading of a charger: kept out and flagged."""
CURRENT_MAX_A = Decimal(10) ** 5
"""A current sample beyond 100 kA likewise."""


# --- meter values -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What the edge relays of one OCPP MeterValue element."""

    energy_register_wh: int | None = None
    power_w: float | None = None
    context: str | None = None
    current_a: float | None = None
    """Current.Import: the highest phase (or the value without a phase); load management reads it."""
    out_of_range: tuple[str, ...] = ()
    """The values (as sent) that were numbers but beyond what a register holds: kept out of the figures."""

    @property
    def empty(self) -> bool:
        return self.energy_register_wh is None and self.power_w is None


_ENERGY_FACTORS = {"Wh": Decimal(1), "kWh": Decimal(1000)}
_POWER_FACTORS = {"W": Decimal(1), "kW": Decimal(1000)}
_PHASES = {"L1", "L2", "L3"}


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _preference(sample: Mapping[str, Any]) -> tuple[bool, bool]:
    # OCPP 1.6 SampledValue defaults: location Outlet, no phase. Prefer whole-charger outlet values.
    return (sample.get("phase") is None, sample.get("location", "Outlet") == "Outlet")


def read_sampled_values(sampled_values: Iterable[Mapping[str, Any]]) -> Reading:
    """Energy register (Wh) and import power (W) of one MeterValue, with OCPP 1.6 defaults.

    Defaults per the OCPP 1.6 SampledValue type: measurand Energy.Active.Import.Register, unit
    Wh, context Sample.Periodic, location Outlet, format Raw. Values are decimal strings;
    chargers also send kWh (and kW). SignedData, unknown units and unparsable values are
    skipped, never fatal: MeterValues must always be answered. A number beyond what a register
    holds (energy above :data:`METER_MAX_WH`, power beyond ±1 GW, current above 100 kA) is kept
    out of the reading and listed in ``out_of_range``.
    """
    energy: list[tuple[tuple[bool, bool], Decimal]] = []
    power_total: list[tuple[tuple[bool, bool], Decimal]] = []
    power_phases: list[Decimal] = []
    currents: list[Decimal] = []
    context: str | None = None
    out_of_range: list[str] = []
    for sample in sampled_values:
        if not isinstance(sample, Mapping) or sample.get("format", "Raw") != "Raw":
            continue
        number = _decimal(sample.get("value"))
        if number is None:
            continue
        measurand = sample.get("measurand", ENERGY_REGISTER)
        if measurand == ENERGY_REGISTER:
            factor = _ENERGY_FACTORS.get(sample.get("unit", "Wh"))
            if factor is not None and number >= 0:
                # "99999999999999999999", "1e30": no meter reads that (compared before multiplying: no overflow)
                if number > METER_MAX_WH or number * factor > METER_MAX_WH:
                    out_of_range.append(str(sample.get("value"))[:64])
                    continue
                energy.append((_preference(sample), number * factor))
                context = context or sample.get("context", "Sample.Periodic")
        elif measurand == POWER_IMPORT:
            factor = _POWER_FACTORS.get(sample.get("unit", "W"))
            if factor is None:
                continue
            if number.copy_abs() > POWER_MAX_W or (number * factor).copy_abs() > POWER_MAX_W:
                out_of_range.append(str(sample.get("value"))[:64])
                continue
            if sample.get("phase") is None:
                power_total.append((_preference(sample), number * factor))
            elif sample.get("phase") in _PHASES:
                power_phases.append(number * factor)
        elif measurand == CURRENT_IMPORT and sample.get("unit", "A") == "A" and number >= 0:
            if number > CURRENT_MAX_A:
                out_of_range.append(str(sample.get("value"))[:64])
                continue
            # per phase (L1, L2, L3; L1-N …) or without one: the highest is what the plan must respect
            currents.append(number)
    energy_wh = None
    if energy:
        best = max(energy, key=lambda item: item[0])[1]
        energy_wh = int(best.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    power_w = None
    if power_total:
        power_w = float(max(power_total, key=lambda item: item[0])[1])
    elif power_phases:
        power_w = float(sum(power_phases, Decimal(0)))
    if power_w is not None and not math.isfinite(power_w):
        power_w = None
    current_a = float(max(currents)) if currents else None
    if current_a is not None and not math.isfinite(current_a):
        current_a = None
    return Reading(energy_register_wh=energy_wh, power_w=power_w, context=context, current_a=current_a,
                   out_of_range=tuple(out_of_range))


def transaction_begin_wh(transaction_data: Iterable[Mapping[str, Any]] | None) -> int | None:
    """The meter at Transaction.Begin from StopTransaction's transactionData, if sent.

    Used to reconcile a stop of a transaction the edge never saw start.
    """
    for meter_value in transaction_data or ():
        if not isinstance(meter_value, Mapping):
            continue
        samples = meter_value.get("sampled_value") or []
        begin = [s for s in samples if isinstance(s, Mapping) and s.get("context") == "Transaction.Begin"]
        reading = read_sampled_values(begin)
        if reading.energy_register_wh is not None:
            return reading.energy_register_wh
    return None


# --- authorization ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthEntry:
    """One idTag of the local authorization list."""

    id_tag: str
    status: IdTagStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None
    vehicle_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuthDecision:
    status: IdTagStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is IdTagStatus.ACCEPTED


def _own_status(entry: AuthEntry, now: datetime) -> IdTagStatus:
    if entry.status is IdTagStatus.ACCEPTED and entry.expiry_date is not None and entry.expiry_date <= now:
        return IdTagStatus.EXPIRED
    return entry.status


def authorize(entry: AuthEntry | None, now: datetime, *, parent: AuthEntry | None = None,
              in_other_transaction: bool = False, accept_unknown: bool = False) -> AuthDecision:
    """The idTag status from the local list (OCPP 1.6 IdTagInfo).

    * unknown → Invalid, or Accepted when ``accept_unknown`` (the site's offline policy);
    * Accepted past its expiry date → Expired;
    * a group (``parentIdTag``) that is blocked or expired blocks or expires its members;
    * an Accepted idTag already charging elsewhere → ConcurrentTx (1.6 allows one transaction per idTag).
    """
    if entry is None:
        return AuthDecision(IdTagStatus.ACCEPTED if accept_unknown else IdTagStatus.INVALID)
    status = _own_status(entry, now)
    if status is IdTagStatus.ACCEPTED and parent is not None:
        group = _own_status(parent, now)
        if group in (IdTagStatus.BLOCKED, IdTagStatus.EXPIRED, IdTagStatus.INVALID):
            status = group
    if status is IdTagStatus.ACCEPTED and in_other_transaction:
        status = IdTagStatus.CONCURRENT_TX
    return AuthDecision(status, expiry_date=entry.expiry_date, parent_id_tag=entry.parent_id_tag)
