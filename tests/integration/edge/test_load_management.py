"""Site load management with chargers written with the `ocpp` library.

22 kW site limit (31.8 A per phase at 3 x 230 V), four 11 kW chargers (16 A): each charger
receives the TxProfile the plan says, the sum of the limits the chargers were given never
exceeds the site limit, and when two stop the other two get the freed current.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from ocpp import exceptions as ocpp_exceptions
from ocpp.routing import on
from ocpp.v16 import call, call_result

from edge import Edge, EdgeSettings
from edge.siteconfig import Bay, Power, SiteConfig
from mqtt import IdTagStatus
from mqtt.envelope import Command, CommandResult
from mqtt.payloads import CommandStatus, SetPowerLimit
from tests.integration.edge.charger import AnsweringCharger, answering_charger, now_iso
from tests.support.waiting import poll_until

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


async def until(condition: Callable[[], bool], limit_s: float = 20.0) -> None:
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
        # What the running cars may draw, updated the moment a charger receives a profile or a clear,
        # or the moment a car stops (it draws nothing from then on): every state is summed, none missed.
        drawing: dict[int, float] = {}
        stopped: set[int] = set()
        sums: list[float] = [0.0]

        def follow(action: str, request: dict[str, Any]) -> None:
            profile = request.get("cs_charging_profiles", {})
            if action == "SetChargingProfile" and profile.get("transaction_id") not in stopped:
                drawing[profile["transaction_id"]] = float(
                    profile["charging_schedule"]["charging_schedule_period"][0]["limit"])
            elif action == "ClearChargingProfile":
                drawing.pop(request.get("id"), None)  # type: ignore[arg-type]
            sums.append(sum(drawing.values()))

        def given() -> list[float]:
            return sorted(drawing.values())

        async def start(n: int) -> None:
            cp = await stack.enter_async_context(answering_charger(edge.ocpp_port, f"CP-{n}"))
            cp.on_received = follow
            started = await cp.call(call.StartTransaction(connector_id=1, id_tag=f"TAG{n}", meter_start=0,
                                                          timestamp=now_iso()))
            chargers.append(cp)
            transactions.append(started.transaction_id)

        for tag in ("TAG1", "TAG2", "TAG3", "TAG4"):
            await edge.site.put_id_tag(tag, status=IdTagStatus.ACCEPTED)
        expected = {1: [16.0], 2: [15.9, 15.9], 3: [10.6, 10.6, 10.6], 4: [7.9, 7.9, 7.9, 7.9]}
        for n in range(1, 5):
            await start(n)
            await until(lambda n=n: given() == expected[n])  # type: ignore[misc]
        # Two stop: the other two get the freed current, and the stopped ones are cleared.
        for cp, tx in list(zip(chargers, transactions, strict=True))[:2]:
            stopped.add(tx)
            drawing.pop(tx)
            await cp.call(call.StopTransaction(meter_stop=1000, timestamp=now_iso(), transaction_id=tx))
        await until(lambda: [last_limit(chargers[i], transactions[i]) for i in (2, 3)] == [15.9, 15.9])
        await until(lambda: all(cleared(chargers[i], transactions[i]) for i in (0, 1)))
        assert given() == [15.9, 15.9]
        assert len(sums) > 10, "the charger side saw too few profiles to judge the sum"
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
                                                  "limit_a": 10.0, "managed": True}]
                refused = await admin.put("/power/limit", json={"limit_a": -1})
                assert refused.status_code == 422
                both = await admin.put("/power/limit", json={"limit_a": 10, "limit_w": 6900})
                assert both.status_code == 422 and "limit_a" in both.json()["detail"]
                in_watts = await admin.put("/power/limit", json={"limit_w": 8280})
                assert in_watts.json()["limit_a"] == 12.0
                await until(lambda: last_limit(cp, tx) == 12.0)


@contextlib.asynccontextmanager
async def two_sessions(make_settings: Callable[..., EdgeSettings], *,
                       limit_a: float) -> AsyncIterator[tuple[AnsweringCharger, Any, AnsweringCharger, Any]]:
    """An edge sharing ``limit_a`` between two 16 A chargers, each with a session in progress."""
    settings = make_settings()
    config = SiteConfig(site_id=settings.site_id,
                        bays=[Bay(id=f"B{n}", type="ev", charger_id=f"CP-{n}", connector_id=1) for n in (1, 2)],
                        power=Power(limit_a=limit_a, charger_max_a=16.0))
    async with Edge(settings, config) as edge, answering_charger(edge.ocpp_port, "CP-1") as cp1, \
            answering_charger(edge.ocpp_port, "CP-2") as cp2:
        for tag in ("TAG1", "TAG2"):
            await edge.site.put_id_tag(tag, status=IdTagStatus.ACCEPTED)
        tx1 = (await cp1.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                    timestamp=now_iso()))).transaction_id
        tx2 = (await cp2.call(call.StartTransaction(connector_id=1, id_tag="TAG2", meter_start=0,
                                                    timestamp=now_iso()))).transaction_id
        yield cp1, tx1, cp2, tx2


def meter_current(amps: float) -> list[dict[str, Any]]:
    return [{"timestamp": now_iso(), "sampled_value": [
        {"value": f"{amps:.1f}", "measurand": "Current.Import", "phase": phase, "unit": "A"}
        for phase in ("L1", "L2", "L3")]}]


async def test_a_car_drawing_less_than_its_share_leaves_the_rest_to_the_others(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with two_sessions(make_settings, limit_a=24) as (cp1, tx1, cp2, tx2):
        await until(lambda: (last_limit(cp1, tx1), last_limit(cp2, tx2)) == (12.0, 12.0))
        # The first car tops out at 5 A (its battery is nearly full): it is planned at 5 + 2 A and the
        # second gets the rest, up to its charger's 16 A.
        await cp1.call(call.MeterValues(connector_id=1, transaction_id=tx1, meter_value=meter_current(5.0)))
        await until(lambda: (last_limit(cp1, tx1), last_limit(cp2, tx2)) == (7.0, 16.0))
        # Reported in watts instead (3 x 230 V): 1,380 W is 2 A; planned at the 6 A minimum, not below ...
        await cp1.call(call.MeterValues(connector_id=1, transaction_id=tx1, meter_value=[
            {"timestamp": now_iso(), "sampled_value": [{"value": "1380", "measurand": "Power.Active.Import",
                                                        "unit": "W"}]}]))
        await until(lambda: (last_limit(cp1, tx1), last_limit(cp2, tx2)) == (6.0, 16.0))
        # ... and when it draws all it was given again, the plan gives it its fair share back.
        await cp1.call(call.MeterValues(connector_id=1, transaction_id=tx1, meter_value=meter_current(6.0)))
        await until(lambda: (last_limit(cp1, tx1), last_limit(cp2, tx2)) == (12.0, 12.0))


async def test_the_cloud_changes_the_limit_and_it_outlives_a_restart_until_the_site_file_changes(
        make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    bays = [Bay(id="B1", type="ev", charger_id="CP-1", connector_id=1)]
    config = SiteConfig(site_id=settings.site_id, bays=bays, power=Power(limit_a=32, charger_max_a=32.0))
    async with Edge(settings, config) as edge:
        await edge.site.put_id_tag("TAG1", status=IdTagStatus.ACCEPTED)
        async with answering_charger(edge.ocpp_port, "CP-1") as cp:
            tx: Any = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                           timestamp=now_iso()))).transaction_id
            await until(lambda: last_limit(cp, tx) == 32.0)
            command = Command.new(settings.site_id, SetPowerLimit(limit_w=13_800))  # 20 A at 3 x 230 V
            assert await edge.site.handle_command(command) == CommandStatus.ACCEPTED
            await until(lambda: last_limit(cp, tx) == 20.0)
            expired = Command.new(settings.site_id, SetPowerLimit(limit_a=5), ttl=timedelta(seconds=1),
                                  now=datetime.now(UTC) - timedelta(minutes=1))
            assert await edge.site.handle_command(expired) == CommandStatus.EXPIRED
        results = [CommandResult.model_validate(row.body) for row in await edge.store.outbox_batch(10_000)
                   if row.type == CommandResult.TYPE]
        assert [(r.status, r.data.get("limit_a")) for r in results] == [("accepted", 20.0), ("expired", None)]
        inventories = [row.body for row in await edge.store.outbox_batch(10_000) if row.type == "site.inventory"]
        assert [i["power_limit_a"] for i in inventories] == [32.0, 20.0], "the cloud sees the limit in effect"
        assert edge.load_manager is not None and edge.load_manager.limit_a == 20.0
    async with Edge(settings, config) as edge:  # restarted with the same site file: the limit is kept
        assert edge.load_manager is not None and edge.load_manager.limit_a == 20.0
    edited = SiteConfig(site_id=settings.site_id, bays=bays, power=Power(limit_a=40, charger_max_a=32.0))
    async with Edge(settings, edited) as edge:  # the operator edited the file since: the file wins
        assert edge.load_manager is not None and edge.load_manager.limit_a == 40.0


async def test_a_site_without_load_management_rejects_a_limit(make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    config = SiteConfig(site_id=settings.site_id, bays=[Bay(id="B1")])
    async with Edge(settings, config) as edge:
        command = Command.new(settings.site_id, SetPowerLimit(limit_a=20))
        assert await edge.site.handle_command(command) == CommandStatus.REJECTED
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
            answer = await admin.put("/power/limit", json={"limit_a": 10})
            assert answer.status_code == 404
            assert "[power]" in answer.json()["detail"]


async def test_a_transaction_whose_connector_went_available_frees_its_share(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with two_sessions(make_settings, limit_a=20) as (cp1, tx1, cp2, tx2):
        await until(lambda: (last_limit(cp1, tx1), last_limit(cp2, tx2)) == (10.0, 10.0))
        # CP-1 lost its transaction (it says its connector is Available; no StopTransaction comes)
        later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        await cp1.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available",
                                               timestamp=later))
        await until(lambda: last_limit(cp2, tx2) == 16.0)


class PickyCharger(AnsweringCharger):
    """A charger that takes charging profiles only in watts (ChargingScheduleAllowedChargingRateUnit
    = Power), or none at all until ``smart`` is set (no Smart Charging: CALLERROR NotImplemented)."""

    watts_only = False
    smart = True

    # Overrides AnsweringCharger's handler under its own name: the ocpp library routes by the names
    # of every @on handler ever defined in the process, so a second name for the same action would
    # win or lose depending on which test module was imported first.
    @on("SetChargingProfile")
    async def on_SetChargingProfile(self, **kwargs: Any) -> Any:
        self.received.append(("SetChargingProfile", kwargs))
        if not self.smart:
            raise ocpp_exceptions.NotImplementedError("SmartCharging is not supported")
        unit = kwargs["cs_charging_profiles"]["charging_schedule"]["charging_rate_unit"]
        return call_result.SetChargingProfile(status="Rejected" if self.watts_only and unit == "A" else "Accepted")


def last_profile(charger: AnsweringCharger, transaction_id: int) -> tuple[str, float] | None:
    for action, request in reversed(charger.received):
        profile = request.get("cs_charging_profiles", {})
        if action == "SetChargingProfile" and profile.get("transaction_id") == transaction_id:
            schedule = profile["charging_schedule"]
            return schedule["charging_rate_unit"], float(schedule["charging_schedule_period"][0]["limit"])
    return None


async def test_a_charger_that_refuses_its_profile_is_set_aside_and_the_others_share_the_rest(
        make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    config = SiteConfig(site_id=settings.site_id,
                        bays=[Bay(id=f"B{n}", type="ev", charger_id=f"CP-{n}", connector_id=1) for n in (1, 2, 3)],
                        power=Power(limit_a=32, charger_max_a=16.0))
    async with Edge(settings, config) as edge, contextlib.AsyncExitStack() as stack:
        lm = edge.load_manager
        assert lm is not None
        lm.retry_refused_after = 0.5
        plain = await stack.enter_async_context(answering_charger(edge.ocpp_port, "CP-1"))
        watts = await stack.enter_async_context(answering_charger(edge.ocpp_port, "CP-2", kind=PickyCharger))
        dumb = await stack.enter_async_context(answering_charger(edge.ocpp_port, "CP-3", kind=PickyCharger))
        assert isinstance(watts, PickyCharger) and isinstance(dumb, PickyCharger)
        watts.watts_only, dumb.smart = True, False
        txs: list[Any] = []
        for n, cp in enumerate((plain, watts, dumb), start=1):
            await edge.site.put_id_tag(f"TAG{n}", status=IdTagStatus.ACCEPTED)
            txs.append((await cp.call(call.StartTransaction(connector_id=1, id_tag=f"TAG{n}", meter_start=0,
                                                            timestamp=now_iso()))).transaction_id)
        t1, t2, t3 = txs

        async def power() -> dict[tuple[str, bool], float]:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
                shown = (await admin.get("/power")).json()["transactions"]
            return {(t["charger_id"], t["managed"]): t["limit_a"] for t in shown}

        # CP-3 takes no profile: its 16 A are set aside and CP-1 and CP-2 share the other 16 A;
        # CP-2 rejects amps, so it gets its 8 A in watts (3 x 230 V x 8 A).
        await until(lambda: (last_profile(plain, t1), last_profile(watts, t2)) == (("A", 8.0), ("W", 5520.0)))
        # (the chargers see a profile before the edge has their answer: wait for the edge's view too)
        wanted = {("CP-1", True): 8.0, ("CP-2", True): 8.0, ("CP-3", False): 16.0}
        await poll_until(lambda: _power_is(power, wanted), within=20)
        assert await power() == wanted
        # CP-3's meter says its car takes 5 A: 7 A are set aside now, the others share 25 A.
        await dumb.call(call.MeterValues(connector_id=1, transaction_id=t3, meter_value=meter_current(5.0)))
        await until(lambda: (last_profile(plain, t1), last_profile(watts, t2)) == (("A", 12.5), ("W", 8625.0)))
        # CP-3 learns Smart Charging (a firmware update): offered a profile again, it is shared like the rest.
        dumb.smart = True
        await until(lambda: last_profile(dumb, t3) is not None and lm.refused == {})
        await until(lambda: [last_profile(cp, t)[1] for cp, t in ((plain, t1), (dumb, t3))  # type: ignore[index]
                             ] == [12.5, 7.0] and last_profile(watts, t2) == ("W", 8625.0))
        wanted = {("CP-1", True): 12.5, ("CP-2", True): 12.5, ("CP-3", True): 7.0}
        await poll_until(lambda: _power_is(power, wanted), within=20)
        assert await power() == wanted


async def _power_is(power: Callable[[], Awaitable[dict[tuple[str, bool], float]]],
                    wanted: dict[tuple[str, bool], float]) -> bool:
    return await power() == wanted
