"""The pricing engine, table-driven: every total is computed by hand in the row's comment.

Times are UTC unless a row says "local"; Europe/Berlin is UTC+1 in winter (CET) and UTC+2 in
summer (CEST); it changes on the last Sunday of March (02:00 -> 03:00 local) and of October
(03:00 -> 02:00 local). Tax is 0 unless a row says otherwise, so total = subtotal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

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

BERLIN = ZoneInfo("Europe/Berlin")
D = Decimal


def utc(day: int, hour: int, minute: int = 0, month: int = 5) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


def berlin(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def comp(kind: str, amount: str, **kwargs: Any) -> PriceComponent:
    return PriceComponent(type=kind, price=D(amount), **kwargs)  # type: ignore[arg-type]


def element(*components: PriceComponent, **restrictions: Any) -> TariffElement:
    return TariffElement(components=list(components), restrictions=Restrictions(**restrictions))


def tariff(*elements: TariffElement, currency: str = "EUR", tax: str = "0", zone: str = "Europe/Berlin",
           **kwargs: Any) -> Tariff:
    return Tariff(site_id="site-1", currency=currency, tax_rate=D(tax), time_zone=zone, elements=list(elements),
                  **{k: D(v) for k, v in kwargs.items()})


def session(start: datetime, stop: datetime, wh: int, cls: str = "ac", finished: datetime | None = None,
            meter: list[tuple[datetime, int]] | None = None) -> SessionUsage:
    return SessionUsage(power_class=cls, started_at=start, stopped_at=stop, energy_wh=wh,  # type: ignore[arg-type]
                        energy_finished_at=finished, meter=meter or [])


def stay(arrive: datetime, depart: datetime | None, *sessions: SessionUsage, bay: str = "ev") -> Stay:
    return Stay(bay_type=bay, arrived_at=arrive, departed_at=depart, sessions=list(sessions))  # type: ignore[arg-type]


# Energy 0.30/kWh and idle 0.50/min after the default 10 min grace.
IDLE = tariff(element(comp("energy", "0.30"), comp("idle", "0.50")))
IDLE_CAPPED = tariff(element(comp("energy", "0.30"), comp("idle", "0.50")), idle_fee_cap="10.00")
IDLE_NO_GRACE = tariff(element(comp("energy", "0.30"), comp("idle", "0.50", grace_minutes=0)))
# Charging time 0.10/min, idle 0.50/min after 10 min.
CHARGING = tariff(element(comp("charging_time", "0.10"), comp("idle", "0.50")))
# Energy at night (22:00-06:00 local) 0.20/kWh, otherwise 0.40/kWh.
NIGHT_ENERGY = tariff(element(comp("energy", "0.20"), start_time="22:00", end_time="06:00"),
                      element(comp("energy", "0.40")))
# Parking at night (00:00-06:00 local) 0.60/h, otherwise 1.20/h.
NIGHT_PARKING = tariff(element(comp("parking_time", "0.60"), start_time="00:00", end_time="06:00"),
                       element(comp("parking_time", "1.20")))
# Parking at weekends 0.50/h, on weekdays 08:00-18:00 local 2.00/h, otherwise 1.00/h.
WEEK = tariff(element(comp("parking_time", "0.50"), days_of_week=["SATURDAY", "SUNDAY"]),
              element(comp("parking_time", "2.00"), start_time="08:00", end_time="18:00"),
              element(comp("parking_time", "1.00")))
# DC energy 0.60/kWh, anything else 0.35/kWh; DC parking 3.00/h (no parking fee otherwise).
AC_DC = tariff(element(comp("energy", "0.60"), comp("parking_time", "3.00"), power_classes=["dc"]),
               element(comp("energy", "0.35")))
# Flat 1.50, energy 0.40/kWh, parking 1.00/h.
FLAT = tariff(element(comp("flat", "1.50"), comp("energy", "0.40"), comp("parking_time", "1.00")))
# Energy by the whole kWh, charging time 0.10/min by 5 minutes, parking 2.00/h by the quarter hour.
STEPS = tariff(element(comp("energy", "0.30", step_size=1000), comp("charging_time", "0.10", step_size=300),
                       comp("parking_time", "2.00", step_size=900)))
MINIMUM = tariff(element(comp("parking_time", "1.00")), min_price="5.00", tax="0.19")
MAXIMUM = tariff(element(comp("parking_time", "3.00")), max_price="20.00", tax="0.19")
# 0.125/kWh x 40 Wh = 0.005 and 0.0005/min x 10 min = 0.005: each line rounds on its own.
HALF_EUR = tariff(element(comp("energy", "0.125"), comp("charging_time", "0.0005")), tax="0.25")
# 35.5 JPY/kWh x 1 kWh = 35.5 and 101 JPY/h x 0.5 h = 50.5; 10 % tax.
HALF_JPY = tariff(element(comp("energy", "35.5"), comp("parking_time", "101")), currency="JPY", tax="0.10")
# 0.0125 KWD/kWh x 0.04 kWh = 0.0005 (three decimals).
HALF_KWD = tariff(element(comp("energy", "0.0125")), currency="KWD")
# After 10 kWh of the stay, energy costs 0.20/kWh instead of 0.40; the first hour parks free, then 2.00/h.
VOLUME = tariff(element(comp("energy", "0.20"), min_kwh="10"), element(comp("energy", "0.40")),
                element(comp("parking_time", "0"), max_duration_minutes=60), element(comp("parking_time", "2.00")))

# Charging time 0.10/min once the stay has 10 kWh, else 0.20/min; the first 45 minutes park free.
READ_ONLY = tariff(element(comp("charging_time", "0.10"), min_kwh="10"), element(comp("charging_time", "0.20")),
                   element(comp("parking_time", "0"), max_duration_minutes=45))


@dataclass(frozen=True)
class Row:
    name: str
    tariff: Tariff
    stay: Stay
    total: str
    amounts: dict[str, str] = field(default_factory=dict)
    """Sum of the line amounts per line type (tax included), when the row checks them."""


ROWS = [
    # --- idle ------------------------------------------------------------------------------------
    Row("idle inside the grace", IDLE, stay(utc(14, 10), utc(14, 11, 8), session(utc(14, 10), utc(14, 11), 20_000)),
        # 20 kWh x 0.30 = 6.00; idle 11:00-11:08 = 8 min, all inside the 10 min grace
        "6.00", {"energy": "6.00"}),
    Row("idle exactly the grace", IDLE, stay(utc(14, 10), utc(14, 11, 10),
                                             session(utc(14, 10), utc(14, 11), 20_000)),
        # 6.00; idle 10 min = the grace: nothing
        "6.00", {"energy": "6.00"}),
    Row("idle after the grace", IDLE, stay(utc(14, 10), utc(14, 11, 25), session(utc(14, 10), utc(14, 11), 20_000)),
        # 6.00 + (25 - 10) min x 0.50 = 6.00 + 7.50
        "13.50", {"energy": "6.00", "idle": "7.50"}),
    Row("energy finished, unplugged, still in the bay", IDLE,
        stay(utc(14, 10), utc(14, 11, 30), session(utc(14, 10), utc(14, 11), 20_000, finished=utc(14, 10, 40))),
        # idle from energy finished 10:40 to departure 11:30 = 50 min, unplugged at 11:00 or not;
        # 6.00 + (50 - 10) x 0.50 = 6.00 + 20.00
        "26.00", {"energy": "6.00", "idle": "20.00"}),
    Row("sensor unknown: idle ends at the session's end", IDLE,
        stay(utc(14, 10), None, session(utc(14, 10), utc(14, 11), 20_000, finished=utc(14, 10, 40))),
        # idle 10:40-11:00 = 20 min; 6.00 + (20 - 10) x 0.50 = 6.00 + 5.00
        "11.00", {"energy": "6.00", "idle": "5.00"}),
    Row("sensor unknown, no energy finished: no idle", IDLE,
        stay(utc(14, 10), None, session(utc(14, 10), utc(14, 11), 20_000)),
        "6.00", {"energy": "6.00"}),
    Row("the idle cap", IDLE_CAPPED, stay(utc(14, 10), utc(14, 12), session(utc(14, 10), utc(14, 11), 20_000)),
        # idle 60 - 10 = 50 min x 0.50 = 25.00, capped at 10.00; 6.00 + 10.00
        "16.00", {"energy": "6.00", "idle": "10.00"}),
    Row("no grace", IDLE_NO_GRACE, stay(utc(14, 10), utc(14, 11, 8), session(utc(14, 10), utc(14, 11), 20_000)),
        # 6.00 + 8 min x 0.50 = 6.00 + 4.00
        "10.00", {"energy": "6.00", "idle": "4.00"}),
    Row("sensor unknown, two sessions: idle ends at each session's end", IDLE,
        stay(utc(14, 10), None, session(utc(14, 10), utc(14, 10, 30), 5_000, finished=utc(14, 10, 10)),
             session(utc(14, 10, 50), utc(14, 11), 1_000)),
        # energy 6 kWh x 0.30 = 1.80; idle 10:10-10:30 = (20 - 10) min x 0.50 = 5.00; none between
        # the sessions (nobody knows whether the car was there) nor after the second
        "6.80", {"energy": "1.80", "idle": "5.00"}),
    Row("the idle cap over two idle periods", IDLE_CAPPED,
        stay(utc(14, 10), utc(14, 11, 30), session(utc(14, 10), utc(14, 10, 30), 5_000),
             session(utc(14, 10, 50), utc(14, 11), 1_000)),
        # energy 1.80; idle 5.00 + 10.00 (as the row below) = 15.00, capped at 10.00 for the stay
        "11.80", {"energy": "1.80", "idle": "10.00"}),
    Row("idle between two sessions, each period with its grace", IDLE,
        stay(utc(14, 10), utc(14, 11, 30), session(utc(14, 10), utc(14, 10, 30), 5_000),
             session(utc(14, 10, 50), utc(14, 11), 1_000)),
        # energy 6 kWh x 0.30 = 1.80; idle 10:30-10:50 = 20 - 10 = 10 min = 5.00,
        # 11:00-11:30 = 30 - 10 = 20 min = 10.00
        "16.80", {"energy": "1.80", "idle": "15.00"}),
    Row("charging time stops at energy finished, idle starts", CHARGING,
        stay(utc(14, 10), utc(14, 11), session(utc(14, 10), utc(14, 11), 20_000, finished=utc(14, 10, 40))),
        # charging 10:00-10:40 = 40 min x 0.10 = 4.00; idle 10:40-11:00 = (20 - 10) min x 0.50 = 5.00
        "9.00", {"charging_time": "4.00", "idle": "5.00"}),
    # --- midnight, daylight saving, time of day, weekday -----------------------------------------------
    Row("a session across midnight", NIGHT_ENERGY,
        stay(berlin(5, 14, 21), berlin(5, 15, 1), session(berlin(5, 14, 21), berlin(5, 15, 1), 40_000)),
        # 40 kWh evenly over 21:00-01:00 local = 10 kWh/h: 21-22 day 10 x 0.40 = 4.00; 22-01 night 30 x 0.20 = 6.00
        "10.00", {"energy": "10.00"}),
    Row("a night across the change to summer time", NIGHT_PARKING, stay(berlin(3, 30, 23), berlin(3, 31, 7)),
        # 23:00 CET (22:00Z) to 07:00 CEST (05:00Z) = 7 h real: 23-00 local 1 h x 1.20; 00-06 local
        # (23:00Z-04:00Z) = 5 h x 0.60 = 3.00; 06-07 local 1 h x 1.20; 1.20 + 3.00 + 1.20
        "5.40", {"parking_time": "5.40"}),
    Row("a night across the change to winter time", NIGHT_PARKING, stay(berlin(10, 26, 23), berlin(10, 27, 7)),
        # 23:00 CEST (21:00Z) to 07:00 CET (06:00Z) = 9 h real: 23-00 local 1.20; 00-06 local
        # (22:00Z-05:00Z) = 7 h x 0.60 = 4.20; 06-07 local 1.20; 1.20 + 4.20 + 1.20
        "6.60", {"parking_time": "6.60"}),
    Row("weekday peak, evening, weekend", WEEK, stay(berlin(5, 17, 16), berlin(5, 18, 2)),
        # Friday 16-18 local peak 2 h x 2.00 = 4.00; Friday 18-24 6 h x 1.00 = 6.00;
        # Saturday 00-02 2 h x 0.50 = 1.00
        "11.00", {"parking_time": "11.00"}),
    # --- AC and DC, zero energy, steps ------------------------------------------------------------
    Row("DC", AC_DC, stay(utc(14, 10), utc(14, 10, 30), session(utc(14, 10), utc(14, 10, 30), 20_000, cls="dc")),
        # 20 kWh x 0.60 = 12.00; parking with a DC session 0.5 h x 3.00 = 1.50
        "13.50", {"energy": "12.00", "parking_time": "1.50"}),
    Row("AC", AC_DC, stay(utc(14, 10), utc(14, 12), session(utc(14, 10), utc(14, 12), 20_000, cls="ac")),
        # 20 kWh x 0.35 = 7.00; no parking fee outside DC
        "7.00", {"energy": "7.00"}),
    Row("DC parking only from the DC session's start", AC_DC,
        stay(utc(14, 10), utc(14, 11), session(utc(14, 10, 30), utc(14, 11), 10_000, cls="dc")),
        # 10 kWh x 0.60 = 6.00; parking 10:30-11:00 (before: no session, no class) 0.5 h x 3.00 = 1.50
        "7.50", {"energy": "6.00", "parking_time": "1.50"}),
    Row("zero energy", FLAT, stay(utc(14, 10), utc(14, 12), session(utc(14, 10), utc(14, 12), 0)),
        # flat 1.50 + 0 kWh + 2 h x 1.00
        "3.50", {"flat": "1.50", "parking_time": "2.00"}),
    Row("no session at all", FLAT, stay(utc(14, 10), utc(14, 10, 30), bay="regular"),
        # flat 1.50 + 0.5 h x 1.00
        "2.00", {"flat": "1.50", "parking_time": "0.50"}),
    Row("step sizes", STEPS, stay(utc(14, 10), utc(14, 11, 1), session(utc(14, 10), utc(14, 11, 1), 10_200)),
        # 10.2 kWh -> 11 kWh x 0.30 = 3.30; 61 min charging -> 13 x 5 min = 65 min x 0.10 = 6.50;
        # 61 min parking -> 5 quarter hours = 1.25 h x 2.00 = 2.50
        "12.30", {"energy": "3.30", "charging_time": "6.50", "parking_time": "2.50"}),
    # --- minimum, maximum, restrictions on kWh and duration ----------------------------------------
    Row("minimum price", MINIMUM, stay(utc(14, 10), utc(14, 10, 30)),
        # 0.5 h x 1.00 = 0.50, lifted by 4.50 to 5.00; tax 19 % = 0.95
        "5.95", {"parking_time": "0.50", "minimum": "4.50", "tax": "0.95"}),
    Row("maximum price", MAXIMUM, stay(utc(14, 8), utc(14, 18)),
        # 10 h x 3.00 = 30.00, lowered by 10.00 to 20.00; tax 19 % = 3.80
        "23.80", {"parking_time": "30.00", "maximum": "-10.00", "tax": "3.80"}),
    Row("min kWh from the meter reading that reaches it; the first hour parks free", VOLUME,
        stay(utc(14, 10), utc(14, 13), session(utc(14, 10), utc(14, 11), 20_000,
                                               meter=[(utc(14, 10, 30), 10_000), (utc(14, 11), 20_000)])),
        # energy until the 10 kWh reading at 10:30 x 0.40 = 4.00, the next 10 kWh x 0.20 = 2.00;
        # parking 10:00-11:00 free, 11:00-13:00 2 h x 2.00 = 4.00
        "10.00", {"energy": "6.00", "parking_time": "4.00"}),
    Row("min kWh counts the energy read so far, not the energy between readings", READ_ONLY,
        stay(utc(14, 10), utc(14, 11), session(utc(14, 10), utc(14, 11), 20_000,
                                               meter=[(utc(14, 10, 20), 5_000), (utc(14, 10, 50), 18_000)])),
        # 10 kWh is first read at 10:50 (18 kWh; the car passed 10 kWh around 10:32, unread, and the
        # first 45 free minutes end at 10:45, which changes nothing): charging 10:00-10:50 50 min x
        # 0.20 = 10.00, 10:50-11:00 10 min x 0.10 = 1.00
        "11.00", {"charging_time": "11.00"}),
    # --- rounding half-up per line -----------------------------------------------------------------
    Row("EUR: each line rounds half-up on its own", HALF_EUR,
        stay(utc(14, 10), utc(14, 10, 10), session(utc(14, 10), utc(14, 10, 10), 40)),
        # 0.04 kWh x 0.125 = 0.005 -> 0.01; 10 min x 0.0005 = 0.005 -> 0.01; subtotal 0.02 (not
        # round(0.010) = 0.01); tax 0.02 x 25 % = 0.005 -> 0.01
        "0.03", {"energy": "0.01", "charging_time": "0.01", "tax": "0.01"}),
    Row("JPY: no decimals", HALF_JPY,
        stay(utc(14, 10), utc(14, 10, 30), session(utc(14, 10), utc(14, 10, 30), 1_000)),
        # 1 kWh x 35.5 = 35.5 -> 36; 0.5 h x 101 = 50.5 -> 51; subtotal 87; tax 8.7 -> 9
        "96", {"energy": "36", "parking_time": "51", "tax": "9"}),
    Row("KWD: three decimals", HALF_KWD,
        stay(utc(14, 10), utc(14, 10, 10), session(utc(14, 10), utc(14, 10, 10), 40)),
        # 0.04 kWh x 0.0125 = 0.0005 -> 0.001
        "0.001", {"energy": "0.001"}),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_the_invoice_total_is_the_hand_computed_one(row: Row) -> None:
    invoice = price(row.tariff, row.stay)
    assert invoice.total == D(row.total)
    assert str(invoice.total) == row.total  # exactly the currency's minor unit
    if row.amounts:
        sums: dict[str, Decimal] = {}
        for line in invoice.lines:
            sums[line.type] = sums.get(line.type, D(0)) + line.amount
        assert {kind: amount for kind, amount in sums.items() if amount} == \
            {kind: D(amount) for kind, amount in row.amounts.items()}
    assert invoice.subtotal + invoice.tax == invoice.total
    assert sum(line.amount for line in invoice.lines if line.type != "tax") == invoice.subtotal
    assert running_cost(row.tariff, row.stay, row.stay.ends_at) == invoice.total


# Energy 0.40/kWh, parking 1.00/h, at least 2.00 per stay.
METERED = tariff(element(comp("energy", "0.40"), comp("parking_time", "1.00")), min_price="2.00")
METERED_STAY = stay(utc(14, 10), utc(14, 12), session(utc(14, 10), utc(14, 11), 20_000,
                                                      meter=[(utc(14, 10, 30), 8_000), (utc(14, 11), 20_000)]))
RUNNING = [
    (utc(14, 9), "2.00"),  # before arrival: the minimum already
    (utc(14, 10), "2.00"),  # nothing yet: the minimum
    (utc(14, 10, 15), "2.00"),  # no reading yet: 0 kWh; parking 0.25 h = 0.25; the minimum
    (utc(14, 10, 30), "3.70"),  # the 8 kWh reading: 3.20; parking 0.50
    (utc(14, 10, 45), "3.95"),  # still 8 kWh known: 3.20; parking 0.75
    (utc(14, 11), "9.00"),  # 20 kWh: 8.00; parking 1.00
    (utc(14, 12), "10.00"),  # 8.00; parking 2.00: the invoice
    (utc(14, 13), "10.00"),  # after departure: the invoice
]


@pytest.mark.parametrize(("at", "total"), RUNNING, ids=[at.strftime("%H:%M") for at, _ in RUNNING])
def test_the_running_cost_follows_the_meter_from_the_minimum(at: datetime, total: str) -> None:
    assert running_cost(METERED, METERED_STAY, at) == D(total)


def test_the_running_cost_at_the_end_is_the_invoice() -> None:
    assert price(METERED, METERED_STAY).total == D("10.00")


ESTIMATES = [
    ("across midnight", NIGHT_ENERGY, "ac", berlin(5, 14, 21), berlin(5, 15, 1), "40",
     # as the session across midnight: 4.00 + 6.00
     "10.00"),
    ("DC", AC_DC, "dc", utc(14, 10), utc(14, 10, 30), "20",
     # 20 x 0.60 = 12.00; 0.5 h x 3.00 = 1.50
     "13.50"),
    ("min kWh reached halfway", VOLUME, "ac", utc(14, 10), utc(14, 11), "20",
     # 10 kWh by 10:30 x 0.40 = 4.00, then 10 kWh x 0.20 = 2.00; the hour parks free
     "6.00"),
    ("zero energy", FLAT, "ac", utc(14, 10), utc(14, 11, 30), "0",
     # 1.50 + 1.5 h x 1.00
     "3.00"),
    ("no idle in an estimate", IDLE_NO_GRACE, "ac", utc(14, 10), utc(14, 12), "10",
     # 10 x 0.30; the car leaves when the session ends
     "3.00"),
]


@pytest.mark.parametrize(("name", "rates", "cls", "arrive", "leave", "kwh", "total"), ESTIMATES,
                         ids=[row[0] for row in ESTIMATES])
def test_the_estimate_is_the_hand_computed_one(name: str, rates: Tariff, cls: str, arrive: datetime,
                                               leave: datetime, kwh: str, total: str) -> None:
    invoice = estimate(rates, bay_type="ev", power_class=cls, arrive=arrive, leave=leave,  # type: ignore[arg-type]
                       energy_kwh=D(kwh))
    assert invoice.total == D(total)


@pytest.mark.parametrize(("arrive", "leave", "kwh"), [
    (utc(14, 11), utc(14, 10), "1"),  # leaves before arriving
    (utc(14, 10), utc(14, 10), "1"),  # energy in no time
    (utc(14, 10), utc(14, 11), "-1"),  # negative energy
    (datetime(2024, 5, 14, 10), utc(14, 11), "1"),  # naive
    (utc(14, 10), utc(14, 11), "Infinity"),
    (utc(14, 10), utc(14, 11), "NaN"),
])
def test_an_impossible_estimate_is_a_value_error(arrive: datetime, leave: datetime, kwh: str) -> None:
    with pytest.raises(ValueError):
        estimate(FLAT, bay_type="ev", power_class="ac", arrive=arrive, leave=leave, energy_kwh=D(kwh))
