"""Energy finished (GLOSSARY): SuspendedEV or Finishing, or under 100 W for 5 minutes while nothing holds
the car at 0 A; SuspendedEVSE never. And a meter that goes backwards is kept out of the energy figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.charging.domain import LOW_POWER_SECONDS, Session, Station, note_meter, note_status, profile_limit

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def running() -> Session:
    session = Session.new("site-1", 7, "CP1", T0)
    session.started_at, session.meter_start_wh, session.meter_last_wh, session.connector_id = T0, 1_000, 1_000, 1
    return session


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_the_low_power_window_is_five_minutes() -> None:
    assert LOW_POWER_SECONDS == 300


def test_under_100_w_for_five_minutes_finishes_the_energy_at_the_start_of_the_low_draw() -> None:
    session = running()
    assert not note_meter(session, 5_000, 7_400.0, minutes(10), held_at_zero=False)
    assert not note_meter(session, 5_100, 60.0, minutes(11), held_at_zero=False)
    assert not note_meter(session, 5_101, 40.0, minutes(15.9), held_at_zero=False)
    assert note_meter(session, 5_102, 0.0, minutes(16), held_at_zero=False)
    assert session.energy_finished_at == minutes(11)
    assert not note_meter(session, 5_102, 0.0, minutes(30), held_at_zero=False)  # once


def test_a_draw_of_100_w_or_more_starts_the_window_again() -> None:
    session = running()
    note_meter(session, 5_000, 50.0, minutes(0), held_at_zero=False)
    note_meter(session, 5_010, 100.0, minutes(4), held_at_zero=False)
    assert not note_meter(session, 5_011, 50.0, minutes(6), held_at_zero=False)
    assert not note_meter(session, 5_012, 50.0, minutes(10.9), held_at_zero=False)
    assert note_meter(session, 5_013, 50.0, minutes(11), held_at_zero=False)
    assert session.energy_finished_at == minutes(6)


def test_a_car_held_at_0_a_by_the_load_manager_is_never_energy_finished() -> None:
    session = running()
    for n in range(0, 60, 1):
        assert not note_meter(session, 5_000, 0.0, minutes(n), held_at_zero=True)
    assert session.energy_finished_at is None
    # released again: the window starts when the hold ends, not before
    assert not note_meter(session, 5_000, 0.0, minutes(60), held_at_zero=False)
    assert not note_meter(session, 5_000, 0.0, minutes(64), held_at_zero=False)
    assert note_meter(session, 5_000, 0.0, minutes(65), held_at_zero=False)
    assert session.energy_finished_at == minutes(60)


def test_suspended_ev_and_finishing_finish_the_energy_at_once_suspended_evse_never() -> None:
    for status, trigger in (("SuspendedEV", "suspended_ev"), ("Finishing", "finishing")):
        session = running()
        assert note_status(session, status, minutes(3)) == trigger
        assert session.energy_finished_at == minutes(3)
        assert note_status(session, status, minutes(4)) is None  # once per session
    held = running()
    assert note_status(held, "SuspendedEVSE", minutes(3)) is None
    assert held.energy_finished_at is None


def test_suspended_evse_restarts_the_low_power_clock() -> None:
    session = running()
    note_meter(session, 5_000, 0.0, minutes(0), held_at_zero=False)
    note_status(session, "SuspendedEVSE", minutes(2))
    assert not note_meter(session, 5_000, 0.0, minutes(5), held_at_zero=False)
    assert session.energy_finished_at is None


def test_a_completed_session_is_never_energy_finished() -> None:
    session = running()
    session.status = "completed"
    assert note_status(session, "Finishing", minutes(1)) is None
    assert not note_meter(session, 5_000, 0.0, minutes(10), held_at_zero=False)


def test_a_meter_value_that_goes_backwards_is_kept_out_of_the_energy_and_flagged() -> None:
    session = running()
    note_meter(session, 4_000, 7_000.0, minutes(5), held_at_zero=False)
    assert session.energy_wh == 3_000
    note_meter(session, 2_500, 7_000.0, minutes(6), held_at_zero=False)
    assert (session.energy_wh, session.meter_last_wh, session.meter_backwards) == (3_000, 4_000, 1)
    note_meter(session, 4_500, 7_000.0, minutes(7), held_at_zero=False)
    assert (session.energy_wh, session.meter_backwards) == (3_500, 1)


def test_a_profile_at_0_of_the_connector_or_of_the_whole_charger_holds_the_car() -> None:
    station = Station("site-1", "CP1", T0)
    station.apply_inventory(22_000, 2, T0)
    assert not station.held_at_zero(1)
    station.apply_profile(1, 0.0)
    assert station.held_at_zero(1) and not station.held_at_zero(2)
    station.apply_profile(1, 16.0)
    station.apply_profile(0, 0.0)
    assert station.held_at_zero(1) and station.held_at_zero(2)


def test_the_limit_of_a_set_charging_profile_request_is_its_first_period() -> None:
    request = {"connectorId": 1, "csChargingProfiles": {"chargingSchedule": {
        "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0}]}}}
    assert profile_limit(request) == 0.0
    assert profile_limit({"connectorId": 1}) is None
