"""The pure billing rules: amounts read from requests, tax shares, the stay the engine prices from
parking.released and charging.completed, test cards, document numbers, who may refund."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud import pricing
from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden
from cloud.payments import domain
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.payments.conftest import tariff

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "currency", "expected"), [
    ("12.5", "EUR", Decimal("12.50")), (3, "EUR", Decimal("3.00")), (Decimal("0.01"), "EUR", Decimal("0.01")),
    ("1000", "JPY", Decimal("1000")), ("1.234", "KWD", Decimal("1.234")),
])
def test_an_amount_is_read_exactly(value: object, currency: str, expected: Decimal) -> None:
    amount = domain.read_amount(value, currency)
    assert amount == expected and str(amount) == str(expected)


@pytest.mark.parametrize(("value", "currency", "message"), [
    ("-1", "EUR", "more than 0"), ("0", "EUR", "more than 0"), ("ten", "EUR", "decimal amount"),
    ("1.001", "EUR", "more precise"), ("1.5", "JPY", "more precise"), ("NaN", "EUR", "finite"),
    (True, "EUR", "decimal amount"), (1.5, "EUR", "decimal amount"), ("100000.01", "EUR", "at most"),
])
def test_a_bad_amount_names_the_field(value: object, currency: str, message: str) -> None:
    with pytest.raises(domain.InvalidAmount) as caught:
        domain.read_amount(value, currency)
    [(loc, text)] = caught.value.errors
    assert loc == ("amount",) and message in text


def test_an_unknown_currency_is_refused() -> None:
    with pytest.raises(domain.InvalidAmount, match="EUX"):
        domain.read_currency("EUX")


def test_minor_units_round_trip() -> None:
    assert domain.to_minor(Decimal("12.34"), "EUR") == 1234
    assert domain.from_minor(1234, "EUR") == Decimal("12.34")
    assert domain.to_minor(Decimal("500"), "JPY") == 500
    assert domain.from_minor(1234, "KWD") == Decimal("1.234")


def test_tax_is_split_out_of_a_gross_amount_half_up() -> None:
    assert domain.split_tax(5000, Decimal("0.19")) == (4202, 798)  # 50.00 x 0.19 / 1.19 = 7.983
    assert domain.split_tax(1190, Decimal("0.19")) == (1000, 190)
    assert domain.split_tax(1000, Decimal(0)) == (1000, 0)
    assert domain.share(1000, 5000, 798) == 160  # 798 / 5 = 159.6
    assert domain.share(5, 10, 1) == 1  # 0.5 rounds up


def test_the_stay_of_a_release_and_its_sessions() -> None:
    """A session that began before the stay's arrival (clocks) is kept within the stay."""
    released = {"arrived_at": T0.isoformat(), "departed_at": (T0 + timedelta(hours=2)).isoformat(),
                "bay_type": "ev", "sensor_known": True}
    session = {"started_at": (T0 - timedelta(minutes=1)).isoformat(),
               "stopped_at": (T0 + timedelta(hours=1)).isoformat(), "energy_wh": 7000, "power_class": None,
               "energy_finished_at": (T0 + timedelta(minutes=30)).isoformat()}
    stay = domain.stay_usage(released, [session])
    [usage] = stay.sessions
    assert (usage.started_at, usage.stopped_at, usage.power_class) == (T0, T0 + timedelta(hours=1), "ac")
    assert stay.departed_at == T0 + timedelta(hours=2)
    unknown = domain.stay_usage({**released, "sensor_known": False}, [session])
    assert unknown.departed_at is None and unknown.ends_at == T0 + timedelta(hours=1)
    never_started = domain.stay_usage(released, [{**session, "started_at": None}])
    assert never_started.sessions == []


def test_a_lone_session_is_an_ev_bay_from_its_start_to_its_end() -> None:
    stay = domain.lone_session_stay({"started_at": T0.isoformat(), "stopped_at": (T0 + timedelta(hours=1)).isoformat(),
                                     "energy_wh": 10_000, "power_class": "dc"})
    assert stay is not None and (stay.bay_type, stay.arrived_at, stay.departed_at) == ("ev", T0, None)
    invoice = pricing.price(tariff(), stay)  # energy 10 x 0.35 = 3.50 + flat 0.50 (parking is for regular bays)
    assert domain.components(invoice) == {"energy": Decimal("3.50"), "session_fee": Decimal("0.50")}
    assert domain.lone_session_stay({"started_at": None, "stopped_at": None}) is None


def test_sandbox_cards() -> None:
    assert domain.check_card_number("4242 4242 4242 4242") == "4242424242424242"
    for bad in ("4111111111111111", "12", "abcdabcdabcdabcd", 4242424242424242):
        with pytest.raises(domain.InvalidAmount):
            domain.check_card_number(bad)


def test_document_numbers() -> None:
    assert domain.document_number("site-1", "invoice", 42) == "site-1-INV-000042"
    assert domain.document_number("site-1", "credit_note", 7) == "site-1-CN-000007"


def test_who_may_refund_and_charge() -> None:
    for who in ("admin", "operator_1"):
        domain.check_may_refund(PRINCIPALS[who], "acc-driver-a", "site-1")
        domain.check_may_charge(PRINCIPALS[who], "site-1")
    with pytest.raises(Forbidden):
        domain.check_may_refund(PRINCIPALS["driver_a"], "acc-driver-a", "site-1")  # the payer
    with pytest.raises(Forbidden):
        domain.check_may_refund(PRINCIPALS["technician_1"], "acc-driver-a", "site-1")
    for who in ("driver_b", "operator_2"):
        with pytest.raises(NotFound):
            domain.check_may_refund(PRINCIPALS[who], "acc-driver-a", "site-1")
    with pytest.raises(NotFound):
        domain.check_may_charge(PRINCIPALS["operator_2"], "site-1")
    with pytest.raises(Forbidden):
        domain.check_may_charge(PRINCIPALS["driver_a"], None)
