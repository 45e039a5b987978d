"""The pricing engine's properties over random valid tariffs and stays (hypothesis):

* the running cost at the stay's end is the invoice's total;
* the running cost never decreases as time goes on;
* every amount has exactly the currency's minor-unit decimals, and the invoice adds up;
* an estimate is the invoice of the same stay (one session, energy evenly, leaving at its end)
  when the tariff has no kWh restriction (the only thing an estimate knows earlier).

Derandomized, so the run is the same every time and bounded (about 200 examples per property).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from itertools import pairwise
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.pricing import (
    PriceComponent,
    Restrictions,
    SessionUsage,
    Stay,
    Tariff,
    TariffElement,
    estimate,
    price,
    running_cost,
)
from cloud.pricing.currencies import MINOR_UNITS
from cloud.pricing.tariff import WEEKDAYS, BayType, ComponentType, PowerClass

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

KINDS: tuple[ComponentType, ...] = get_args(ComponentType)
BASES = [  # two days around each change of Europe/Berlin and of America/New_York, and a plain weekend
    datetime(2024, 3, 30, 18, tzinfo=UTC), datetime(2024, 10, 26, 18, tzinfo=UTC),
    datetime(2024, 3, 10, 2, tzinfo=UTC), datetime(2024, 11, 3, 2, tzinfo=UTC), datetime(2024, 5, 17, 18, tzinfo=UTC),
]


_mostly = st.sampled_from([True, True, True, True, False])
"""Four times in five."""


@cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    """Strategies made once (hypothesis validates each new strategy object: building them per draw
    is most of the time otherwise)."""
    return st.integers(low, high)


@cache
def _pick(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


@cache
def _some(*values: Any, low: int = 1, high: int = 2) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), min_size=low, max_size=high, unique=True)


def _money(draw: st.DrawFn, places: int, high: int = 5000) -> Decimal:
    return Decimal(draw(_ints(1, high)) if draw(_mostly) else 0).scaleb(-places)


def _component(draw: st.DrawFn, kind: ComponentType, minor: int) -> PriceComponent:
    places = minor if kind == "flat" else draw(_ints(0, 4))
    steps = (1, 10, 100, 1000) if kind == "energy" else (1, 7, 60, 300, 900)
    grace = draw(_pick(None, 0, 5, 10)) if kind == "idle" else None
    return PriceComponent(type=kind, price=_money(draw, places), step_size=draw(_pick(*steps)),
                          grace_minutes=grace)


def _restrictions(draw: st.DrawFn) -> Restrictions:
    """One or two restrictions: enough for elements to take turns within a stay."""
    fields: dict[str, Any] = {}
    for kind in draw(_some("bay", "class", "time", "days", "kwh", "duration")):
        if kind == "bay":
            fields["bay_types"] = draw(_some(*get_args(BayType)))
        elif kind == "class":
            fields["power_classes"] = draw(_some(*get_args(PowerClass)))
        elif kind == "time":
            start, end = draw(_some(*range(48), low=2))
            fields["start_time"] = f"{start // 2:02d}:{start % 2 * 30:02d}"
            fields["end_time"] = f"{end // 2:02d}:{end % 2 * 30:02d}"
        elif kind == "days":
            fields["days_of_week"] = draw(_some(*WEEKDAYS, high=6))
        elif kind == "kwh":
            low, high = sorted(draw(_some(*range(41), low=2)))
            fields.update([{"min_kwh": low}, {"max_kwh": high}, {"min_kwh": low, "max_kwh": high}][draw(_ints(0, 2))])
        else:
            low, high = sorted(draw(_some(*range(0, 601, 5), low=2)))
            fields.update([{"min_duration_minutes": low}, {"max_duration_minutes": high},
                           {"min_duration_minutes": low, "max_duration_minutes": high}][draw(_ints(0, 2))])
    return Restrictions(**fields)


@st.composite
def tariffs(draw: st.DrawFn, kwh_restrictions: bool = True) -> Tariff:
    currency = draw(_pick("EUR", "JPY", "KWD", "CHF"))
    minor = MINOR_UNITS[currency]
    base: dict[str, Any] = {
        "site_id": "site-1", "currency": currency, "time_zone": draw(_pick(
            "Europe/Berlin", "UTC", "America/New_York", "Asia/Tokyo")),
        "tax_rate": draw(_pick(Decimal(0), Decimal("0.19"), Decimal("0.077"), Decimal("0.25"))),
    }
    elements: list[TariffElement] = []
    for _ in range(draw(_ints(1, 4))):
        kinds = draw(_some(*KINDS, high=3))
        restriction = _restrictions(draw)
        if not kwh_restrictions:
            restriction = restriction.model_copy(update={"min_kwh": None, "max_kwh": None})
        candidate = TariffElement(components=[_component(draw, kind, minor) for kind in kinds],
                                  restrictions=restriction)
        try:  # keep only elements that leave the tariff valid (reachable, not overlapping)
            Tariff(**base, elements=[*elements, candidate])
        except ValidationError:
            continue
        elements.append(candidate)
    if draw(_mostly) or not elements:  # mostly a catch-all last
        kinds = draw(_some(*KINDS, low=2, high=5))
        candidate = TariffElement(components=[_component(draw, kind, minor) for kind in kinds])
        try:
            Tariff(**base, elements=[*elements, candidate])
            elements.append(candidate)
        except ValidationError:
            pass
    if not elements:
        elements = [TariffElement(components=[PriceComponent(type="parking_time", price=Decimal(1))])]
    low, high = sorted((_money(draw, minor, 3000), _money(draw, minor, 3000)))
    extras: dict[str, Any] = {}
    if draw(st.booleans()):
        extras["min_price"] = low
    if draw(st.booleans()):
        extras["max_price"] = high
    if draw(st.booleans()):
        extras["idle_fee_cap"] = _money(draw, minor, 2000)
    return Tariff(**base, elements=elements, **extras)


def _moments(draw: st.DrawFn, after: datetime, max_minutes: int) -> datetime:
    """Mostly some minutes after ``after``; sometimes right at it."""
    seconds = draw(_ints(60, max_minutes * 60)) if draw(_mostly) else 0
    micros = draw(_pick(0, 0, 0, 1, 499_999, 999_999))
    return after + timedelta(seconds=seconds, microseconds=micros)


def _sessions(draw: st.DrawFn, after: datetime) -> SessionUsage:
    start = _moments(draw, after, 60)
    stop = _moments(draw, start, 300)
    energy = draw(_ints(1, 60_000)) if stop > start and draw(_mostly) else 0
    meter: list[tuple[datetime, int]] = []
    if energy and draw(st.booleans()):
        length = (stop - start) // timedelta(microseconds=1)
        count = draw(_ints(1, 6))
        at = sorted({length * draw(_ints(1, 1000)) // 1000 or 1 for _ in range(count)})
        wh = sorted(energy * draw(_ints(0, 1000)) // 1000 for _ in at)
        meter = [(start + timedelta(microseconds=t), w if t < length else energy) for t, w in zip(at, wh, strict=True)]
    finished = None
    if draw(st.booleans()):
        finished = start + (stop - start) * draw(_pick(0, 0.25, 0.5, 0.9, 1))
    return SessionUsage(power_class=draw(_pick(*get_args(PowerClass))), started_at=start, stopped_at=stop,
                        energy_wh=energy, meter=meter, energy_finished_at=finished)


@st.composite
def stays(draw: st.DrawFn) -> Stay:
    arrival = _moments(draw, draw(_pick(*BASES)), 24 * 60)
    used: list[SessionUsage] = []
    cursor = arrival
    for _ in range(draw(_pick(1, 2, 3, 0))):
        used.append(_sessions(draw, cursor))
        cursor = used[-1].stopped_at
    departure = _moments(draw, cursor, 240) if not used or draw(_mostly) else None
    return Stay(bay_type=draw(_pick(*get_args(BayType))), arrived_at=arrival, departed_at=departure,
                sessions=used)


def _checked_amounts(tariff: Tariff, amounts: list[Decimal]) -> None:
    for amount in amounts:
        assert amount.as_tuple().exponent == -tariff.minor_unit, amount


@SETTINGS
@given(tariffs(), stays(), st.lists(st.floats(-0.05, 1.05), min_size=1, max_size=20))
def test_the_running_cost_never_decreases_and_ends_at_the_invoice_total(
        tariff: Tariff, stay: Stay, fractions: list[float]) -> None:
    invoice = price(tariff, stay)
    end = stay.ends_at
    assert running_cost(tariff, stay, end) == invoice.total
    _checked_amounts(tariff, [line.amount for line in invoice.lines] + [invoice.subtotal, invoice.tax, invoice.total])
    assert sum((line.amount for line in invoice.lines if line.type != "tax"), Decimal(0)) == invoice.subtotal
    assert invoice.subtotal + invoice.tax == invoice.total
    span = end - stay.arrived_at
    times = {stay.arrived_at + span * f for f in fractions}
    changes = sorted({at for usage in stay.sessions for at in (
        usage.started_at, usage.stopped_at, usage.energy_finished_at, *(t for t, _ in usage.meter)) if at is not None})
    for at, later in pairwise([*changes, end]):  # where things change, just before, and halfway to the next
        times.update((at, at - timedelta(microseconds=1), at + (later - at) / 2))
    costs = [running_cost(tariff, stay, at) for at in sorted(times)]
    assert costs == sorted(costs), list(zip(sorted(times), costs, strict=True))
    assert costs[-1] <= invoice.total


@SETTINGS
@given(tariffs(kwh_restrictions=False), st.sampled_from(BASES), st.integers(0, 24 * 60), st.integers(0, 600),
       st.integers(0, 80_000), st.sampled_from(get_args(PowerClass)), st.sampled_from(get_args(BayType)))
def test_an_estimate_is_the_invoice_of_the_same_stay(tariff: Tariff, base: datetime, offset: int, minutes: int,
                                                     wh: int, power_class: PowerClass, bay_type: BayType) -> None:
    arrive = base + timedelta(minutes=offset)
    leave = arrive + timedelta(minutes=minutes)
    wh = wh if minutes else 0
    quote = estimate(tariff, bay_type=bay_type, power_class=power_class, arrive=arrive, leave=leave,
                     energy_kwh=Decimal(wh) / 1000)
    invoice = price(tariff, Stay(bay_type=bay_type, arrived_at=arrive, departed_at=leave, sessions=[
        SessionUsage(power_class=power_class, started_at=arrive, stopped_at=leave, energy_wh=wh)]))
    assert quote == invoice
    _checked_amounts(tariff, [line.amount for line in quote.lines] + [quote.subtotal, quote.tax, quote.total])
