"""The booking rules on their own: windows a lot accepts, which bay a reservation gets, when an
arrival fulfils a reservation, how long a stay overstayed, and what a charger answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden
from cloud.parking import booking
from cloud.parking.booking import InvalidField, Lot, Reservation
from tests.support.identity import PRINCIPALS

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # a Wednesday
HOUR = timedelta(hours=1)


def reservation(bay_id: str, start: datetime, hours: float = 1, status: str = "reserved") -> Reservation:
    return Reservation(reservation_id=f"r-{bay_id}-{start:%H%M}", site_id="s", bay_id=bay_id, slot_id="x",
                       bay_type="regular", vehicle_id="v", owner_id="o", starts_at=start,
                       ends_at=start + hours * HOUR, status=status, created_at=NOW, updated_at=NOW)


@pytest.mark.parametrize(("start", "end", "field"), [
    (NOW - HOUR, NOW, "starts_at"),
    (NOW + HOUR, NOW + HOUR, "ends_at"),
    (NOW + 2 * HOUR, NOW + HOUR, "ends_at"),
    (NOW + HOUR, NOW + 26 * HOUR, "ends_at"),
    (NOW + timedelta(days=31), NOW + timedelta(days=31, hours=1), "starts_at"),
])
def test_a_window_the_lot_does_not_take_names_its_field(start: datetime, end: datetime, field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        booking.check_window(Lot(site_id="s"), start, end, NOW)
    assert refused.value.field == field


def test_opening_hours_are_read_in_the_site_s_time_zone() -> None:
    lot = Lot(site_id="s", time_zone="Europe/Berlin", opening_hours={"wed": ["08:00", "20:00"]})
    booking.check_window(lot, NOW + HOUR, NOW + 2 * HOUR, NOW)  # 11:00-12:00 in Berlin
    with pytest.raises(InvalidField) as early:
        start = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)  # 07:30 in Berlin, before it opens
        booking.check_window(lot, start, start + HOUR, start - 2 * HOUR)
    assert early.value.field == "starts_at"
    with pytest.raises(InvalidField) as late:
        booking.check_window(lot, NOW + 9 * HOUR, NOW + 11 * HOUR, NOW)  # 18:00-20:00 UTC is 19:00-21:00
    assert late.value.field == "ends_at"
    with pytest.raises(InvalidField):
        booking.check_window(lot, NOW + 24 * HOUR, NOW + 25 * HOUR, NOW)  # Thursday: closed


def test_a_bay_is_taken_only_by_a_holding_reservation_overlapping_the_window() -> None:
    held = [reservation("A", NOW, 2), reservation("B", NOW, 2, status="cancelled")]
    assert booking.pick_bay(["A", "B"], held, NOW + HOUR, NOW + 3 * HOUR) == "B"
    assert booking.pick_bay(["A"], held, NOW + 2 * HOUR, NOW + 3 * HOUR) == "A", "adjacent windows do not overlap"
    assert booking.pick_bay(["A"], held, NOW - HOUR, NOW) == "A"
    assert booking.pick_bay(["A"], held, NOW - HOUR, NOW + timedelta(minutes=1)) is None


def test_an_arrival_fulfils_from_one_grace_before_the_start_to_one_after() -> None:
    lot = Lot(site_id="s", arrival_grace_minutes=15)
    r = reservation("A", NOW)
    assert [booking.fulfils(r, NOW + timedelta(minutes=m), lot) for m in (-16, -15, 0, 15, 16)] == [
        False, True, True, True, False]


def test_overstay_minutes_count_from_the_limit_and_any_part_of_a_minute_counts() -> None:
    lot = Lot(site_id="s")
    stay = booking.open_stay("s", "A", "regular", NOW, lot, reservation("A", NOW, 2), ("v", "o"), None, None)
    assert (stay.limit_at, stay.limit_kind) == (NOW + 2 * HOUR + timedelta(minutes=15), "reservation")
    booking.close_stay(stay, NOW + 2 * HOUR, "sensor")
    assert stay.overstay_minutes == 0
    late = booking.open_stay("s", "A", "regular", NOW, lot, None, (None, None), None, None)
    assert late.limit_kind == "max_stay"
    booking.close_stay(late, NOW + 24 * HOUR + timedelta(seconds=10), "sensor")
    assert late.overstay_minutes == 1
    booking.close_stay(late, NOW + 24 * HOUR + timedelta(minutes=90), "sensor")
    assert late.overstay_minutes == 90


def test_a_session_attributes_only_a_stay_nothing_attributed_yet() -> None:
    stay = booking.open_stay("s", "A", "ev", NOW, Lot(site_id="s"), None, (None, None), "CP-1", 1)
    assert booking.attribute(stay, "sess-1", "veh-1", "acc-1")
    assert booking.attribute(stay, "sess-2", "veh-2", "acc-2")
    assert (stay.vehicle_id, stay.session_ids) == ("veh-1", ["sess-1", "sess-2"])
    assert not booking.attribute(stay, "sess-2", "veh-2", "acc-2"), "a redelivered session changes nothing"


def test_the_charger_s_answer_is_read_from_the_edge_s_result() -> None:
    data = {"action": "ReserveNow", "response": {"kind": "result", "payload": {"status": "Occupied"}}}
    assert booking.charger_answer("charger answered Occupied", data, "rejected") == "Occupied"
    assert booking.charger_answer("charger answered Faulted", {}, "rejected") == "Faulted"
    assert booking.charger_answer("expired at …", {}, "expired") == "expired"


def test_only_the_site_s_operators_and_admins_configure_it() -> None:
    booking.check_may_configure(PRINCIPALS["operator_1"], "site-1")
    booking.check_may_configure(PRINCIPALS["admin"], "site-1")
    for who, error in (("technician_1", Forbidden), ("operator_2", NotFound), ("driver_a", Forbidden)):
        with pytest.raises(error):
            booking.check_may_configure(PRINCIPALS[who], "site-1")


def test_a_lot_configuration_out_of_bounds_names_its_field() -> None:
    for change, field in (({"time_zone": "Mars/Olympus"}, "time_zone"), ({"max_stay_minutes": 5}, "max_stay_minutes"),
                          ({"opening_hours": {"funday": ["08:00", "20:00"]}}, "opening_hours"),
                          ({"opening_hours": {"mon": ["20:00", "08:00"]}}, "opening_hours.mon"),
                          ({"reservable_types": ["garage"]}, "reservable_types")):
        with pytest.raises(InvalidField) as refused:
            booking.check_lot(Lot(site_id="s", **change))  # type: ignore[arg-type]
        assert refused.value.field == field
