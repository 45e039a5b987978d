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
from edge.sensors import MqttSensorListener
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
    config = sensor_site(settings, mosquitto, topic_root)
    topic = SensorTopics(topic_root).sensor(settings.site_id, "s-1")

    async def usages() -> list[tuple[str, int | None]]:
        return [(u["state"], u["transaction_id"]) for u in await outbox(edge, "bay.usage")]

    async with Edge(settings, config) as edge, aiomqtt.Client(*mosquitto) as sensor:
        await edge.site.put_id_tag("TAG1", status=IdTagStatus.ACCEPTED)
        await sensors_subscribed(edge)

        async def report(occupied: bool) -> None:
            reading = BaySensorReading(bay_id="B1", occupied=occupied, ts=datetime.now(UTC))
            await sensor.publish(topic, reading.to_json(), qos=1)

        await report(True)  # a car parks and does not plug in
        await until_async(lambda: _eq(usages(), [("blocked", None)]))
        async with answering_charger(edge.ocpp_port, "CP-1") as cp:
            tx: Any = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                           timestamp=now_iso()))).transaction_id
            await until_async(lambda: _eq(usages(), [("blocked", None), ("charging", tx)]))
            await cp.call(call.StopTransaction(meter_stop=5000, timestamp=now_iso(), transaction_id=tx))
            await until_async(lambda: _eq(usages(), [("blocked", None), ("charging", tx), ("idle", tx)]))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
                shown = (await admin.get("/bays")).json()["bays"]
            assert [(b["bay_id"], b["occupancy"], b["usage"], b["transaction_id"]) for b in shown] == [
                ("B1", "occupied", "idle", tx)]
            await report(False)  # the car leaves
            await until_async(lambda: _eq(usages(), [("blocked", None), ("charging", tx), ("idle", tx),
                                                     ("free", None)]))
        stopped = (await outbox(edge, "session.stopped"))[0]
        overstay = (await outbox(edge, "bay.usage"))[2]
        assert overstay["since"] == stopped["stopped_at"], "overstay counts from the session's end"


async def sensors_subscribed(edge: Edge) -> None:
    listeners = [reader for reader in edge.sensors if isinstance(reader, MqttSensorListener)]
    assert listeners, "the site file names MQTT sensors"
    await asyncio.wait_for(asyncio.gather(*(listener.subscribed.wait() for listener in listeners)), 10)


def sensor_site(settings: EdgeSettings, mosquitto: tuple[str, int], topic_root: str) -> SiteConfig:
    return SiteConfig(
        site_id=settings.site_id,
        bays=[Bay(id="B1", type="ev", charger_id="CP-1", connector_id=1), Bay(id="B2", type="regular")],
        sensors=Sensors(mqtt=MqttSensors(host=mosquitto[0], port=mosquitto[1], topic_root=topic_root, debounce=0.1,
                                         sensors={"s-1": "B1", "s-2": "B2"})),
    )


async def test_a_car_overstaying_when_the_edge_restarts_still_overstays_from_the_same_moment(
        make_settings: Callable[..., EdgeSettings], mosquitto: tuple[str, int], topic_root: str) -> None:
    settings = make_settings()
    config = sensor_site(settings, mosquitto, topic_root)
    topic = SensorTopics(topic_root).sensor(settings.site_id, "s-1")

    async def report(sensor: aiomqtt.Client, occupied: bool) -> None:
        reading = BaySensorReading(bay_id="B1", occupied=occupied, ts=datetime.now(UTC))
        await sensor.publish(topic, reading.to_json(), qos=1)

    async def bays(edge: Edge) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
            return list((await admin.get("/bays")).json()["bays"])

    async with Edge(settings, config) as edge, aiomqtt.Client(*mosquitto) as sensor:
        await edge.site.put_id_tag("TAG1", status=IdTagStatus.ACCEPTED)
        await sensors_subscribed(edge)
        await report(sensor, True)
        await until_async(lambda: outbox(edge, "bay.usage"))
        async with answering_charger(edge.ocpp_port, "CP-1") as cp:
            tx: Any = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                           timestamp=now_iso()))).transaction_id
            await cp.call(call.StopTransaction(meter_stop=5000, timestamp=now_iso(), transaction_id=tx))
        before = await until_async(lambda: _usage_is(edge, "idle"))
        arrived = (await outbox(edge, "bay.occupancy"))[0]["changed_at"]
        sent_before = len(await outbox(edge, "bay.usage"))

    await asyncio.sleep(1.1)  # the restart takes time: a new reading would carry a later time
    async with Edge(settings, config) as edge, aiomqtt.Client(*mosquitto) as sensor:
        assert [(b["usage"], at(b["since"]), b["transaction_id"]) for b in await bays(edge)] == [
            ("idle", at(before["since"]), tx)], "the overstay was forgotten in the restart"
        await sensors_subscribed(edge)
        await report(sensor, True)  # the sensor's first reading after the restart: the car is still there
        occupancy = await until_async(lambda: _occupancy_after(edge, 1))
        assert occupancy[-1]["changed_at"] == arrived, "the car's arrival moved to the restart"
        await asyncio.sleep(0.3)
        assert len(await outbox(edge, "bay.usage")) == sent_before, "an unchanged overstay was reported again"
        await report(sensor, False)  # now it leaves
        await until_async(lambda: _usage_is(edge, "free"))
        assert [(b["occupancy"], b["usage"]) for b in await bays(edge)] == [("free", "free")]


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


async def _usage_is(edge: Edge, state: str) -> dict[str, Any] | None:
    usages = await outbox(edge, "bay.usage")
    return usages[-1] if usages and usages[-1]["state"] == state else None


async def _occupancy_after(edge: Edge, count: int) -> list[dict[str, Any]] | None:
    reports = await outbox(edge, "bay.occupancy")
    return reports if len(reports) > count else None


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
