"""Site load management with chargers written with the `ocpp` library.

22 kW site limit (31.8 A per phase at 3 x 230 V), four 11 kW chargers (16 A): each charger
receives the TxProfile the plan says, the sum of the limits the chargers were given never
exceeds the site limit, and when two stop the other two get the freed current.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
from ocpp.v16 import call

from edge import Edge, EdgeSettings
from edge.siteconfig import Bay, Power, SiteConfig
from mqtt import IdTagStatus
from tests.integration.edge.charger import AnsweringCharger, answering_charger, now_iso

SITE_LIMIT_W = 22_000
SITE_LIMIT_A = SITE_LIMIT_W / (3 * 230)


def last_limit(charger: AnsweringCharger, transaction_id: int) -> float | None:
    for action, request in reversed(charger.received):
        profile = request.get("cs_charging_profiles", {})
        if action == "SetChargingProfile" and profile.get("transaction_id") == transaction_id:
            return float(profile["charging_schedule"]["charging_schedule_period"][0]["limit"])
    return None


def cleared(charger: AnsweringCharger, transaction_id: int) -> bool:
    return any(action == "ClearChargingProfile" and request.get("id") == transaction_id
               for action, request in charger.received)


async def until(condition: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "load management did not converge in time"
        await asyncio.sleep(0.05)


async def test_22_kw_shared_among_four_11_kw_chargers(make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    config = SiteConfig(
        site_id=settings.site_id,
        bays=[Bay(id=f"B{n}", type="ev", charger_id=f"CP-{n}", connector_id=1) for n in range(1, 5)],
        power=Power(limit_w=SITE_LIMIT_W, charger_max_a=16.0),
    )
    async with Edge(settings, config) as edge, contextlib.AsyncExitStack() as stack:
        assert edge.load_manager is not None
        chargers: list[AnsweringCharger] = []
        transactions: list[int] = []
        sums: list[float] = []

        def given() -> dict[int, float]:
            limits = {tx: last_limit(cp, tx) for cp, tx in zip(chargers, transactions, strict=True)}
            return {tx: limit for tx, limit in limits.items() if limit is not None}

        async def start(n: int) -> None:
            cp = await stack.enter_async_context(answering_charger(edge.ocpp_port, f"CP-{n}"))
            chargers.append(cp)
            started = await cp.call(call.StartTransaction(connector_id=1, id_tag=f"TAG{n}", meter_start=0,
                                                          timestamp=now_iso()))
            transactions.append(started.transaction_id)

        async def watch_sum() -> None:
            while True:
                sums.append(sum(given().values()))
                await asyncio.sleep(0.01)

        for tag in ("TAG1", "TAG2", "TAG3", "TAG4"):
            await edge.site.put_id_tag(tag, status=IdTagStatus.ACCEPTED)
        watcher = asyncio.create_task(watch_sum())
        try:
            expected = {1: [16.0], 2: [15.9, 15.9], 3: [10.6, 10.6, 10.6], 4: [7.9, 7.9, 7.9, 7.9]}
            for n in range(1, 5):
                await start(n)
                await until(lambda n=n: sorted(given().values()) == expected[n])  # type: ignore[misc]
            # Two stop: the other two get the freed current, and the stopped ones are cleared.
            for cp, tx in list(zip(chargers, transactions, strict=True))[:2]:
                await cp.call(call.StopTransaction(meter_stop=1000, timestamp=now_iso(), transaction_id=tx))
            await until(lambda: [last_limit(chargers[i], transactions[i]) for i in (2, 3)] == [15.9, 15.9])
            await until(lambda: all(cleared(chargers[i], transactions[i]) for i in (0, 1)))
        finally:
            watcher.cancel()
        assert max(sums) <= SITE_LIMIT_A + 1e-6, f"the chargers were given {max(sums)} A in all"


async def test_an_operator_changes_the_limit_at_run_time_through_the_admin_api(
        make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    config = SiteConfig(site_id=settings.site_id, bays=[Bay(id="B1", type="ev", charger_id="CP-1", connector_id=1)],
                        power=Power(limit_a=32, charger_max_a=32.0))
    async with Edge(settings, config) as edge:
        assert edge.load_manager is not None
        await edge.site.put_id_tag("TAG1", status=IdTagStatus.ACCEPTED)
        async with answering_charger(edge.ocpp_port, "CP-1") as cp:
            started = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                          timestamp=now_iso()))
            tx: Any = started.transaction_id
            await until(lambda: last_limit(cp, tx) == 32.0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
                changed = await admin.put("/power/limit", json={"limit_a": 10})
                assert changed.status_code == 200, changed.text
                await until(lambda: last_limit(cp, tx) == 10.0)
                shown = (await admin.get("/power")).json()
                assert shown["limit_a"] == 10
                assert shown["transactions"] == [{"charger_id": "CP-1", "connector_id": 1, "transaction_id": tx,
                                                  "limit_a": 10.0}]
                refused = await admin.put("/power/limit", json={"limit_a": -1})
                assert refused.status_code == 422
