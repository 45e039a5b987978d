from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.sensors import BayChange, BayState, BayTracker

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds and the matching UTC wall time, advanced by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 100.0)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def tracker(clock: FakeClock, *bays: str, debounce: float = 2.0, stale_after: float = 10.0) -> BayTracker:
    return BayTracker(bays or ("B1",), debounce=debounce, stale_after=stale_after, clock=clock.monotonic,
                      now=clock.now)


def states(changes: list[BayChange]) -> list[tuple[str, BayState]]:
    return [(change.bay_id, change.state) for change in changes]


def test_a_reading_counts_only_after_it_held_for_the_debounce_time(clock: FakeClock) -> None:
    bays = tracker(clock)
    assert bays.observe("B1", True) == []
    clock.advance(1.0)
    assert bays.observe("B1", True) == []
    assert bays.state("B1") is BayState.UNKNOWN
    clock.advance(1.0)
    [change] = bays.observe("B1", True)
    assert (change.bay_id, change.state, change.faulty) == ("B1", BayState.OCCUPIED, False)
    assert change.changed_at == T0, "changed_at is when the car was first seen"
    assert bays.state("B1") is BayState.OCCUPIED


def test_the_debounce_also_expires_on_tick_without_a_new_reading(clock: FakeClock) -> None:
    bays = tracker(clock)
    bays.observe("B1", False)
    clock.advance(1.9)
    assert bays.tick() == []
    clock.advance(0.1)
    assert states(bays.tick()) == [("B1", BayState.FREE)]


def test_a_blip_shorter_than_the_debounce_changes_nothing(clock: FakeClock) -> None:
    bays = tracker(clock)
    bays.observe("B1", True)
    clock.advance(2.0)
    assert states(bays.tick()) == [("B1", BayState.OCCUPIED)]
    clock.advance(1.0)
    assert bays.observe("B1", False) == []       # someone walks past
    clock.advance(0.5)
    assert bays.observe("B1", True) == []        # back to what it was
    clock.advance(5.0)
    assert bays.tick() == []
    assert bays.state("B1") is BayState.OCCUPIED


def test_a_flapping_value_restarts_the_debounce_each_time(clock: FakeClock) -> None:
    bays = tracker(clock, debounce=1.0)
    bays.observe("B1", False)
    clock.advance(1.0)
    bays.tick()
    for _ in range(5):
        bays.observe("B1", True)
        clock.advance(0.6)
        bays.observe("B1", False)
        clock.advance(0.6)
    assert bays.tick() == []
    assert bays.state("B1") is BayState.FREE


def test_a_failure_makes_the_bay_unknown_at_once_and_faulty_never_free(clock: FakeClock) -> None:
    bays = tracker(clock)
    bays.observe("B1", True)
    clock.advance(2.0)
    bays.tick()
    [change] = bays.fail("B1", "timeout")
    assert (change.state, change.reason, change.faulty) == (BayState.UNKNOWN, "timeout", True)
    assert bays.faults == {"B1": "timeout"}
    assert bays.fail("B1", "timeout") == [], "no duplicate event for the same state"
    assert bays.fail("B1", "modbus exception 2") == []
    assert bays.faults == {"B1": "modbus exception 2"}


def test_a_failure_cancels_a_pending_change(clock: FakeClock) -> None:
    bays = tracker(clock)
    bays.observe("B1", False)
    clock.advance(1.0)
    bays.fail("B1", "garbage")
    clock.advance(5.0)
    assert bays.tick() == []
    assert bays.state("B1") is BayState.UNKNOWN


def test_a_bay_recovers_from_a_fault_after_the_debounce(clock: FakeClock) -> None:
    bays = tracker(clock)
    bays.fail("B1", "timeout")
    clock.advance(1.0)
    assert bays.observe("B1", False) == []
    assert bays.faults == {}, "the sensor answers again"
    assert bays.state("B1") is BayState.UNKNOWN
    clock.advance(2.0)
    [change] = bays.tick()
    assert (change.state, change.faulty, change.changed_at) == (BayState.FREE, False, T0 + timedelta(seconds=1))


def test_a_silent_sensor_makes_its_bay_unknown_after_stale_after(clock: FakeClock) -> None:
    bays = tracker(clock, "B1", "B2", stale_after=10.0)
    bays.observe("B1", True)
    bays.observe("B2", False)
    clock.advance(2.0)
    assert sorted(states(bays.tick())) == [("B1", BayState.OCCUPIED), ("B2", BayState.FREE)]
    clock.advance(5.0)
    bays.observe("B2", False)  # B2 keeps reporting, B1 falls silent
    clock.advance(3.0)
    [change] = bays.tick()
    assert (change.bay_id, change.state, change.faulty) == ("B1", BayState.UNKNOWN, True)
    assert change.reason.startswith("stale")
    assert bays.faults.keys() == {"B1"}
    clock.advance(1.0)
    assert bays.tick() == [], "stale is reported once"


def test_a_bay_never_heard_from_is_reported_unknown_once_stale(clock: FakeClock) -> None:
    bays = tracker(clock, stale_after=10.0)
    clock.advance(9.9)
    assert bays.tick() == []
    clock.advance(0.1)
    assert states(bays.tick()) == [("B1", BayState.UNKNOWN)]


def test_the_first_decision_after_start_is_reported_even_if_unknown(clock: FakeClock) -> None:
    bays = tracker(clock)
    assert states(bays.fail("B1", "cannot connect")) == [("B1", BayState.UNKNOWN)]


def test_no_debounce_accepts_the_first_reading(clock: FakeClock) -> None:
    bays = tracker(clock, debounce=0.0)
    assert states(bays.observe("B1", True)) == [("B1", BayState.OCCUPIED)]
    assert bays.observe("B1", True) == []


def test_fail_all_reports_every_bay_once(clock: FakeClock) -> None:
    bays = tracker(clock, "B1", "B2", "B3")
    assert len(bays.fail_all("connection lost")) == 3
    assert bays.fail_all("connection lost") == []


def test_a_change_becomes_the_bay_occupancy_uplink_body(clock: FakeClock) -> None:
    change = BayChange("B1", BayState.OCCUPIED, T0, "sensor reading")
    body = change.to_payload()
    assert (body.TYPE, body.bay_id, body.state, body.changed_at) == ("bay.occupancy", "B1", "occupied", T0)


def test_an_unknown_bay_is_a_programming_error(clock: FakeClock) -> None:
    with pytest.raises(KeyError):
        tracker(clock).observe("nope", True)
