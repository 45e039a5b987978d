"""What a vehicle's owner reads: whether the car charges now (cached briefly) and its completed sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cloud.charging.domain import session_key
from cloud.charging.service import STATUS_TTL_SECONDS
from cloud.contracts.errors import NotFound
from tests.unit.cloud.charging.conftest import OWNER, T0, Charging, registered, started, stopped


@pytest.fixture
async def driver(charging: Charging) -> Charging:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", "TAG2"))
    return charging


async def test_status_of_a_vehicle_not_charging_says_so(driver: Charging) -> None:
    status = await driver.service.status(OWNER, "veh-1")
    assert (status.vehicle_id, status.charging, status.sessions) == ("veh-1", False, [])


async def test_status_lists_the_running_sessions_of_every_idtag_latest_start_first(driver: Charging) -> None:
    await driver.receive(started(transaction_id=1, id_tag="TAG1", at=T0))
    await driver.receive(started(transaction_id=2, id_tag="TAG2", at=T0 + timedelta(minutes=5)))
    await driver.receive(started(transaction_id=3, id_tag="SOMEONE-ELSE", at=T0))
    await driver.receive(started(transaction_id=4, id_tag="TAG1", at=T0))
    await driver.receive(stopped(transaction_id=4))
    status = await driver.service.status(OWNER, "veh-1")
    assert status.charging
    assert [(s.transaction_id, s.status, s.stopped_at) for s in status.sessions] == [
        (2, "active", None), (1, "active", None)]
    # a running session's duration is live: from its start until now
    for shown, start in zip(status.sessions, (T0 + timedelta(minutes=5), T0), strict=True):
        assert shown.duration_s is not None
        assert abs(shown.duration_s - (datetime.now(UTC) - start).total_seconds()) < 2


async def test_status_is_served_from_the_cache_as_json_for_a_few_seconds(driver: Charging) -> None:
    await driver.receive(started())
    first = await driver.service.status(OWNER, "veh-1")
    cached = await driver.cache.get("charging:status:veh-1")
    assert cached is not None
    assert json.loads(cached) == {"owner_id": OWNER.subject, "status": first.model_dump(mode="json")}
    assert STATUS_TTL_SECONDS == 5.0
    driver.repo.sessions.clear()  # behind the service's back: the cached view still answers
    assert await driver.service.status(OWNER, "veh-1") == first


async def test_history_shows_completed_sessions_latest_stop_first_in_pages(driver: Charging) -> None:
    for n in range(1, 4):
        await driver.receive(started(transaction_id=n, at=T0))
        await driver.receive(stopped(transaction_id=n, energy=n * 1_000, at=T0 + timedelta(hours=n)))
    await driver.receive(started(transaction_id=9))  # still running: not history
    page = await driver.service.history(OWNER, "veh-1", limit=2, offset=0)
    assert (page.vehicle_id, page.limit, page.offset) == ("veh-1", 2, 0)
    assert [(s.transaction_id, s.energy_wh, s.duration_s) for s in page.sessions] == [
        (3, 3_000, 3 * 3_600), (2, 2_000, 2 * 3_600)]
    rest = await driver.service.history(OWNER, "veh-1", limit=2, offset=2)
    assert [s.transaction_id for s in rest.sessions] == [1]


async def test_sessions_read_as_the_rest_api_shows_them(driver: Charging) -> None:
    await driver.receive(started())
    await driver.receive(stopped(energy=7_500))
    [session] = (await driver.service.history(OWNER, "veh-1", limit=1, offset=0)).sessions
    assert json.loads(session.model_dump_json()) == {
        "session_id": session_key("site-a", "legacy", "CP1", 7), "site_id": "site-a", "store_id": "legacy",
        "charger_id": "CP1", "connector_id": 1,
        "transaction_id": 7, "id_tag": "TAG1", "status": "completed", "started_at": "2026-11-23T18:00:00Z",
        "stopped_at": "2026-11-23T19:00:00Z", "duration_s": 3_600, "energy_wh": 7_500, "stop_reason": "Local",
        "clock_suspect": False, "closed_by": "stop", "power_w": None, "soc_percent": None,
        "energy_finished_at": None, "meter_backwards": 0, "power_class": None, "cost_so_far": None,
        "currency": None}


async def test_an_unknown_vehicle_is_not_found_and_not_cached(charging: Charging) -> None:
    for read in (charging.service.status(OWNER, "nope"), charging.service.history(OWNER, "nope", limit=1, offset=0)):
        with pytest.raises(NotFound) as refused:
            await read
        assert refused.value.code == "unknown_vehicle"
    assert await charging.cache.get("charging:status:nope") is None
