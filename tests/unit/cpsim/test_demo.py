"""``run_demo`` keeps chargers charging, survives refused tags, and stops cleanly."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from chargepoint_sim.charger import SessionReport
from chargepoint_sim.demo import run_demo
from tests.support.services import free_port
from tests.unit.cpsim.central_system import CentralSystem

FAST: dict[str, Any] = {"meter_interval": 0.001, "speedup": 20_000, "pause_s": 0.0}


async def test_demo_plays_sessions_on_every_charger_and_stops_them_cleanly() -> None:
    reports: list[tuple[str, SessionReport]] = []
    async with CentralSystem() as central:
        stop = asyncio.Event()
        demo = asyncio.create_task(run_demo(
            central.url, 3, ["TAG-A", "TAG-B"], stop=stop, energy_wh=(200, 400), seed=1,
            on_session=lambda charger_id, report: reports.append((charger_id, report)), **FAST))
        await central.wait_until(lambda: len({c for c, _ in reports}) == 3 and len(reports) >= 6)
        finished = list(reports)
        stop.set()
        await asyncio.wait_for(demo, timeout=20)

        starts, stops = central.of("StartTransaction"), central.of("StopTransaction")
    assert {c for c, _ in reports} == {"CP-1", "CP-2", "CP-3"}
    assert all(200 <= report.energy_wh <= 400 for _, report in finished)
    assert sorted(s["transaction_id"] for s in starts) == sorted(s["transaction_id"] for s in stops), (
        "every started transaction was stopped before the demo returned")
    assert Counter(s["id_tag"] for s in starts).keys() == {"TAG-A", "TAG-B"}


async def test_demo_stops_a_running_session_with_a_stop_transaction() -> None:
    async with CentralSystem() as central:
        stop = asyncio.Event()
        demo = asyncio.create_task(run_demo(central.url, 1, ["TAG-A"], stop=stop, energy_wh=(10**9, 10**9),
                                            meter_interval=0.01, speedup=1.0))
        await central.wait_until(lambda: len(central.of("MeterValues")) >= 2)
        stop.set()
        await asyncio.wait_for(demo, timeout=20)
        stop_transaction, = central.of("StopTransaction")
    assert stop_transaction["reason"] == "Local"
    assert stop_transaction["meter_stop"] < 10**9


async def test_refused_tag_waits_and_the_demo_goes_on() -> None:
    reports: list[SessionReport] = []
    async with CentralSystem(refused_tags={"BLOCKED": "Blocked"}) as central:
        stop = asyncio.Event()
        demo = asyncio.create_task(run_demo(
            central.url, 1, ["BLOCKED", "GOOD"], stop=stop, energy_wh=(100, 100), retry_s=0.05,
            on_session=lambda _, report: reports.append(report), **FAST))
        await central.wait_until(lambda: len(reports) >= 2)
        stop.set()
        await asyncio.wait_for(demo, timeout=20)
        refused = [a for a in central.of("Authorize") if a["id_tag"] == "BLOCKED"]
    assert len(refused) >= 2, "the refused tag was tried again later"
    assert {report.id_tag for report in reports} == {"GOOD"}
    assert not demo.exception()


async def test_demo_waits_for_a_central_system_that_is_not_up_yet() -> None:
    port = free_port()
    stop = asyncio.Event()
    demo = asyncio.create_task(run_demo(f"ws://127.0.0.1:{port}/ocpp", 1, ["TAG"], stop=stop, seed=3, **FAST))
    await asyncio.sleep(0.3)
    assert not demo.done(), "a refused connection does not end the demo"
    stop.set()
    await asyncio.wait_for(demo, timeout=20)
