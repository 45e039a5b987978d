"""A garage day through the whole system (production mode: every part its own process, on
PostgreSQL, RabbitMQ, Redis and Mosquitto): an operator lowers the site limit from the cloud and
the charging car's charger gets it; the bay shows idle, charging, then overstay, via the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, ChargingProfileStatus, ClearChargingProfileStatus

from mqtt.sensors import BaySensorReading, SensorTopics
from tests.e2e.conftest import production_on_shared_broker
from tests.e2e.harness import System, authorize_when_known, boot, connect_charger, now, register_vehicle
from tests.e2e.test_site_sensors import poll

pytestmark = pytest.mark.e2e

POWER_SITE = """
site_id = "e2e-site"

[[bays]]
id = "EV-1"
type = "ev"
charger_id = "CP-1"
connector_id = 1

[sensors.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
username = "e2e-site-sensors"
topic_root = "{root}"
debounce = 0.2

[sensors.mqtt.sensors]
s-ev-1 = "EV-1"

[power]
limit_a = 32
charger_max_a = 32
"""


class SmartCharger(ChargePoint):
    """An ``ocpp``-library charger that accepts charging profiles and remembers each limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: list[float] = []

    @on(Action.set_charging_profile)
    async def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any],
                                      **_: Any) -> call_result.SetChargingProfile:
        self.limits.append(float(cs_charging_profiles["charging_schedule"]["charging_schedule_period"][0]["limit"]))
        return call_result.SetChargingProfile(status=ChargingProfileStatus.accepted)

    @on(Action.clear_charging_profile)
    async def on_clear_charging_profile(self, **_: Any) -> call_result.ClearChargingProfile:
        return call_result.ClearChargingProfile(status=ClearChargingProfileStatus.accepted)


async def until(condition: Any, limit_s: float = 20.0) -> None:
    for _ in range(int(limit_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


@pytest.fixture
async def power_site(tmp_path: Path) -> AsyncIterator[System]:
    async with production_on_shared_broker(tmp_path, POWER_SITE) as the_system:
        yield the_system


async def test_the_cloud_lowers_the_site_limit_and_sees_the_bay_idle_charging_and_overstaying(
        power_site: System) -> None:
    system = power_site
    topics = SensorTopics(system.topic_root)
    await register_vehicle(system, "EV-POWER-1", ["TAGPOWER1"])
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=5) as http, \
            aiomqtt.Client("127.0.0.1", system.mqtt_port, username="sensor-test") as sensor, \
            connect_charger(system.ocpp, "CP-1", SmartCharger) as cp:
        await boot(cp)
        await authorize_when_known(cp, "TAGPOWER1")
        site = await poll(http, "/parking/sites/e2e-site", lambda b: b["power"]["limit_a"] == 32)
        assert site["power"]["phases"] == 3

        async def read(occupied: bool) -> None:
            reading = BaySensorReading(bay_id="EV-1", occupied=occupied, ts=datetime.now(UTC))
            await sensor.publish(topics.sensor("e2e-site", "s-ev-1"), reading.to_json(), qos=1)

        await read(True)  # a car parks on the EV bay ...
        idle = await poll(http, "/parking/sites/e2e-site/bays?usage=blocked", lambda b: len(b["bays"]) == 1)
        assert idle["bays"][0]["bay_id"] == "EV-1"

        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAGPOWER1", meter_start=0,
                                                      timestamp=now()))  # ... and plugs in
        tx = int(started.transaction_id)
        await until(lambda: cp.limits[-1:] == [32.0])
        await poll(http, "/parking/sites/e2e-site/bays?usage=charging",
                   lambda b: [x["usage_transaction_id"] for x in b["bays"]] == [tx])

        # The operator lowers the site's limit from the cloud: the charger is told within seconds.
        asked = await http.put("/parking/sites/e2e-site/power-limit", json={"limit_a": 20})
        assert asked.status_code == 202, asked.text
        settled = await poll(http, "/parking/sites/e2e-site/power-limit", lambda b: b["status"] != "pending")
        assert settled["status"] == "accepted", settled
        assert settled["applied"]["limit_a"] == 20.0
        await until(lambda: cp.limits[-1:] == [20.0])
        bad = await http.put("/parking/sites/e2e-site/power-limit", json={"limit_a": 20, "limit_w": 1000})
        assert bad.status_code == 422

        await cp.call(call.StopTransaction(meter_stop=4200, timestamp=now(), transaction_id=tx))
        overstay = await poll(http, "/parking/sites/e2e-site/bays?usage=idle", lambda b: len(b["bays"]) == 1)
        assert overstay["bays"][0]["usage_transaction_id"] == tx

        await read(False)  # the car leaves
        await poll(http, "/parking/sites/e2e-site/bays?usage=free", lambda b: len(b["bays"]) == 1)
