"""Tariff validation (issue 16, "Bad input"): overlapping or unreachable elements, negative or
over-precise prices, an unknown currency or time zone, each a ``pydantic.ValidationError`` whose
error location names the field as the operator wrote it (``elements[1].components[0].price``).

Tariffs are validated from JSON-like dicts, as the payment service's API receives them.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from cloud.pricing import SessionUsage, Stay, Tariff
from cloud.pricing.currencies import MINOR_UNITS

T0 = datetime(2024, 5, 14, 10, tzinfo=UTC)


def body(*elements: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"site_id": "site-1", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
            "elements": list(elements) or [{"components": [{"type": "energy", "price": "0.35"}]}]} | fields


def el(*components: tuple[str, str] | dict[str, Any], **restrictions: Any) -> dict[str, Any]:
    parts = [c if isinstance(c, dict) else {"type": c[0], "price": c[1]} for c in components]
    return {"components": parts, "restrictions": restrictions}


DAY = {"start_time": "06:00", "end_time": "22:00"}
NIGHT = {"start_time": "22:00", "end_time": "06:00"}

BAD = [
    # (name, tariff, location of the error, error type)
    ("unknown currency", body(currency="EUX"), ("currency",), "value_error"),
    ("currency in lower case", body(currency="eur"), ("currency",), "value_error"),
    ("unknown time zone", body(time_zone="Europe/Atlantis"), ("time_zone",), "value_error"),
    ("a path for a time zone", body(time_zone="../../etc/passwd"), ("time_zone",), "value_error"),
    ("an offset for a time zone", body(time_zone="+01:00"), ("time_zone",), "value_error"),
    ("negative unit price", body(el(("energy", "0.35")), el(("parking_time", "-1.00"), bay_types=["regular"])),
     ("elements", 1, "components", 0, "price"), "value_error"),
    ("unit price with 7 decimals", body(el(("energy", "0.1234567"))),
     ("elements", 0, "components", 0, "price"), "value_error"),
    ("flat fee finer than the cent", body(el(("energy", "0.35"), ("flat", "0.505"))),
     ("elements", 0, "components", 1, "price"), "money_too_precise"),
    ("flat fee finer than the yen", body(el(("flat", "1.5")), currency="JPY"),
     ("elements", 0, "components", 0, "price"), "money_too_precise"),
    ("minimum price finer than the cent", body(min_price="1.001"), ("min_price",), "money_too_precise"),
    ("maximum price finer than the cent", body(max_price="9.999"), ("max_price",), "money_too_precise"),
    ("idle cap finer than the fils", body(idle_fee_cap="1.0001", currency="KWD"), ("idle_fee_cap",),
     "money_too_precise"),
    ("negative minimum price", body(min_price="-1"), ("min_price",), "greater_than_equal"),
    ("minimum above maximum", body(min_price="10", max_price="5"), ("max_price",), "min_above_max"),
    ("start_time without end_time", body(el(("energy", "0.2"), start_time="22:00")),
     ("elements", 0, "restrictions", "end_time"), "time_of_day_pair"),
    ("end_time without start_time", body(el(("energy", "0.2"), end_time="06:00")),
     ("elements", 0, "restrictions", "start_time"), "time_of_day_pair"),
    ("start_time equal to end_time", body(el(("energy", "0.2"), start_time="06:00", end_time="06:00")),
     ("elements", 0, "restrictions", "end_time"), "time_of_day_empty"),
    ("a time of day with an offset", body(el(("energy", "0.2"), start_time="06:00+01:00", end_time="07:00")),
     ("elements", 0, "restrictions", "start_time"), "value_error"),
    ("min kWh above max kWh", body(el(("energy", "0.2"), min_kwh="20", max_kwh="10")),
     ("elements", 0, "restrictions", "max_kwh"), "min_above_max"),
    ("min duration above max duration", body(el(("energy", "0.2"), min_duration_minutes=60,
                                                max_duration_minutes=30)),
     ("elements", 0, "restrictions", "max_duration_minutes"), "min_above_max"),
    ("grace on a component that is not idle", body(el({"type": "energy", "price": "0.2", "grace_minutes": 5})),
     ("elements", 0, "components", 0, "grace_minutes"), "grace_not_idle"),
    ("zero step size", body(el({"type": "energy", "price": "0.2", "step_size": 0})),
     ("elements", 0, "components", 0, "step_size"), "greater_than_equal"),
    ("one type twice in an element", body(el(("energy", "0.2"), ("energy", "0.3"))),
     ("elements", 0, "components", 1, "type"), "tariff_component_unreachable"),
    # unreachable: restrictions that never match
    ("an empty list of bay types", body(el(("energy", "0.2"), bay_types=[]), el(("energy", "0.3"))),
     ("elements", 0, "restrictions"), "tariff_element_unreachable"),
    ("min kWh equal to max kWh (max exclusive)", body(el(("energy", "0.2"), min_kwh="10", max_kwh="10")),
     ("elements", 0, "restrictions"), "tariff_element_unreachable"),
    ("max duration 0", body(el(("parking_time", "1"), max_duration_minutes=0), el(("energy", "0.3"))),
     ("elements", 0, "restrictions"), "tariff_element_unreachable"),
    # unreachable: an earlier element always wins
    ("after an element without restrictions", body(el(("energy", "0.4"), ("parking_time", "1")),
                                                  el(("energy", "0.2"), **NIGHT)),
     ("elements", 1), "tariff_element_unreachable"),
    ("after an element that matches whenever it does", body(el(("energy", "0.4"), bay_types=["ev"]),
                                                           el(("energy", "0.2"), bay_types=["ev"], **NIGHT)),
     ("elements", 1), "tariff_element_unreachable"),
    ("inside an earlier window", body(el(("energy", "0.4"), **NIGHT),
                                      el(("energy", "0.2"), start_time="23:00", end_time="01:00")),
     ("elements", 1), "tariff_element_unreachable"),
    ("all seven days are no restriction", body(
        el(("energy", "0.4"), days_of_week=["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY",
                                            "SUNDAY"]),
        el(("energy", "0.2"), days_of_week=["SUNDAY"])),
     ("elements", 1), "tariff_element_unreachable"),
    # overlapping: same type, identical restrictions
    ("two night elements with energy", body(el(("energy", "0.2"), **NIGHT), el(("energy", "0.3"), **NIGHT),
                                            el(("energy", "0.4"))),
     ("elements", 1), "tariff_elements_overlap"),
    ("identical restrictions written differently", body(el(("energy", "0.2"), bay_types=["ev", "regular"]),
                                                        el(("energy", "0.3"), bay_types=["regular", "ev"])),
     ("elements", 1), "tariff_elements_overlap"),
    ("a catch-all after a catch-all, with one more type", body(el(("energy", "0.35")),
                                                               el(("energy", "0.2"), ("idle", "0.1"))),
     ("elements", 1, "components", 0), "tariff_elements_overlap"),
    ("one overlapping component of two", body(el(("energy", "0.2"), **NIGHT),
                                              el(("parking_time", "1"), ("energy", "0.3"), **NIGHT)),
     ("elements", 1, "components", 1), "tariff_elements_overlap"),
]


@pytest.mark.parametrize(("name", "data", "loc", "kind"), BAD, ids=[row[0] for row in BAD])
def test_a_bad_tariff_names_the_field(name: str, data: dict[str, Any], loc: tuple[Any, ...], kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Tariff.model_validate(data)
    found = [(error["loc"], error["type"]) for error in caught.value.errors()]
    assert (loc, kind) in found, found
    assert len(found) == 1, found


def test_the_error_reads_as_the_field_and_says_why() -> None:
    with pytest.raises(ValidationError) as caught:
        Tariff.model_validate(body(el(("energy", "0.4"), **NIGHT), el(("energy", "0.3"), **NIGHT),
                                   el(("energy", "0.35"), ("flat", "0.001"))))
    text = str(caught.value)
    assert "elements.1\n" in text and "overlaps elements[0]: both have an energy component" in text
    assert "elements.2.components.1.price\n" in text and "EUR minor unit (2 decimals)" in text


def test_every_error_is_reported_at_once() -> None:
    data = body(el(("energy", "0.4")), el(("energy", "0.3"), **NIGHT), min_price="0.001", max_price="0.0001")
    with pytest.raises(ValidationError) as caught:
        Tariff.model_validate(data)
    assert {error["loc"] for error in caught.value.errors()} == {("min_price",), ("max_price",), ("elements", 1)}


GOOD = [
    ("day and night", body(el(("energy", "0.4"), **DAY), el(("energy", "0.2"), **NIGHT))),
    ("restricted before a catch-all", body(el(("energy", "0.6"), power_classes=["dc"]), el(("energy", "0.35")))),
    ("same restrictions, other types", body(el(("energy", "0.2"), **NIGHT), el(("parking_time", "1"), **NIGHT))),
    ("a catch-all that adds a type", body(el(("energy", "0.2"), **NIGHT), el(("energy", "0.35"), ("idle", "0.1")))),
    ("a wider window after a narrower one", body(el(("energy", "0.1"), start_time="23:00", end_time="01:00"),
                                                 el(("energy", "0.2"), **NIGHT))),
    ("kWh tiers", body(el(("energy", "0.2"), min_kwh="20"), el(("energy", "0.3"), min_kwh="10"),
                       el(("energy", "0.4")))),
    ("unit prices finer than the cent, 1.50 as precise as 1.5", body(
        el(("energy", "0.123456"), ("flat", "1.50")), min_price="5.000", max_price="50")),
    ("yen with decimals in unit prices", body(el(("energy", "35.5"), ("flat", "100")), currency="JPY")),
    ("three decimals in KWD", body(el(("flat", "0.125")), currency="KWD")),
]


@pytest.mark.parametrize(("name", "data"), GOOD, ids=[row[0] for row in GOOD])
def test_a_good_tariff_is_accepted(name: str, data: dict[str, Any]) -> None:
    tariff = Tariff.model_validate(copy.deepcopy(data))
    assert Tariff.model_validate(tariff.model_dump(mode="json")) == tariff  # survives the JSON round trip


def test_the_currency_table_has_the_common_codes_and_their_minor_units() -> None:
    expected = {"EUR": 2, "JPY": 0, "KWD": 3, "CHF": 2, "GBP": 2, "USD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
                "PLN": 2, "CZK": 2, "HUF": 2, "BHD": 3, "KRW": 0, "ISK": 0, "CAD": 2, "AUD": 2, "CNY": 2}
    assert {code: MINOR_UNITS[code] for code in expected} == expected
    assert all(len(code) == 3 and code.isupper() and unit in (0, 2, 3) for code, unit in MINOR_UNITS.items())


def usage(start: datetime, stop: datetime, wh: int = 1000, **fields: Any) -> dict[str, Any]:
    return {"power_class": "ac", "started_at": start, "stopped_at": stop, "energy_wh": wh} | fields


BAD_STAYS = [
    ("departure before arrival", {"departed_at": T0 - timedelta(minutes=1)}, ("departed_at",)),
    ("a session before arrival", {"sessions": [usage(T0 - timedelta(minutes=1), T0 + timedelta(minutes=5))]},
     ("sessions", 0, "started_at")),
    ("a session after departure", {"sessions": [usage(T0, T0 + timedelta(hours=3))]}, ("sessions", 0, "stopped_at")),
    ("a session that stops before it starts", {"sessions": [usage(T0 + timedelta(minutes=5), T0)]},
     ("sessions", 0, "stopped_at")),
    ("energy finished after the session", {"sessions": [usage(T0, T0 + timedelta(minutes=5),
                                                              energy_finished_at=T0 + timedelta(minutes=6))]},
     ("sessions", 0, "energy_finished_at")),
    ("energy in no time", {"sessions": [usage(T0, T0, wh=5)]}, ("sessions", 0, "energy_wh")),
    ("a reading outside the session", {"sessions": [usage(T0, T0 + timedelta(minutes=5),
                                                          meter=[(T0 + timedelta(minutes=6), 10)])]},
     ("sessions", 0, "meter", 0, 0)),
    ("readings that go down", {"sessions": [usage(T0, T0 + timedelta(minutes=5), meter=[
        (T0 + timedelta(minutes=1), 500), (T0 + timedelta(minutes=2), 400)])]}, ("sessions", 0, "meter", 1, 1)),
    ("readings out of time order", {"sessions": [usage(T0, T0 + timedelta(minutes=5), meter=[
        (T0 + timedelta(minutes=2), 400), (T0 + timedelta(minutes=1), 500)])]}, ("sessions", 0, "meter", 1, 0)),
    ("a reading above the session's energy", {"sessions": [usage(T0, T0 + timedelta(minutes=5), meter=[
        (T0 + timedelta(minutes=2), 1001)])]}, ("sessions", 0, "meter", 0, 1)),
    ("a last reading that is not the energy", {"sessions": [usage(T0, T0 + timedelta(minutes=5), meter=[
        (T0 + timedelta(minutes=5), 900)])]}, ("sessions", 0, "meter", 0, 1)),
]


@pytest.mark.parametrize(("name", "fields", "loc"), BAD_STAYS, ids=[row[0] for row in BAD_STAYS])
def test_an_inconsistent_stay_names_the_field(name: str, fields: dict[str, Any], loc: tuple[Any, ...]) -> None:
    data = {"bay_type": "ev", "arrived_at": T0, "departed_at": T0 + timedelta(hours=2)} | fields
    with pytest.raises(ValidationError) as caught:
        Stay.model_validate(data)
    assert [error["loc"] for error in caught.value.errors()] == [loc]


def test_a_consistent_stay_is_accepted() -> None:
    Stay(bay_type="ev", arrived_at=T0, departed_at=None, sessions=[SessionUsage(
        power_class="dc", started_at=T0, stopped_at=T0 + timedelta(minutes=30), energy_wh=20_000,
        energy_finished_at=T0 + timedelta(minutes=25),
        meter=[(T0, 0), (T0 + timedelta(minutes=10), 10_000), (T0 + timedelta(minutes=30), 20_000)])])
