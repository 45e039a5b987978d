"""Analytics rules, free of I/O: what each event adds to the rollups, report ranges and periods.

Every rollup figure is a sum of *contributions*, each a pure function of logged events, so the
rollups built incrementally as events arrive (in any order, redelivered or not) equal the ones
rebuilt from ``event_logs``:

- ``usage_metrics`` per (site, bay type, UTC hour): stays (by arrival), occupied seconds (a stay's
  arrival → departure, split over the hours it covers), charging sessions and Wh (by the session's
  start), idle seconds (the glossary's idle: energy finished → session end, from
  ``charging.completed``; session end → departure, from ``parking.bay_overstay_ended``), blocked
  seconds (``parking.bay_idle_ended``: an EV bay occupied with no session), reservations
  (``parking.reserved`` by its start), kept (``parking.arrived`` with a reservation), cancelled,
  no-shows, and first-attempt charging: a visit (``parking.released``) whose first session
  (``session_ids[0]``) delivered more than 100 Wh, stopped for Local, Remote or EVDisconnected and
  had no ``charging.failed``. A visit counts once its stay and first session are both known.
- ``usage_daily`` per (site, bay type, local day) and ``usage_peak`` per (site, local month, ISO
  weekday, local hour): the hourly rows summed in the site's time zone (:func:`local_rollups`),
  derived again when the zone changes; a report reads the whole local days or months of its range
  from them and the hours before and after by the hour (:func:`split_range`), the same sums.
- ``revenue_metrics`` per (site, currency, invoice date in the site's time zone, document kind,
  component): the net amounts of ``payment.invoice_issued`` / ``payment.credit_note_issued`` as
  issued (never converted, never summed across currencies), plus the documents' net, tax and total.

Vehicle types (:func:`vehicle_distribution`): registered or visiting vehicles counted by type, by
make (one make however it is spelt in case and spaces) and by battery size band
(:data:`BATTERY_BANDS`); what is not known is ``unknown``. The visitors of a range are the distinct
vehicles with a ``parking.arrived`` in it, found from ``analytics_visitors`` (each vehicle's first and
last arrival per site, widened as arrivals come in any order, rebuilt from ``event_logs``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.contracts.errors import DomainError, NotFound

Granularity = Literal["hour", "day", "week", "month"]
GRANULARITIES: tuple[str, ...] = ("hour", "day", "week", "month")
DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=731)
"""The glossary's analytics maximum range per request: 2 years (a leap year's worth of days included)."""
NORMAL_STOPS = frozenset({"Local", "Remote", "EVDisconnected"})
FIRST_ATTEMPT_MIN_WH = 100
FALLBACK_TIME_ZONE = "UTC"
"""A site's time zone until parking tells it (``parking.lot_configured``): UTC, as a lot nobody configured."""

USAGE_FIELDS = ("stays", "occupied_s", "sessions", "energy_wh", "charging_s", "idle_s", "blocked_s",
                "reservations", "kept", "cancelled", "no_shows", "visits", "first_attempt_ok")
PEAK_FIELDS = ("occupied_s", "sessions", "energy_wh", "charging_s")
"""The usage figures of the peak-hours heat map (``usage_peak``, every bay type together)."""
DOC_TOTALS = ("#net", "#tax", "#total")
"""Reserved component names of a document's own net / tax / total in ``revenue_metrics``."""

BATTERY_BANDS: tuple[tuple[str, int | None], ...] = (
    ("<30", 30), ("30-50", 50), ("50-75", 75), ("75-100", 100), (">=100", None))
"""Battery size bands, in kWh: each holds the sizes from the band before's upper bound (inclusive)
up to its own (exclusive), so 50 kWh is ``50-75`` and 100 kWh ``>=100``. Small plug-in hybrid
batteries fall in ``<30``, most cars in 50-100."""
NO_BATTERY = "none"
"""The band of a combustion vehicle registered without a battery size (it has none to count)."""
UNKNOWN = "unknown"
"""A type, make or band that is not known: a vehicle registered without it, before events carried it
(``vehicle.registered`` before 1.3), or a visitor analytics never heard of."""
MAX_MAKE_LENGTH = 64


class InvalidField(DomainError):
    """A query parameter breaks a rule: a 422 naming ``field``."""

    title = "Invalid request"

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"{field_name}: {detail}", code="invalid_field")
        self.field = field_name


class UnknownSite(NotFound):
    def __init__(self, site_id: str) -> None:
        super().__init__(f"site_id: no site {site_id!r} known to analytics", code="unknown_site")


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or FALLBACK_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(FALLBACK_TIME_ZONE)


# --- ranges and periods -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime
    granularity: Granularity = "day"


def report_range(start: datetime | None, end: datetime | None, granularity: str | None, *,
                 now: datetime) -> Range:
    """``from``/``to`` (default: the last 30 days up to now), at most 2 years, ``from`` < ``to``."""
    if granularity is not None and granularity not in GRANULARITIES:
        raise InvalidField("granularity", f"{granularity!r} is not one of {', '.join(GRANULARITIES)}")
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidField(name, "give a time zone (e.g. 2026-01-01T00:00:00Z)")
    if start is None and end is not None:
        start = end - DEFAULT_RANGE
    end = (end or now).astimezone(UTC)
    start = (start or end - DEFAULT_RANGE).astimezone(UTC)
    if start >= end:
        raise InvalidField("from", "must be before 'to'")
    if end - start > MAX_RANGE:
        raise InvalidField("to", "the range is longer than the maximum of 2 years")
    return Range(start, end, granularity or "day")  # type: ignore[arg-type]


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def period_of(hour: datetime, granularity: Granularity, tz: ZoneInfo) -> str:
    """The period label (in the site's time zone) an hour belongs to."""
    local = hour.astimezone(tz)
    if granularity == "hour":
        return local.isoformat(timespec="minutes")
    if granularity == "day":
        return local.date().isoformat()
    if granularity == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{local.year}-{local.month:02d}"


def local_days(span: Range, tz: ZoneInfo) -> tuple[date, date]:
    """The first and last local dates whose start (local midnight) lies in the range: revenue is by
    invoice date, so a day counts whole or not at all."""
    start = span.start.astimezone(tz)
    first = start.date() if start.time() == time(0) else start.date() + timedelta(days=1)
    last = (span.end - timedelta(microseconds=1)).astimezone(tz).date()
    return first, last


def period_of_date(day: date, granularity: Granularity) -> str:
    if granularity in ("hour", "day"):
        return day.isoformat()
    if granularity == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def ceil_hour(moment: datetime) -> datetime:
    hour = hour_of(moment)
    return hour if hour == moment else hour + timedelta(hours=1)


def first_hour(day: date, tz: ZoneInfo) -> datetime:
    """The first UTC hour whose start lies on ``day`` or later in ``tz``."""
    return ceil_hour(datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC))


def _next(day: date, unit: Literal["day", "month"]) -> date:
    if unit == "day":
        return day + timedelta(days=1)
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


@dataclass(frozen=True)
class Split:
    """A range's hours as whole local periods (days or months: ``first`` up to ``end``, exclusive; None
    when there is none) and the UTC hour ranges ``[a, b)`` before and after them (``edges``)."""

    first: date | None
    end: date | None
    edges: tuple[tuple[datetime, datetime], ...]


def split_range(span: Range, tz: ZoneInfo, unit: Literal["day", "month"]) -> Split:
    """The hours of ``span`` (those starting in it) as the whole local days or months they cover, read
    from a daily or monthly rollup, and the hours left over at either end, read by the hour."""
    a, b = hour_of(span.start), ceil_hour(span.end)
    first, end = a.astimezone(tz).date(), b.astimezone(tz).date()
    if unit == "month":
        first, end = first.replace(day=1), end.replace(day=1)
    if first_hour(first, tz) < a:
        first = _next(first, unit)
    if first >= end:
        return Split(None, None, ((a, b),))
    edges = tuple((x, y) for x, y in ((a, first_hour(first, tz)), (first_hour(end, tz), b)) if x < y)
    return Split(first, end, edges)


def local_rollups(rows: Iterable[tuple[str, str, datetime, dict[str, int]]], zones: dict[str, str]) -> tuple[
        dict[tuple[str, str, date], dict[str, int]], dict[tuple[str, date, int, int], dict[str, int]]]:
    """Hourly usage rows (site, bay type, UTC hour, figures) summed per local day (``usage_daily``) and
    per local month, ISO weekday and local hour (``usage_peak``), in each site's time zone."""
    daily: dict[tuple[str, str, date], dict[str, int]] = {}
    peak: dict[tuple[str, date, int, int], dict[str, int]] = {}
    tzs = {site: zone(name) for site, name in zones.items()}
    for site, bay_type, hour, figures in rows:
        local = hour.astimezone(tzs.get(site) or zone(None))
        day = local.date()
        into = daily.setdefault((site, bay_type, day), dict.fromkeys(USAGE_FIELDS, 0))
        for name in USAGE_FIELDS:
            into[name] += figures.get(name, 0)
        cell = peak.setdefault((site, day.replace(day=1), local.isoweekday(), local.hour),
                               dict.fromkeys(PEAK_FIELDS, 0))
        for name in PEAK_FIELDS:
            cell[name] += figures.get(name, 0)
    return daily, peak


def _hours(span: Range) -> Iterator[datetime]:
    hour = hour_of(span.start)
    while hour < span.end:
        yield hour
        hour += timedelta(hours=1)


def hour_labels(span: Range, tz: ZoneInfo) -> dict[datetime, str]:
    """Each UTC hour of the range and its hour period's label in ``tz`` (computed once per hour: a
    year by hour is 8,760 of them)."""
    first, step = hour_of(span.start), timedelta(hours=1)
    count = -(-int((span.end - first).total_seconds()) // 3600)
    hours = [first + n * step for n in range(count)]
    return {hour: hour.astimezone(tz).isoformat(timespec="minutes") for hour in hours}  # as period_of()


def hours_in(span: Range) -> int:
    """How many UTC hours start in the range (as :func:`hour_labels` lists them)."""
    return -(-int((span.end - hour_of(span.start)).total_seconds()) // 3600)


def hours_per_period(span: Range, tz: ZoneInfo, labels: dict[datetime, str] | None = None) -> dict[str, int]:
    """How many hours of the range (UTC hours, by their start) fall into each period: the bay hours a
    utilisation divides by. Counted per local day (a DST day has 23 or 25), not hour by hour; by hour,
    over ``labels`` (:func:`hour_labels`) when the caller has them already."""
    counts: dict[str, int] = {}
    if span.granularity == "hour":
        for label in (hour_labels(span, tz) if labels is None else labels).values():
            counts[label] = counts.get(label, 0) + 1
        return counts
    start, end = hour_of(span.start), span.end
    day = start.astimezone(tz).date()
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        if midnight >= end:
            break
        following = day + timedelta(days=1)
        upper = min(end, datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC))
        lower = max(start, midnight)
        first = hour_of(lower) if lower == hour_of(lower) else hour_of(lower) + timedelta(hours=1)
        if upper > first:
            label = period_of_date(day, span.granularity)
            counts[label] = counts.get(label, 0) + -(-int((upper - first).total_seconds()) // 3600)
        day = following
    return counts


def hours_per_weekday_hour(span: Range, tz: ZoneInfo) -> dict[tuple[int, int], int]:
    """How many hours of the range fall on each (ISO weekday, local hour)."""
    counts: dict[tuple[int, int], int] = {}
    for hour in _hours(span):
        local = hour.astimezone(tz)
        key = (local.isoweekday(), local.hour)
        counts[key] = counts.get(key, 0) + 1
    return counts


def split_hours(start: datetime, end: datetime) -> Iterator[tuple[datetime, int]]:
    """(UTC hour, whole seconds in it) for the interval ``start`` → ``end``; the seconds sum to the
    interval's whole seconds."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return
    total = int((end - start).total_seconds())
    given = 0
    cursor = start
    while cursor < end and given < total:
        hour = hour_of(cursor)
        nxt = min(hour + timedelta(hours=1), end)
        part = min(int((nxt - start).total_seconds()) - given, total - given)
        if part > 0:
            yield hour, part
            given += part
        cursor = nxt


# --- contributions ----------------------------------------------------------------------------------


@dataclass
class UsageDelta:
    """Additions to usage rows keyed (site, bay type, UTC hour)."""

    rows: dict[tuple[str, str, datetime], dict[str, int]] = field(default_factory=dict)

    def add(self, site_id: str, bay_type: str, hour: datetime, **figures: int) -> None:
        row = self.rows.setdefault((site_id, bay_type, hour_of(hour)), dict.fromkeys(USAGE_FIELDS, 0))
        for name, value in figures.items():
            row[name] += value

    def spread(self, site_id: str, bay_type: str, name: str, start: datetime, end: datetime) -> None:
        for hour, seconds in split_hours(start, end):
            self.add(site_id, bay_type, hour, **{name: seconds})

    def negated(self) -> UsageDelta:
        return UsageDelta({k: {n: -v for n, v in row.items()} for k, row in self.rows.items()})

    def absorb(self, other: UsageDelta) -> None:
        for (site, bay_type, hour), row in other.rows.items():
            self.add(site, bay_type, hour, **row)

    def merged(self, other: UsageDelta) -> UsageDelta:
        out = UsageDelta({k: dict(v) for k, v in self.rows.items()})
        out.absorb(other)
        return out


@dataclass(frozen=True)
class SessionOutcome:
    energy_wh: int
    stop_reason: str | None


def first_attempt(site_id: str, bay_type: str, arrived_at: datetime, first: SessionOutcome | None,
                  failed: bool) -> UsageDelta:
    """A visit's first-attempt figures: nothing until its first session's end is known."""
    delta = UsageDelta()
    if first is None:
        return delta
    ok = first.energy_wh > FIRST_ATTEMPT_MIN_WH and first.stop_reason in NORMAL_STOPS and not failed
    delta.add(site_id, bay_type, arrived_at, visits=1, first_attempt_ok=int(ok))
    return delta


@dataclass
class RevenueDelta:
    """Additions to revenue rows keyed (site, currency, local day, kind, component)."""

    rows: dict[tuple[str, str, date, str, str], Decimal] = field(default_factory=dict)
    documents: dict[tuple[str, str, date, str, str], int] = field(default_factory=dict)
    """Documents per key (counted on the ``#net`` row: one per invoice or credit note)."""

    def add(self, key: tuple[str, str, date, str, str], amount: Decimal, documents: int = 0) -> None:
        self.rows[key] = self.rows.get(key, Decimal(0)) + amount
        if documents:
            self.documents[key] = self.documents.get(key, 0) + documents

    def absorb(self, other: RevenueDelta) -> None:
        for key, amount in other.rows.items():
            self.add(key, amount, other.documents.get(key, 0))


def document_revenue(kind: Literal["invoice", "credit_note"], site_id: str, currency: str, issued_at: datetime,
                     tz: ZoneInfo, components: dict[str, Decimal], net: Decimal, tax: Decimal,
                     total: Decimal) -> RevenueDelta:
    day = issued_at.astimezone(tz).date()
    delta = RevenueDelta()
    for component, amount in components.items():
        delta.add((site_id, currency, day, kind, component), amount)
    for name, amount in zip(DOC_TOTALS, (net, tax, total), strict=True):
        delta.add((site_id, currency, day, kind, name), amount, documents=int(name == "#net"))
    return delta


# --- vehicle types -----------------------------------------------------------------------------------


def battery_wh(battery_kwh: str | Decimal | None) -> int | None:
    """A vehicle event's ``battery_kwh`` (a decimal string) in whole Wh, as analytics keeps it."""
    if battery_kwh is None:
        return None
    return int((Decimal(battery_kwh) * 1000).to_integral_value())


def clean_make(make: str | None) -> str | None:
    """The make as kept: single spaces, at most :data:`MAX_MAKE_LENGTH` characters; blank is not known."""
    if make is None:
        return None
    return " ".join(make.split())[:MAX_MAKE_LENGTH] or None


def battery_band(wh: int | None, kind: str | None) -> str:
    if wh is None:
        return NO_BATTERY if kind == "combustion" else UNKNOWN
    return next(label for label, upper in BATTERY_BANDS if upper is None or wh < upper * 1000)


@dataclass(frozen=True)
class VehicleGroup:
    """Vehicles alike in type, make and battery (None: not known), and how many there are."""

    kind: str | None
    make: str | None
    battery_wh: int | None
    vehicles: int


@dataclass(frozen=True)
class VehicleDistribution:
    vehicles: int
    by_type: dict[str, int]
    by_make: dict[str, int]
    by_battery: dict[str, int]


def _most_first(counts: Counter[str]) -> dict[str, int]:
    """Most vehicles first, then by name; ``unknown`` last."""
    return dict(sorted(counts.items(), key=lambda item: (item[0] == UNKNOWN, -item[1], item[0])))


def vehicle_distribution(groups: Iterable[VehicleGroup]) -> VehicleDistribution:
    """How many vehicles of each type, make and battery band. Makes that differ only in case are one
    make, named by the spelling most of its vehicles have (the first alphabetically on a tie). Every
    band of :data:`BATTERY_BANDS` is listed, in order, even at 0; ``none`` and ``unknown`` when any."""
    by_type: Counter[str] = Counter()
    bands: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    total = unknown_make = 0
    for group in groups:
        total += group.vehicles
        by_type[group.kind or UNKNOWN] += group.vehicles
        bands[battery_band(group.battery_wh, group.kind)] += group.vehicles
        make = clean_make(group.make)
        if make is None:
            unknown_make += group.vehicles
        else:
            spellings.setdefault(make.casefold(), Counter())[make] += group.vehicles
    by_make: Counter[str] = Counter({UNKNOWN: unknown_make} if unknown_make else {})
    for counts in spellings.values():
        name = min(counts, key=lambda spelling: (-counts[spelling], spelling))
        by_make[name] += sum(counts.values())
    by_battery = {label: bands[label] for label, _ in BATTERY_BANDS}
    by_battery.update({label: bands[label] for label in (NO_BATTERY, UNKNOWN) if bands[label]})
    return VehicleDistribution(vehicles=total, by_type=_most_first(by_type), by_make=_most_first(by_make),
                               by_battery=by_battery)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
