"""What a site charges, and what a stay was: the engine's inputs (pure pydantic, no I/O).

A tariff is modelled on OCPI 2.2.1 tariffs: a currency, a tax rate, a time zone, and elements
each made of price components and restrictions. For each component type (energy, charging time,
parking time, flat fee, idle fee) the **first element whose restrictions match** and that has a
component of that type prices that dimension; time-of-day and weekday restrictions are evaluated
in the tariff's time zone, moment by moment, so energy charged after 22:00 is priced by the
night element even in a session that started in the day.

Prices are net (before tax) in the tariff's currency; the tax is one line on the net subtotal.

Validation (each error names the field as the user wrote it, e.g. ``elements[1].components[0].price``):

* the currency is a known ISO 4217 code (``currencies.MINOR_UNITS``), the time zone a known IANA
  zone (``zoneinfo``);
* prices are non-negative; flat fees, ``min_price``, ``max_price`` and ``idle_fee_cap`` are not
  more precise than the currency's minor unit, unit prices (per kWh, minute, hour) have at most 6
  decimals;
* ``start_time``/``end_time`` both or neither, not equal, and naive (local to the tariff's zone);
  min <= max for kWh, duration and price; ``grace_minutes`` only on idle components; a component
  type at most once per element;
* no **unreachable** element or component: restrictions that can never match (an empty list,
  ``min == max`` with max exclusive), or a component type already priced by an earlier element
  whose restrictions match whenever this one's do (an earlier element with no restrictions is the
  common case), so it can never be the first match;
* no **overlapping** elements: two elements with a component of the same type and identical
  restrictions.

A stay is checked for consistency: sessions inside the stay (from arrival; until departure when it
is known), a session's meter readings, energy-finished time and energy within the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal, NoReturn, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from cloud.pricing.currencies import MINOR_UNITS

ComponentType = Literal["energy", "charging_time", "parking_time", "flat", "idle"]
BayType = Literal["ev", "regular", "accessible"]
PowerClass = Literal["ac", "dc"]
Weekday = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]

DEFAULT_IDLE_GRACE_MINUTES = 10
"""GLOSSARY: idle-fee grace after energy finished."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


UNIT_PRICE_DECIMALS = 6
"""Unit prices (per kWh, minute, hour) may be finer than the currency's minor unit, up to this."""

WEEKDAYS: tuple[Weekday, ...] = get_args(Weekday)
_BAY_TYPES: frozenset[str] = frozenset(get_args(BayType))

Loc = tuple[str | int, ...]


def _fail(title: str, errors: Sequence[tuple[Loc, str, str, Any]]) -> NoReturn:
    """Raise one ValidationError whose errors carry the given locations (pydantic prefixes the
    location of the enclosing model, so a nested error reads ``elements.1.components.0.price``)."""
    raise ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError(kind, "{reason}", {"reason": reason}), loc=loc, input=value)
        for loc, kind, reason, value in errors
    ])


def decimals(value: Decimal) -> int:
    """Decimal places a value really has (trailing zeros do not count: 1.50 has 1)."""
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int), "finite decimals only"
    digit_list = list(digits)
    while exponent < 0 and len(digit_list) > 1 and digit_list[-1] == 0:
        digit_list.pop()
        exponent += 1
    if digit_list == [0]:
        return 0
    return max(0, -exponent)


@dataclass(frozen=True, slots=True)
class Conditions:
    """Restrictions as the engine evaluates them, at one moment: ``None`` means no condition;
    kWh and duration are half-open ranges ``[min, max)`` (OCPI: min inclusive, max exclusive);
    a list that names every value is no condition (``days_of_week`` with all seven days)."""

    bay_types: frozenset[str] | None
    power_classes: frozenset[str] | None
    window: tuple[time, time] | None
    days: frozenset[int] | None
    min_wh: Fraction | None
    max_wh: Fraction | None
    min_s: int | None
    max_s: int | None

    @property
    def unrestricted(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)

    def never(self) -> str | None:
        """Why these conditions can never hold, or None."""
        for name in ("bay_types", "power_classes", "days"):
            if getattr(self, name) == frozenset():
                return f"{name} is empty"
        if self.max_wh is not None and (self.min_wh or 0) >= self.max_wh:
            return "min_kwh is not below max_kwh (max is exclusive)"
        if self.max_s is not None and (self.min_s or 0) >= self.max_s:
            return "min_duration_minutes is not below max_duration_minutes (max is exclusive)"
        return None

    def matches(self, *, bay_type: str, power_class: str | None, local_time: time, weekday: int,
                known_wh: Fraction, elapsed_s: Fraction) -> bool:
        if self.bay_types is not None and bay_type not in self.bay_types:
            return False
        if self.power_classes is not None and power_class not in self.power_classes:
            return False
        if self.window is not None:
            start, end = self.window
            inside = start <= local_time < end if start < end else (local_time >= start or local_time < end)
            if not inside:
                return False
        if self.days is not None and weekday not in self.days:
            return False
        if self.min_wh is not None and known_wh < self.min_wh:
            return False
        if self.max_wh is not None and known_wh >= self.max_wh:
            return False
        if self.min_s is not None and elapsed_s < self.min_s:
            return False
        return not (self.max_s is not None and elapsed_s >= self.max_s)

    def covers(self, other: Conditions) -> bool:
        """True when these conditions hold at every moment ``other`` holds (so an element with
        these conditions, placed first, always wins over one with ``other``)."""
        for mine, theirs in ((self.bay_types, other.bay_types), (self.power_classes, other.power_classes),
                             (self.days, other.days)):
            if mine is not None and (theirs is None or not theirs <= mine):
                return False
        if not _range_covers(self.min_wh, self.max_wh, other.min_wh, other.max_wh):
            return False
        if not _range_covers(self.min_s, self.max_s, other.min_s, other.max_s):
            return False
        if self.window is None:
            return True
        if other.window is None:
            return False
        mine_segments = _segments(self.window)
        return all(any(a <= oa and ob <= b for a, b in mine_segments) for oa, ob in _segments(other.window))


def _range_covers(lo: Fraction | int | None, hi: Fraction | int | None,
                  other_lo: Fraction | int | None, other_hi: Fraction | int | None) -> bool:
    if lo is not None and (other_lo is None or other_lo < lo):
        return False
    return hi is None or (other_hi is not None and other_hi <= hi)


def _micros(value: time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _segments(window: tuple[time, time]) -> list[tuple[int, int]]:
    start, end = _micros(window[0]), _micros(window[1])
    day = 86_400 * 1_000_000
    return [(start, end)] if start < end else [(start, day), (0, end)]


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


class PriceComponent(_Model):
    type: ComponentType
    price: Decimal = Field(description="net, in the tariff's currency: per kWh (energy), per minute (charging_time, "
                           "idle), per hour (parking_time), per stay (flat)")
    step_size: int = Field(default=1, ge=1, description="billing unit: Wh for energy, seconds for times (rounded up "
                           "to whole steps); ignored for flat")
    grace_minutes: int | None = Field(default=None, ge=0, description="idle only: free minutes after energy finished "
                                      f"(default {DEFAULT_IDLE_GRACE_MINUTES})")

    @field_validator("price")
    @classmethod
    def _price(cls, value: Decimal) -> Decimal:
        if value < 0:
            raise ValueError("must not be negative")
        if decimals(value) > UNIT_PRICE_DECIMALS:
            raise ValueError(f"has more than {UNIT_PRICE_DECIMALS} decimals")
        return value

    @model_validator(mode="after")
    def _grace_only_for_idle(self) -> PriceComponent:
        if self.grace_minutes is not None and self.type != "idle":
            _fail("PriceComponent", [(("grace_minutes",), "grace_not_idle",
                                      "only an idle component has a grace period", self.grace_minutes)])
        return self

    @property
    def grace_s(self) -> int:
        """Idle: the free seconds after idle begins."""
        minutes = DEFAULT_IDLE_GRACE_MINUTES if self.grace_minutes is None else self.grace_minutes
        return minutes * 60


class Restrictions(_Model):
    bay_types: list[BayType] | None = None
    power_classes: list[PowerClass] | None = None
    start_time: time | None = Field(default=None, description="local time of day the element starts to apply")
    end_time: time | None = Field(default=None, description="local time of day it stops (before start: across "
                                  "midnight)")
    days_of_week: list[Weekday] | None = None
    min_kwh: Decimal | None = Field(default=None, ge=0)
    max_kwh: Decimal | None = Field(default=None, ge=0)
    min_duration_minutes: int | None = Field(default=None, ge=0)
    max_duration_minutes: int | None = Field(default=None, ge=0)

    @field_validator("start_time", "end_time")
    @classmethod
    def _naive(cls, value: time | None) -> time | None:
        if value is not None and value.tzinfo is not None:
            raise ValueError("must be a local time of day without an offset (the tariff's time_zone applies)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Restrictions:
        errors: list[tuple[Loc, str, str, Any]] = []
        if (self.start_time is None) != (self.end_time is None):
            missing = "end_time" if self.end_time is None else "start_time"
            errors.append(((missing,), "time_of_day_pair", "start_time and end_time go together: both or neither",
                           None))
        elif self.start_time is not None and self.start_time == self.end_time:
            errors.append((("end_time",), "time_of_day_empty", "must differ from start_time", self.end_time))
        for low, high in (("min_kwh", "max_kwh"), ("min_duration_minutes", "max_duration_minutes")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                errors.append(((high,), "min_above_max", f"must not be below {low}", hi))
        if errors:
            _fail("Restrictions", errors)
        return self

    def conditions(self) -> Conditions:
        window = (self.start_time, self.end_time) if self.start_time is not None and self.end_time is not None \
            else None
        days = None if self.days_of_week is None else frozenset(WEEKDAYS.index(d) for d in self.days_of_week)
        bays = None if self.bay_types is None else frozenset(self.bay_types)
        return Conditions(
            bay_types=None if bays == _BAY_TYPES else bays,
            power_classes=None if self.power_classes is None else frozenset(self.power_classes),
            window=window,
            days=None if days is not None and len(days) == len(WEEKDAYS) else days,
            min_wh=None if not self.min_kwh else Fraction(self.min_kwh) * 1000,
            max_wh=None if self.max_kwh is None else Fraction(self.max_kwh) * 1000,
            min_s=None if not self.min_duration_minutes else self.min_duration_minutes * 60,
            max_s=None if self.max_duration_minutes is None else self.max_duration_minutes * 60,
        )


class TariffElement(_Model):
    components: list[PriceComponent] = Field(min_length=1)
    restrictions: Restrictions = Field(default_factory=Restrictions)

    @model_validator(mode="after")
    def _one_component_per_type(self) -> TariffElement:
        seen: set[str] = set()
        errors: list[tuple[Loc, str, str, Any]] = []
        for k, component in enumerate(self.components):
            if component.type in seen:
                errors.append((("components", k, "type"), "tariff_component_unreachable",
                               f"a second {component.type} component in the same element can never apply",
                               component.type))
            seen.add(component.type)
        if errors:
            _fail("TariffElement", errors)
        return self

    def component(self, kind: str) -> PriceComponent | None:
        return next((c for c in self.components if c.type == kind), None)


class Tariff(_Model):
    site_id: str = Field(min_length=1, max_length=64)
    currency: str = Field(description="ISO 4217 code, e.g. EUR")
    tax_rate: Decimal = Field(ge=0, le=1, description="e.g. 0.19 for 19 %")
    time_zone: str = Field(description="IANA time zone of the site, e.g. Europe/Berlin")
    elements: list[TariffElement] = Field(min_length=1)
    min_price: Decimal | None = Field(default=None, ge=0, description="net minimum per stay")
    max_price: Decimal | None = Field(default=None, ge=0, description="net maximum per stay")
    idle_fee_cap: Decimal | None = Field(default=None, ge=0, description="net maximum of the idle fee per stay")

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value not in MINOR_UNITS:
            raise ValueError(f"{value!r} is not a known ISO 4217 currency code (e.g. EUR, CHF, JPY)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"{value!r} is not a known IANA time zone (e.g. Europe/Berlin)") from None
        return value

    @property
    def minor_unit(self) -> int:
        """Decimals of the currency's minor unit (EUR 2, JPY 0, KWD 3)."""
        return MINOR_UNITS[self.currency]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @model_validator(mode="after")
    def _consistent(self) -> Tariff:
        errors: list[tuple[Loc, str, str, Any]] = []
        minor = self.minor_unit
        money_precision = f"is more precise than the {self.currency} minor unit ({minor} decimals)"
        for name in ("min_price", "max_price", "idle_fee_cap"):
            value = getattr(self, name)
            if value is not None and decimals(value) > minor:
                errors.append(((name,), "money_too_precise", money_precision, value))
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            errors.append((("max_price",), "min_above_max", "must not be below min_price", self.max_price))
        conditions = [element.restrictions.conditions() for element in self.elements]
        for i, element in enumerate(self.elements):
            for k, component in enumerate(element.components):
                if component.type == "flat" and decimals(component.price) > minor:
                    errors.append((("elements", i, "components", k, "price"), "money_too_precise",
                                   f"a flat fee {money_precision}", component.price))
            errors.extend(self._reachability(i, conditions))
        if errors:
            _fail("Tariff", errors)
        return self

    def _reachability(self, i: int, conditions: list[Conditions]) -> list[tuple[Loc, str, str, Any]]:
        element, mine = self.elements[i], conditions[i]
        never = mine.never()
        if never is not None:
            return [(("elements", i, "restrictions"), "tariff_element_unreachable",
                     f"unreachable: its restrictions can never match ({never})", None)]
        shadowed: list[tuple[int, str, str]] = []  # (component index, kind, reason)
        for k, component in enumerate(element.components):
            for j in range(i):
                if self.elements[j].component(component.type) is None or not conditions[j].covers(mine):
                    continue
                if conditions[j] == mine:
                    shadowed.append((k, "tariff_elements_overlap", f"overlaps elements[{j}]: both have "
                                     f"{_a(component.type)} component and identical restrictions"))
                elif conditions[j].unrestricted:
                    shadowed.append((k, "tariff_element_unreachable", f"unreachable: elements[{j}] has "
                                     f"{_a(component.type)} component and no restrictions, so it always applies first"))
                else:
                    shadowed.append((k, "tariff_element_unreachable", f"unreachable: elements[{j}] has "
                                     f"{_a(component.type)} component and matches whenever this element does"))
                break
        if not shadowed:
            return []
        if len(shadowed) == len(element.components):
            kinds = {kind for _, kind, _ in shadowed}
            kind = "tariff_elements_overlap" if kinds == {"tariff_elements_overlap"} else "tariff_element_unreachable"
            return [(("elements", i), kind, "; ".join(reason for _, _, reason in shadowed), None)]
        return [(("elements", i, "components", k), kind, reason, None) for k, kind, reason in shadowed]


class SessionUsage(_Model):
    """One charging session of the stay."""

    power_class: PowerClass
    started_at: AwareDatetime
    stopped_at: AwareDatetime
    meter: list[tuple[AwareDatetime, int]] = Field(
        default_factory=list, description="energy delivered so far (Wh, cumulative, non-decreasing) at moments of "
        "the session; empty: delivered evenly from 0 to energy_wh")
    energy_wh: int = Field(ge=0, description="energy delivered in all")
    energy_finished_at: AwareDatetime | None = Field(
        default=None, description="when the vehicle stopped drawing while still plugged in (GLOSSARY: energy finished)")

    @model_validator(mode="after")
    def _consistent(self) -> SessionUsage:
        errors: list[tuple[Loc, str, str, Any]] = []
        start, stop = self.started_at, self.stopped_at
        if stop < start:
            _fail("SessionUsage", [(("stopped_at",), "session_order", "must not be before started_at", stop)])
        if self.energy_finished_at is not None and not start <= self.energy_finished_at <= stop:
            errors.append((("energy_finished_at",), "session_order", "must be within the session (started_at to "
                           "stopped_at)", self.energy_finished_at))
        if stop == start and self.energy_wh:
            errors.append((("energy_wh",), "session_energy", "a session of no duration delivers no energy",
                           self.energy_wh))
        previous: tuple[datetime, int] | None = None
        for n, (at, wh) in enumerate(self.meter):
            if not start <= at <= stop:
                errors.append((("meter", n, 0), "meter_reading", "must be within the session (started_at to "
                               "stopped_at)", at))
            elif wh < 0 or wh > self.energy_wh:
                errors.append((("meter", n, 1), "meter_reading", "must be between 0 and energy_wh", wh))
            elif at == start and wh != 0:
                errors.append((("meter", n, 1), "meter_reading", "must be 0 at started_at", wh))
            elif at == stop and wh != self.energy_wh:
                errors.append((("meter", n, 1), "meter_reading", "must equal energy_wh at stopped_at", wh))
            elif previous is not None and at < previous[0]:
                errors.append((("meter", n, 0), "meter_reading", "readings must be in time order", at))
            elif previous is not None and (wh < previous[1] or (at == previous[0] and wh != previous[1])):
                errors.append((("meter", n, 1), "meter_reading", "cumulative energy must not decrease", wh))
            previous = (at, wh)
        if errors:
            _fail("SessionUsage", errors)
        return self


class Stay(_Model):
    """A stay in a bay, from arrival to departure, with its charging sessions."""

    bay_type: BayType
    arrived_at: AwareDatetime
    departed_at: AwareDatetime | None = Field(description="None: the bay's sensor is unknown; idle then ends at the "
                                              "last session's end")
    sessions: list[SessionUsage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Stay:
        errors: list[tuple[Loc, str, str, Any]] = []
        if self.departed_at is not None and self.departed_at < self.arrived_at:
            _fail("Stay", [(("departed_at",), "stay_order", "must not be before arrived_at", self.departed_at)])
        for n, session in enumerate(self.sessions):
            if session.started_at < self.arrived_at:
                errors.append((("sessions", n, "started_at"), "session_outside_stay", "must not be before the "
                               "stay's arrived_at", session.started_at))
            if self.departed_at is not None and session.stopped_at > self.departed_at:
                errors.append((("sessions", n, "stopped_at"), "session_outside_stay", "must not be after the "
                               "stay's departed_at", session.stopped_at))
        if errors:
            _fail("Stay", errors)
        return self

    @property
    def ends_at(self) -> datetime:
        """The stay's end: departure, or (sensor unknown) the last session's end, or arrival."""
        if self.departed_at is not None:
            return self.departed_at
        return max([self.arrived_at, *(s.stopped_at for s in self.sessions)])


class InvoiceLine(_Model):
    type: ComponentType | Literal["minimum", "maximum", "tax"]
    description: str
    quantity: Decimal = Field(description="kWh, minutes, hours or 1, after steps")
    unit: Literal["kWh", "min", "h", "stay", "%"]
    unit_price: Decimal
    amount: Decimal = Field(description="rounded once, half-up to the currency's minor unit")
    period_start: datetime | None = None
    period_end: datetime | None = None


class Invoice(_Model):
    currency: str
    lines: list[InvoiceLine]
    subtotal: Decimal = Field(description="net: the sum of the lines before tax")
    tax: Decimal
    total: Decimal = Field(description="subtotal + tax")
