"""Bay usage from a real MQTT bay sensor (Mosquitto) and ``ocpp``-library chargers, and the site
inventory re-sent when the chargers change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import httpx
from ocpp.v16 import call

from edge import Edge, EdgeSettings
from edge.siteconfig import Bay, MqttSensors, Power, Sensors, SiteConfig
from mqtt import IdTagStatus
from mqtt.sensors import BaySensorReading, SensorTopics
from tests.integration.edge.charger import answering_charger, now_iso


async def outbox(edge: Edge, type_: str) -> list[dict[str, Any]]:
    return [row.body for row in await edge.store.outbox_batch(100_000) if row.type == type_]


async def until_async(condition: Callable[[], Any], limit_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not (result := await condition()):
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.05)
    return result


async def test_a_bay_is_reported_idle_charging_overstay_and_free_as_its_driver_comes_and_goes(
        make_settings: Callable[..., EdgeSettings], mosquitto: tuple[str, int], topic_root: str) -> None:
    settings = make_settings()
    config = SiteConfig(
        site_id=settings.site_id,
        bays=[Bay(id="B1", type="ev", charger_id="CP-1", connector_id=1), Bay(id="B2", type="regular")],
        sensors=Sensors(mqtt=MqttSensors(host=mosquitto[0], port=mosquitto[1], topic_root=topic_root, debounce=0.1,
                                         sensors={"s-1": "B1", "s-2": "B2"})),
    )
    topic = SensorTopics(topic_root).sensor(settings.site_id, "s-1")

    async def usages() -> list[tuple[str, int | None]]:
        return [(u["state"], u["transaction_id"]) for u in await outbox(edge, "bay.usage")]

    async with Edge(settings, config) as edge, aiomqtt.Client(*mosquitto) as sensor:
        await edge.site.put_id_tag("TAG1", status=IdTagStatus.ACCEPTED)
        await asyncio.sleep(0.5)  # the sensor listener subscribes

        async def report(occupied: bool) -> None:
            reading = BaySensorReading(bay_id="B1", occupied=occupied, ts=datetime.now(UTC))
            await sensor.publish(topic, reading.to_json(), qos=1)

        await report(True)  # a car parks and does not plug in
        await until_async(lambda: _eq(usages(), [("idle", None)]))
        async with answering_charger(edge.ocpp_port, "CP-1") as cp:
            tx: Any = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                           timestamp=now_iso()))).transaction_id
            await until_async(lambda: _eq(usages(), [("idle", None), ("charging", tx)]))
            await cp.call(call.StopTransaction(meter_stop=5000, timestamp=now_iso(), transaction_id=tx))
            await until_async(lambda: _eq(usages(), [("idle", None), ("charging", tx), ("overstay", tx)]))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
                shown = (await admin.get("/bays")).json()["bays"]
            assert [(b["bay_id"], b["occupancy"], b["usage"], b["transaction_id"]) for b in shown] == [
                ("B1", "occupied", "overstay", tx)]
            await report(False)  # the car leaves
            await until_async(lambda: _eq(usages(), [("idle", None), ("charging", tx), ("overstay", tx),
                                                     ("free", None)]))
        stopped = (await outbox(edge, "session.stopped"))[0]
        overstay = (await outbox(edge, "bay.usage"))[2]
        assert overstay["since"] == stopped["stopped_at"], "overstay counts from the session's end"


async def _eq(got: Any, expected: Any) -> bool:
    return bool(await got == expected)


async def test_the_inventory_is_sent_again_when_a_new_charger_or_connector_appears_and_only_then(
        make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    config = SiteConfig(site_id=settings.site_id, bays=[Bay(id="B1", type="ev", charger_id="CP-1", connector_id=1)],
                        power=Power(limit_a=63, charger_max_a=16.0, chargers={"CP-2": 32.0}))
    async with Edge(settings, config) as edge:
        first = await outbox(edge, "site.inventory")
        assert [(c["charger_id"], c["connectors"], c["max_power_w"]) for c in first[0]["chargers"]] == [
            ("CP-1", 1, 11040), ("CP-2", 0, 22080)]  # CP-1's connector 1 serves bay B1
        assert first[0]["power_limit_a"] == 63
        async with answering_charger(edge.ocpp_port, "CP-1") as cp1:
            await cp1.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
            await cp1.call(call.StatusNotification(connector_id=2, error_code="NoError", status="Available"))
            inventories = await until_async(lambda: _with_connectors(edge, "CP-1", 2))
            async with answering_charger(edge.ocpp_port, "CP-3") as cp3:  # not in the site file
                await cp3.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
                inventories = await until_async(lambda: _with_connectors(edge, "CP-3", 1))
                # the same connectors again, a reboot: nothing new to say
                await cp1.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
                await cp1.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
                await asyncio.sleep(0.5)
        final = await outbox(edge, "site.inventory")
        assert len(final) == len(inventories)
        assert [(c["charger_id"], c["connectors"]) for c in final[-1]["chargers"]] == [
            ("CP-1", 2), ("CP-2", 0), ("CP-3", 1)]


async def _with_connectors(edge: Edge, charger_id: str, connectors: int) -> list[dict[str, Any]] | None:
    inventories = await outbox(edge, "site.inventory")
    counts = {c["charger_id"]: c["connectors"] for c in inventories[-1]["chargers"]}
    return inventories if counts.get(charger_id) == connectors else None
