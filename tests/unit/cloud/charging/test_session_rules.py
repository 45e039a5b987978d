"""Charging rules: at-least-once, out-of-order session messages count once and never go negative."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.charging import domain
from cloud.charging.domain import Session, session_key
from mqtt import IdTagStatus, SessionMeter, SessionStarted, SessionStopped

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def started(meter_start: int = 1_000, at: datetime = T0, clock_suspect: bool = False) -> SessionStarted:
    return SessionStarted(charger_id="CP1", connector_id=1, transaction_id=7, id_tag="TAG",
                          id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=meter_start, started_at=at,
                          clock_suspect=clock_suspect)


def stopped(meter_stop: int = 8_500, energy: int = 7_500, at: datetime = T0 + timedelta(hours=1)) -> SessionStopped:
    return SessionStopped(charger_id="CP1", transaction_id=7, meter_stop_wh=meter_stop, energy_wh=energy,
                          stopped_at=at, reason="Local")


def test_a_session_completes_with_the_edges_energy() -> None:
    session = Session.new("site", 7, "CP1", T0)
    session.apply_started(started(), T0)
    assert session.apply_stopped(stopped(), T0)
    assert session.status == domain.COMPLETED
    assert session.energy_wh == 7_500
    assert session.duration_seconds() == 3_600


def test_a_repeated_stop_is_not_a_second_completion() -> None:
    session = Session.new("site", 7, "CP1", T0)
    session.apply_started(started(), T0)
    assert session.apply_stopped(stopped(), T0)
    assert not session.apply_stopped(stopped(energy=9_999), T0)
    assert session.energy_wh == 7_500


def test_a_stop_before_its_start_completes_and_the_late_start_does_not_reopen_it() -> None:
    session = Session.new("site", 7, "CP1", T0)
    assert session.apply_stopped(stopped(), T0)
    session.apply_started(started(), T0)
    assert session.status == domain.COMPLETED
    assert session.energy_wh == 7_500
    assert session.id_tag == "TAG"


def test_meter_values_show_energy_so_far_but_never_after_completion() -> None:
    session = Session.new("site", 7, "CP1", T0)
    session.apply_started(started(meter_start=1_000), T0)
    meter = SessionMeter(charger_id="CP1", connector_id=1, transaction_id=7, energy_register_wh=4_000,
                         sampled_at=T0)
    assert session.apply_meter(meter, T0)
    assert session.energy_wh == 3_000
    session.apply_stopped(stopped(), T0)
    assert not session.apply_meter(meter, T0)
    assert session.energy_wh == 7_500


def test_a_meter_below_the_start_reading_shows_zero_not_negative_energy() -> None:
    session = Session.new("site", 7, "CP1", T0)
    session.apply_started(started(meter_start=50_000), T0)
    session.apply_meter(SessionMeter(charger_id="CP1", connector_id=1, transaction_id=7,
                                     energy_register_wh=10, sampled_at=T0), T0)
    assert session.energy_wh == 0


def test_a_1970_clock_gives_no_duration_rather_than_a_wrong_one() -> None:
    session = Session.new("site", 7, "CP1", T0)
    session.apply_started(started(at=datetime(1970, 1, 1, tzinfo=UTC), clock_suspect=True), T0)
    session.apply_stopped(stopped(), T0)
    assert session.duration_seconds() is None
    assert session.clock_suspect


def test_only_the_first_start_of_a_running_session_is_announced() -> None:
    session = Session.new("site", 7, "CP1", T0)
    assert session.apply_started(started(), T0)
    assert not session.apply_started(started(), T0)


def test_a_start_after_its_stop_is_not_announced() -> None:
    session = Session.new("site", 7, "CP1", T0)
    session.apply_stopped(stopped(), T0)
    assert not session.apply_started(started(), T0)


def test_a_session_is_keyed_by_its_site_and_transaction() -> None:
    assert Session.new("site-a", 7, "CP1", T0).id == session_key("site-a", "legacy", "CP1", 7)
    # opaque, and one per (site, store, charger, transaction): a new store or another charger is another session
    keys = {session_key(site, store, charger, 7) for site in ("site-a", "site-b") for store in ("legacy", "s1")
            for charger in ("CP1", "CP2")}
    assert len(keys) == 8 and all(k.startswith("cs_") and len(k) == 35 for k in keys)
    assert Session.new("site-a", 7, "CP1", T0, "s1").id == session_key("site-a", "s1", "CP1", 7)
    assert Session.new("site-a", 7, "CP1", T0).active
