"""Bay usage rules: charging, idle (occupied with no session), overstay (occupied after it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.bayusage import BayUsageTracker, BayUse, usage_of

T0 = datetime(2026, 1, 1, 8, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def drained(tracker: BayUsageTracker) -> list[tuple[str, str, datetime, int | None]]:
    out = []
    while not tracker._queue.empty():
        usage = tracker._queue.get_nowait()
        out.append((usage.bay_id, usage.state, usage.since, usage.transaction_id))
    return out


def test_a_session_in_progress_is_charging_whatever_the_sensor_says() -> None:
    for occupancy in ("occupied", "free", "unknown"):
        bay = BayUse("B1", "CP-1", 1, occupancy=occupancy, occupancy_since=at(0), session=7, session_since=at(1))
        assert usage_of(bay, at(2)) == ("charging", at(1), 7)


def test_the_next_car_is_idle_not_overstaying_the_previous_car_s_session() -> None:
    tracker = BayUsageTracker([("B1", "CP-1", 1)])
    tracker.bay_changed("B1", "occupied", at(0))
    tracker.session_started("CP-1", 1, 3, at(1))
    tracker.session_stopped("CP-1", 1, 3, at(5))
    tracker.bay_changed("B1", "free", at(6))
    tracker.bay_changed("B1", "occupied", at(10))
    assert drained(tracker)[-1] == ("B1", "blocked", at(10), None)


def test_a_session_that_ends_while_the_bay_reads_free_does_not_make_the_next_car_overstay() -> None:
    tracker = BayUsageTracker([("B1", "CP-1", 1)])
    tracker.bay_changed("B1", "free", at(0))
    tracker.session_started("CP-1", 1, 3, at(1))  # the sensor missed the car
    tracker.session_stopped("CP-1", 1, 3, at(5))
    tracker.bay_changed("B1", "occupied", at(10))
    assert drained(tracker)[-1] == ("B1", "blocked", at(10), None)


def test_overstay_counts_from_the_end_even_when_the_charger_clock_is_behind_the_sensor() -> None:
    tracker = BayUsageTracker([("B1", "CP-1", 1)])
    tracker.bay_changed("B1", "occupied", at(10))
    tracker.session_started("CP-1", 1, 3, at(9.9))  # charger clock a few seconds behind
    tracker.session_stopped("CP-1", 1, 3, at(40))
    assert drained(tracker)[-1] == ("B1", "idle", at(40), 3)


def test_occupied_after_its_session_ended_is_overstay_since_the_end() -> None:
    bay = BayUse("B1", "CP-1", 1, occupancy="occupied", occupancy_since=at(0), ended=3, ended_at=at(45))
    assert usage_of(bay, at(60)) == ("idle", at(45), 3)


def test_the_driver_s_day_arrive_idle_charge_overstay_leave() -> None:
    tracker = BayUsageTracker([("B1", "CP-1", 1), ("B2", "CP-2", 1)])
    tracker.bay_changed("B1", "occupied", at(0))
    tracker.session_started("CP-1", 1, 41, at(3))
    tracker.session_started("CP-9", 1, 42, at(3))  # a charger serving no bay: ignored
    tracker.session_stopped("CP-1", 1, 41, at(60))
    tracker.bay_changed("B1", "occupied", at(61))  # repeated: no new report
    tracker.bay_changed("B1", "free", at(90))
    tracker.bay_changed("B3", "occupied", at(91))  # a bay no charger serves: not tracked
    assert drained(tracker) == [
        ("B1", "blocked", at(0), None),
        ("B1", "charging", at(3), 41),
        ("B1", "idle", at(60), 41),
        ("B1", "free", at(90), None),
    ]
    tracker.bay_changed("B1", "occupied", at(100))  # the next car, which does not charge
    tracker.bay_changed("B1", "unknown", at(110))  # its sensor fails
    assert drained(tracker) == [("B1", "blocked", at(100), None), ("B1", "unknown", at(110), None)]
    assert [b["usage"] for b in tracker.usage()] == ["unknown", "unknown"]


def test_a_car_that_charges_twice_is_charging_then_overstays_the_second_session() -> None:
    tracker = BayUsageTracker([("B1", "CP-1", 1)])
    tracker.bay_changed("B1", "occupied", at(0))
    tracker.session_started("CP-1", 1, 1, at(1))
    tracker.session_stopped("CP-1", 1, 1, at(10))
    tracker.session_started("CP-1", 1, 2, at(11))
    tracker.session_stopped("CP-1", 1, 2, at(20))
    assert [(s, t) for _, s, _, t in drained(tracker)] == [
        ("blocked", None), ("charging", 1), ("idle", 1), ("charging", 2), ("idle", 2)]
