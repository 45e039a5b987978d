"""The one pricing engine: a tariff and a stay in, invoice lines out (pure: no I/O, no clock).

The estimate (``estimate``), the cost shown while charging (``running_cost``) and the invoice
(``price``) all come from ``_price_prepared`` below, so they cannot disagree (issue 16).

Rules (sources: OCPI 2.2.1 "Tariffs" module, §11.4, for the components, restrictions, step sizes
and "first matching element wins"; GLOSSARY.md for idle, energy finished and the 10-minute
grace; issue 16 for rounding, tax, minimum/maximum and the idle cap):

* **Slices.** The stay, from arrival to its end (departure; with the sensor unknown, the last
  session's end), is cut at every moment where something could change: session starts and stops,
  energy finished, meter readings, idle starts plus each idle grace, arrival plus each
  min/max duration, local times of day named by the tariff on every local date (both readings of
  an ambiguous wall time), local midnights and daylight-saving changes. In each slice every
  restriction holds or fails throughout, evaluated at the slice's start.
* **Which element.** For each dimension, the first element (in tariff order) that has a component
  of that type and whose restrictions match at that moment prices it; no match: nothing is billed
  for that slice (OCPI).
* **Restrictions.** ``bay_types``: the stay's bay. ``power_classes``: for energy and charging time
  the session's; for parking, idle and the flat fee the class of the latest session started so
  far; before any session only elements without a power-class restriction match. Time of day:
  local wall time in ``[start_time, end_time)``, across midnight when end < start. Weekday: the
  local day. ``min_kwh``/``max_kwh``: the energy of the stay's sessions *known* at that moment, in
  ``[min, max)`` (OCPI: from the amount inclusive, until the amount exclusive); energy is known
  from each meter reading on, and in full at the session's end. ``min/max_duration_minutes``: time
  since arrival, in ``[min, max)``. All of these depend only on what is known at that moment, which
  is what makes the running cost a prefix of the invoice (see below).
* **Dimensions.**
  - energy, per kWh: the Wh each session delivers in the slice, linear between the meter readings
    (``(started_at, 0)``, the readings, ``(stopped_at, energy_wh)``; no readings: evenly);
  - charging time, per minute: while a session runs and its energy is not finished;
  - parking time, per hour: from arrival to the stay's end;
  - flat, per stay: once, at the first moment an element with a flat component matches;
  - idle, per minute (GLOSSARY "idle"): from a session's energy finished (else its end) until
    departure, except while a session is charging; with the sensor unknown (``departed_at`` None)
    it ends at that session's end; a car unplugged but left in the bay stays idle until it leaves.
    The first ``grace_minutes`` (default 10) of each idle period are free: a moment of idle is
    billed when at least the grace of the component pricing it has passed since the period began.
    The idle lines together are capped at ``idle_fee_cap`` (in time order).
* **Lines and steps.** A line is a run of adjacent slices priced by the same element (per
  session for energy and charging time), with its period. Its quantity is rounded UP to whole
  steps (``step_size``: Wh for energy, seconds for times) before multiplying; a line of zero
  quantity is left out. Quantities are exact (fractions of a Wh, of a second) until then; the
  quantity shown is rounded to 6 decimals, the amount uses the exact one.
* **Money.** Each line's amount is rounded once, half-up (``ROUND_HALF_UP``: 0.005 -> 0.01), to
  the currency's minor unit (``currencies.MINOR_UNITS``); the subtotal is the sum of rounded
  lines; then a ``minimum`` line raises it to ``min_price`` or a ``maximum`` line lowers it to
  ``max_price``; one ``tax`` line is ``round(subtotal * tax_rate)`` half-up; total = subtotal +
  tax. A stay with zero energy still pays its flat fee, parking and idle.
* **Daylight saving.** Durations are real elapsed time (UTC); local time only decides which
  element applies: a night from 00:00 to 06:00 local is 5 hours on the last Sunday of March and
  7 hours on the last Sunday of October in Europe/Berlin.
* **Running cost.** ``running_cost(tariff, stay, at)`` prices the stay truncated at ``at``: meter
  readings up to ``at`` (a session still running keeps its last known reading), sessions and
  energy finished up to ``at``, departure at ``at`` if later. Every slice's element depends only
  on what is known at its start, so the truncated stay has the same slices and lines as the whole
  one up to ``at``, only the last ones shorter: each line's quantity, hence its rounded amount,
  only grows, lines are only added, the idle cap and ``max_price`` clamp a growing sum, and
  ``min_price`` applies from the start. So it never decreases as ``at`` grows, and at the stay's
  end it is the invoice's total.
* **Estimate.** ``estimate(...)``: one session from ``arrive`` to ``leave`` delivering
  ``energy_kwh`` evenly, the car leaving when it ends (no idle); its energy counts as known as it
  is delivered (no meter readings to wait for).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo

from cloud.pricing.tariff import (
    BayType,
    ComponentType,
    Conditions,
    Invoice,
    InvoiceLine,
    PowerClass,
    PriceComponent,
    SessionUsage,
    Stay,
    Tariff,
)

__all__ = ["estimate", "price", "running_cost"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_DAY_S = 86_400
_QUANTITY_DECIMALS = 6
_DST_PROBE_S = 3 * 3600
"""Daylight-saving changes are found by probing the UTC offset every 3 hours, then bisecting to
the second (no zone changes its offset twice within 3 hours)."""

Instant = Fraction
"""Seconds since the Unix epoch (UTC), exact: slices may start between two microseconds."""


def price(tariff: Tariff, stay: Stay) -> Invoice:
    """The invoice of a finished stay."""
    return _price_prepared(tariff, _prepare(stay, None))


def running_cost(tariff: Tariff, stay: Stay, at: datetime) -> Decimal:
    """The total (gross) the stay would cost if it ended at ``at``, from what is known up to ``at``;
    equals ``price(tariff, stay).total`` at the stay's end and never decreases as ``at`` grows.

    For a stay in progress pass what is known: ``departed_at`` at ``at`` (or later) while the car
    is still in the bay, a running session with ``stopped_at`` at ``at`` (or later) and its meter
    readings so far (``energy_wh`` the last of them)."""
    _aware(at, "at")
    return _price_prepared(tariff, _prepare(stay, _instant(at))).total


def estimate(tariff: Tariff, *, bay_type: BayType, power_class: PowerClass, arrive: datetime, leave: datetime,
             energy_kwh: Decimal | int) -> Invoice:
    """What a stay would cost: one session from ``arrive`` to ``leave`` delivering ``energy_kwh``
    evenly, the car leaving when the session ends (no idle). ValueError for an impossible one."""
    _aware(arrive, "arrive")
    _aware(leave, "leave")
    if isinstance(energy_kwh, Decimal) and not energy_kwh.is_finite():
        raise ValueError("energy_kwh must be a finite number")
    energy_wh = Fraction(energy_kwh) * 1000
    if leave < arrive:
        raise ValueError("leave must not be before arrive")
    if energy_wh < 0:
        raise ValueError("energy_kwh must not be negative")
    if leave == arrive and energy_wh:
        raise ValueError("no energy can be delivered in no time: leave must be after arrive")
    start, stop = _instant(arrive), _instant(leave)
    session = _Session(number=1, power_class=power_class, start=start, stop=stop, charge_end=stop,
                       curve=_dedupe([(start, Fraction(0)), (stop, energy_wh)]), known=[], known_linear=True)
    return _price_prepared(tariff, _Stay(bay_type=bay_type, arrival=start, end=stop, departure=stop,
                                         sessions=[session]))


# --- the stay as the engine sees it -----------------------------------------------------------


@dataclass(slots=True)
class _Session:
    number: int
    """1-based, in the order of the stay's sessions."""
    power_class: str
    start: Instant
    stop: Instant
    charge_end: Instant
    """Energy finished, else the end: charging time ends and idle may begin here."""
    curve: list[tuple[Instant, Fraction]]
    """Cumulative Wh delivered, linear between these points (from (start, 0) to (stop, total))."""
    known: list[tuple[Instant, Fraction]]
    """Cumulative Wh known from each of these moments on (meter readings, then the total at stop)."""
    known_linear: bool = False
    """Estimate only: the energy is known as it is delivered."""
    _times: list[Instant] = field(default_factory=list)
    _known_times: list[Instant] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._times = [t for t, _ in self.curve]
        self._known_times = [t for t, _ in self.known]

    def delivered(self, at: Instant) -> Fraction:
        if at <= self.start:
            return Fraction(0)
        if at >= self.stop:
            return self.curve[-1][1]
        i = bisect.bisect_right(self._times, at) - 1
        (t0, w0), (t1, w1) = self.curve[i], self.curve[i + 1]
        return w0 + (w1 - w0) * (at - t0) / (t1 - t0)

    def known_at(self, at: Instant) -> Fraction:
        if self.known_linear:
            return self.delivered(at)
        i = bisect.bisect_right(self._known_times, at) - 1
        return self.known[i][1] if i >= 0 else Fraction(0)


@dataclass(slots=True)
class _Stay:
    bay_type: str
    arrival: Instant
    end: Instant
    departure: Instant | None
    sessions: list[_Session]


def _prepare(stay: Stay, horizon: Instant | None) -> _Stay:
    """The stay as known at ``horizon`` (None: all of it)."""
    arrival = _instant(stay.arrived_at)
    if horizon is not None:
        horizon = max(horizon, arrival)
    departure = None if stay.departed_at is None else _instant(stay.departed_at)
    if departure is not None and horizon is not None:
        departure = min(departure, horizon)
    sessions: list[_Session] = []
    ordered = sorted(enumerate(stay.sessions, start=1), key=lambda pair: pair[1].started_at)
    for number, usage in ordered:
        session = _session(number, usage, horizon)
        if session is not None:
            sessions.append(session)
    end = departure if departure is not None else max([arrival, *(s.stop for s in sessions)])
    return _Stay(bay_type=stay.bay_type, arrival=arrival, end=end, departure=departure, sessions=sessions)


def _session(number: int, usage: SessionUsage, horizon: Instant | None) -> _Session | None:
    start, stop = _instant(usage.started_at), _instant(usage.stopped_at)
    if horizon is not None and start > horizon:
        return None
    readings = [(_instant(at), Fraction(wh)) for at, wh in usage.meter]
    total = Fraction(usage.energy_wh)
    finished = None if usage.energy_finished_at is None else _instant(usage.energy_finished_at)
    if horizon is not None and stop > horizon:
        stop = horizon
        readings = [(at, wh) for at, wh in readings if at <= horizon]
        total = readings[-1][1] if readings else Fraction(0)
        if finished is not None and finished > horizon:
            finished = None
    curve = _dedupe([(start, Fraction(0)), *readings, (stop, total)])
    known = _dedupe([*readings, (stop, total)])
    return _Session(number=number, power_class=usage.power_class, start=start, stop=stop,
                    charge_end=stop if finished is None else finished, curve=curve, known=known)


def _dedupe(points: Iterable[tuple[Instant, Fraction]]) -> list[tuple[Instant, Fraction]]:
    """One point per moment (validation makes points at the same moment agree)."""
    out: list[tuple[Instant, Fraction]] = []
    for at, wh in points:
        if out and out[-1][0] == at:
            out[-1] = (at, max(out[-1][1], wh))
        else:
            out.append((at, wh))
    return out


# --- pricing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """Adjacent slices of one dimension priced by the same element: one invoice line."""

    kind: ComponentType
    element: int
    start: Instant
    end: Instant
    quantity: Fraction = Fraction(0)
    """Wh for energy, seconds for times."""
    session: _Session | None = None


class _Runs:
    def __init__(self) -> None:
        self.open: dict[object, _Run] = {}
        self.done: list[_Run] = []

    def add(self, key: object, kind: ComponentType, element: int | None, start: Instant, end: Instant,
            quantity: Fraction, session: _Session | None = None) -> None:
        run = self.open.get(key)
        if run is not None and (element is None or run.element != element or run.end != start):
            self.done.append(self.open.pop(key))
            run = None
        if element is None:
            return
        if run is None:
            run = self.open[key] = _Run(kind=kind, element=element, start=start, end=start, session=session)
        run.end = end
        run.quantity += quantity

    def close(self) -> list[_Run]:
        self.done.extend(self.open.values())
        self.open.clear()
        return sorted(self.done, key=lambda r: (r.session.number if r.session else 0, r.start))


def _price_prepared(tariff: Tariff, stay: _Stay) -> Invoice:
    zone = tariff.zone
    conditions = [element.restrictions.conditions() for element in tariff.elements]
    idle_periods = _idle_periods(stay)
    points = _slice_points(tariff, conditions, zone, stay, idle_periods)
    starts = [s.start for s in stay.sessions]

    def stay_class(at: Instant) -> str | None:
        i = bisect.bisect_right(starts, at) - 1
        return stay.sessions[i].power_class if i >= 0 else None

    def matcher(at: Instant) -> _Matcher:
        local = _datetime(at).astimezone(zone)
        known = sum((s.known_at(at) for s in stay.sessions), Fraction(0))
        return _Matcher(tariff, conditions, stay.bay_type, local.time(), local.weekday(), known, at - stay.arrival)

    flat: tuple[int, Instant] | None = None
    energy, charging, parking, idle = _Runs(), _Runs(), _Runs(), _Runs()
    period_starts = [start for start, _ in idle_periods]
    for a, b in itertools.pairwise(points):
        match = matcher(a)
        cls = stay_class(a)
        if flat is None:
            element = match("flat", cls)
            if element is not None:
                flat = (element, a)
        for session in stay.sessions:
            if session.start <= a < session.stop:
                element = match("energy", session.power_class)
                energy.add(session.number, "energy", element, a, b, session.delivered(b) - session.delivered(a),
                           session)
            if session.start <= a < session.charge_end:
                element = match("charging_time", session.power_class)
                charging.add(session.number, "charging_time", element, a, b, b - a, session)
        parking.add("parking", "parking_time", match("parking_time", cls), a, b, b - a)
        p = bisect.bisect_right(period_starts, a) - 1
        if p >= 0 and a < idle_periods[p][1]:
            element = match("idle", cls)
            component = None if element is None else tariff.elements[element].component("idle")
            billed = component is not None and a - idle_periods[p][0] >= component.grace_s
            idle.add("idle", "idle", element if billed else None, a, b, b - a)
        else:
            idle.add("idle", "idle", None, a, b, Fraction(0))
    if flat is None and stay.end == stay.arrival:
        element = matcher(stay.arrival)("flat", stay_class(stay.arrival))
        if element is not None:
            flat = (element, stay.arrival)
    return _invoice(tariff, flat, energy.close() + charging.close() + parking.close(), idle.close())


@dataclass(slots=True)
class _Matcher:
    """The first element matching at one moment, for a component type and a power class."""

    tariff: Tariff
    conditions: list[Conditions]
    bay_type: str
    local_time: time
    weekday: int
    known_wh: Fraction
    elapsed_s: Fraction
    cache: dict[tuple[str, str | None], int | None] = field(default_factory=dict)

    def __call__(self, kind: ComponentType, power_class: str | None) -> int | None:
        key = (kind, power_class)
        if key not in self.cache:
            self.cache[key] = next(
                (i for i, (element, cond) in enumerate(zip(self.tariff.elements, self.conditions, strict=True))
                 if element.component(kind) is not None and cond.matches(
                     bay_type=self.bay_type, power_class=power_class, local_time=self.local_time,
                     weekday=self.weekday, known_wh=self.known_wh, elapsed_s=self.elapsed_s)),
                None)
        return self.cache[key]


def _idle_periods(stay: _Stay) -> list[tuple[Instant, Instant]]:
    """Disjoint idle periods in time order: after each session's energy finished (else its end)
    until departure (sensor unknown: until that session's end), minus the time any session charges."""
    sources = []
    for s in stay.sessions:
        until = s.stop if stay.departure is None else stay.departure
        sources.append((max(s.charge_end, stay.arrival), min(until, stay.end)))
    charging = [(s.start, s.charge_end) for s in stay.sessions]
    return _subtract(_union(sources), _union(charging))


def _union(intervals: Iterable[tuple[Instant, Instant]]) -> list[tuple[Instant, Instant]]:
    out: list[tuple[Instant, Instant]] = []
    for a, b in sorted(i for i in intervals if i[0] < i[1]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _subtract(base: list[tuple[Instant, Instant]],
              holes: list[tuple[Instant, Instant]]) -> list[tuple[Instant, Instant]]:
    out: list[tuple[Instant, Instant]] = []
    for a, b in base:
        cursor = a
        for h0, h1 in holes:
            if h1 <= cursor or h0 >= b:
                continue
            if h0 > cursor:
                out.append((cursor, h0))
            cursor = max(cursor, h1)
            if cursor >= b:
                break
        if cursor < b:
            out.append((cursor, b))
    return out


def _slice_points(tariff: Tariff, conditions: list[Conditions], zone: ZoneInfo, stay: _Stay,
                  idle_periods: list[tuple[Instant, Instant]]) -> list[Instant]:
    """Every moment in the stay where a restriction, a dimension or a grace could change."""
    points: set[Instant] = {stay.arrival, stay.end}
    for s in stay.sessions:
        points.update((s.start, s.stop, s.charge_end))
        points.update(t for t, _ in s.curve)
        if s.known_linear:
            points.update(_linear_crossings(s, conditions))
    graces = {c.grace_s for e in tariff.elements for c in e.components if c.type == "idle"}
    for start, _ in idle_periods:
        points.update(start + g for g in graces)
    for cond in conditions:
        points.update(stay.arrival + s for s in (cond.min_s, cond.max_s) if s is not None)
    walls = {w for cond in conditions if cond.window is not None for w in cond.window}
    if any(cond.days is not None for cond in conditions):
        walls.add(time(0))
    if walls:
        points.update(_local_points(zone, stay.arrival, stay.end, walls))
    return sorted(p for p in points if stay.arrival <= p <= stay.end)


def _linear_crossings(session: _Session, conditions: list[Conditions]) -> list[Instant]:
    """Estimate: the moments its evenly delivered energy reaches a min/max kWh of the tariff."""
    total = session.curve[-1][1]
    out = []
    for cond in conditions:
        for wh in (cond.min_wh, cond.max_wh):
            if wh is not None and 0 < wh < total:
                out.append(session.start + (session.stop - session.start) * wh / total)
    return out


def _local_points(zone: ZoneInfo, start: Instant, end: Instant, walls: set[time]) -> set[Instant]:
    """The UTC moments of the given local wall times on every local date around [start, end]
    (both folds of an ambiguous time), and the zone's offset changes in between."""
    first = _datetime(start).astimezone(zone).date() - timedelta(days=1)
    last = _datetime(end).astimezone(zone).date() + timedelta(days=1)
    out: set[Instant] = set()
    day: date = first
    while day <= last:
        for wall in walls:
            for fold in (0, 1):
                out.add(_instant(datetime.combine(day, wall, tzinfo=zone).replace(fold=fold)))
        day += timedelta(days=1)
    lo_s, hi_s = math.floor(start) - _DAY_S, math.ceil(end) + _DAY_S
    probe = lo_s
    while probe < hi_s:
        nxt = probe + _DST_PROBE_S
        if _offset(zone, probe) != _offset(zone, nxt):
            lo, hi = probe, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, mid) == _offset(zone, lo):
                    lo = mid
                else:
                    hi = mid
            out.add(Fraction(hi))
        probe = nxt
    return out


def _offset(zone: ZoneInfo, seconds: int) -> timedelta | None:
    return datetime.fromtimestamp(seconds, zone).utcoffset()


# --- lines and money ---------------------------------------------------------------------------

_UNITS: dict[str, tuple[Literal["kWh", "min", "h"], int]] = {
    "energy": ("kWh", 1000),  # Wh per kWh
    "charging_time": ("min", 60),  # seconds per minute
    "parking_time": ("h", 3600),
    "idle": ("min", 60),
}
_LABELS = {"energy": "energy", "charging_time": "charging time", "parking_time": "parking time", "idle": "idle"}


def _invoice(tariff: Tariff, flat: tuple[int, Instant] | None, runs: list[_Run], idle_runs: list[_Run]) -> Invoice:
    minor = tariff.minor_unit
    lines: list[InvoiceLine] = []
    if flat is not None:
        element, at = flat
        component = _component(tariff, element, "flat")
        lines.append(InvoiceLine(type="flat", description=f"flat fee per stay (elements[{element}])",
                                 quantity=Decimal(1), unit="stay", unit_price=component.price,
                                 amount=_money(Fraction(component.price), minor), period_start=_datetime(at),
                                 period_end=_datetime(at)))
    for run in runs:
        line = _line(tariff, run, minor)
        if line is not None:
            lines.append(line)
    idle_left = None if tariff.idle_fee_cap is None else Fraction(tariff.idle_fee_cap)
    for run in idle_runs:
        line = _line(tariff, run, minor)
        if line is None:
            continue
        if idle_left is not None:
            if Fraction(line.amount) > idle_left:
                line = line.model_copy(update={
                    "amount": _money(idle_left, minor),
                    "description": f"{line.description}, capped: the idle fee is at most {tariff.idle_fee_cap}"})
            idle_left -= Fraction(line.amount)
        lines.append(line)
    subtotal = sum((Fraction(line.amount) for line in lines), Fraction(0))
    if tariff.min_price is not None and subtotal < Fraction(tariff.min_price):
        amount = Fraction(tariff.min_price) - subtotal
        lines.append(InvoiceLine(type="minimum", description=f"minimum price per stay {tariff.min_price}",
                                 quantity=Decimal(1), unit="stay", unit_price=_money(amount, minor),
                                 amount=_money(amount, minor)))
        subtotal = Fraction(tariff.min_price)
    if tariff.max_price is not None and subtotal > Fraction(tariff.max_price):
        amount = Fraction(tariff.max_price) - subtotal
        lines.append(InvoiceLine(type="maximum", description=f"maximum price per stay {tariff.max_price}",
                                 quantity=Decimal(1), unit="stay", unit_price=_money(amount, minor),
                                 amount=_money(amount, minor)))
        subtotal = Fraction(tariff.max_price)
    tax = _money(subtotal * Fraction(tariff.tax_rate), minor)
    net = _money(subtotal, minor)
    lines.append(InvoiceLine(type="tax", description=f"tax {_plain(tariff.tax_rate * 100)} % of {net}",
                             quantity=_plain(tariff.tax_rate * 100), unit="%", unit_price=net.scaleb(-2),
                             amount=tax))
    return Invoice(currency=tariff.currency, lines=lines, subtotal=net, tax=tax,
                   total=_money(subtotal + Fraction(tax), minor))


def _line(tariff: Tariff, run: _Run, minor: int) -> InvoiceLine | None:
    component = _component(tariff, run.element, run.kind)
    unit, per_unit = _UNITS[run.kind]
    steps = math.ceil(run.quantity / component.step_size)
    if steps == 0:
        return None
    quantity = Fraction(steps * component.step_size, per_unit)
    description = f"{_LABELS[run.kind]} (elements[{run.element}])"
    if run.session is not None:
        description = f"{_LABELS[run.kind]}, session {run.session.number} ({run.session.power_class}) " \
                      f"(elements[{run.element}])"
    if run.kind == "idle":
        description += f", after {component.grace_s // 60} min grace"
    if component.step_size > 1:
        description += f", in steps of {component.step_size} {'Wh' if run.kind == 'energy' else 's'}"
    return InvoiceLine(type=run.kind, description=description, quantity=_quantity(quantity), unit=unit,
                       unit_price=component.price, amount=_money(quantity * Fraction(component.price), minor),
                       period_start=_datetime(run.start), period_end=_datetime(run.end))


def _component(tariff: Tariff, element: int, kind: str) -> PriceComponent:
    component = tariff.elements[element].component(kind)
    assert component is not None
    return component


def _round_half_up(value: Fraction, places: int) -> Decimal:
    """``value`` rounded to ``places`` decimals, halves away from zero (Decimal's ROUND_HALF_UP),
    computed exactly (the value may be a fraction like 1/3 that no Decimal holds)."""
    scaled = value * 10**places
    units = math.floor(abs(scaled) + Fraction(1, 2))
    return Decimal(-units if scaled < 0 else units).scaleb(-places)


def _money(value: Fraction, minor: int) -> Decimal:
    return _round_half_up(value, minor)


def _quantity(value: Fraction) -> Decimal:
    return _plain(_round_half_up(value, _QUANTITY_DECIMALS))


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros and without an exponent: 19.00 -> 19, 1.500 -> 1.5."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


# --- time ---------------------------------------------------------------------------------------


def _instant(value: datetime) -> Instant:
    return Fraction((value - _EPOCH) // _MICROSECOND, 1_000_000)


def _datetime(value: Instant) -> datetime:
    return _EPOCH + timedelta(microseconds=math.floor(value * 1_000_000))


def _aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC or with an offset)")
