from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud.parking import domain
from cloud.parking.domain import Bay
from mqtt import BayOccupancy

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def bay(state: str = "free", at: datetime = T0) -> Bay:
    return Bay(site_id="s", bay_id="B1", state=state, changed_at=at, updated_at=at)


def report(state: str, at: datetime) -> BayOccupancy:
    return BayOccupancy(bay_id="B1", state=state, changed_at=at)  # type: ignore[arg-type]


def test_a_newer_report_changes_the_bay() -> None:
    b = bay()
    assert domain.apply_occupancy(b, report("occupied", T0 + timedelta(minutes=1)), T0)
    assert b.state == "occupied"


def test_a_late_older_report_never_overwrites_a_newer_state() -> None:
    b = bay("occupied", T0 + timedelta(minutes=5))
    assert not domain.apply_occupancy(b, report("free", T0), T0)
    assert b.state == "occupied"


def test_the_same_state_again_is_not_a_change() -> None:
    b = bay("free")
    assert not domain.apply_occupancy(b, report("free", T0 + timedelta(seconds=1)), T0)


def test_availability_counts_unknown_bays_apart_from_free_ones() -> None:
    bays = [bay("free"), bay("occupied"), bay("unknown"), bay("free")]
    assert domain.Availability.of(bays) == domain.Availability(total=4, free=2, occupied=1, unknown=1)
