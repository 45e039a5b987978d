"""A broker that loses what it acknowledged: Mosquitto killed with -9 while 50 chargers charge.

The broker runs without persistence (the worst case of a crash: every message it acknowledged and
had not delivered yet, its sessions and its retained messages are gone), and the charging service
is held (SIGSTOP) for a few seconds first, so that the broker holds a queue of acknowledged session
envelopes for it when it dies, the last ones of every charger among them (a lost tail: nothing
comes after them). No session and no stop may be lost: the cloud finds the holes in each category's
numbers, and the tail from the edge's high-water marks, and the edge sends them again.

`make test` runs a short load; `make soak` a longer one (EVPARK_BROKER_CRASH_S overrides).
Without the resend (``EVPARK_MQTT_RESEND=false``) the same run loses sessions and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from pathlib import Path

import httpx
import pytest
from ocpp.v16 import call

from tests.e2e.conftest import drop_databases, production
from tests.e2e.harness import LibCharger, System, connect_charger, now, register_vehicle
from tests.e2e.test_outage import wait_synced
from tests.support import services

pytestmark = pytest.mark.e2e
CHARGERS = 50
HELD_S = 3.0
"""How long the charging service is held before the broker dies: its queue at the broker grows."""


async def drive(charger: LibCharger, n: int, stop: asyncio.Event) -> list[int]:
    """Sessions back to back on charger n (start, a meter value, stop); returns their energies."""
    energies: list[int] = []
    meter = 0
    rng = random.Random(n)
    while not stop.is_set():
        started = await charger.call(call.StartTransaction(connector_id=1, id_tag=f"TAG-{n}", meter_start=meter,
                                                           timestamp=now()))
        energy = rng.randint(1_000, 30_000)
        await charger.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
            {"timestamp": now(), "sampledValue": [{"value": str(meter + energy // 2)}]}]))
        await asyncio.sleep(rng.uniform(0.05, 0.3))
        await charger.call(call.StopTransaction(meter_stop=meter + energy, timestamp=now(),
                                                transaction_id=started.transaction_id))
        meter += energy
        energies.append(energy)
        await asyncio.sleep(rng.uniform(0.05, 0.3))
    return energies


async def histories(http: httpx.AsyncClient, vehicles: list[str]) -> list[list[dict[str, object]]]:
    out = []
    for vehicle in vehicles:
        response = await http.get(f"/charging/history/{vehicle}", params={"limit": 500})
        assert response.status_code == 200, response.text
        out.append(response.json()["sessions"])
    return out


async def crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_s: float) -> None:
    for label, address in (("PostgreSQL", services.POSTGRES), ("RabbitMQ", services.RABBITMQ),
                           ("Redis", services.REDIS)):
        services.require(label, address)
    # Ask for a hole after 2 s, and hear the high-water marks every 5 s (defaults: 5 s and 60 s).
    monkeypatch.setenv("EVPARK_MQTT_GAP_GRACE_SECONDS", "2")
    monkeypatch.setenv("EVPARK_EDGE_MQTT_HIGH_WATER_EVERY", "5")
    name = services.fresh_name("e")
    vhost = services.create_rabbitmq_vhost()
    try:
        with services.private_mosquitto(persistence=False) as broker:
            system: System = production(tmp_path, mqtt_port=broker.port, name=name,
                                        amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
            charging = next(p for p in system.processes if p.name == "charging")
            try:
                await asyncio.to_thread(system.wait_healthy, 120)
                vehicles = [await register_vehicle(system, f"CRASH-{n}", [f"TAG-{n}"])
                            for n in range(1, CHARGERS + 1)]
                await wait_synced(system, vehicles)
                async with contextlib.AsyncExitStack() as stack:
                    chargers = [await stack.enter_async_context(connect_charger(system.ocpp, f"CP-{n}"))
                                for n in range(1, CHARGERS + 1)]
                    for charger in chargers:
                        await charger.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
                    stop = asyncio.Event()
                    drivers = [asyncio.create_task(drive(c, n, stop)) for n, c in enumerate(chargers, start=1)]
                    await asyncio.sleep(max(0.0, load_s - HELD_S))
                    charging.popen.send_signal(signal.SIGSTOP)  # its queue at the broker grows …
                    try:
                        await asyncio.sleep(HELD_S)
                        stop.set()
                        energies = await asyncio.gather(*drivers)  # the last stops: a tail nothing follows
                        await asyncio.sleep(0.5)  # the edge publishes them, the broker acknowledges them
                        await asyncio.to_thread(broker.kill)  # … and the broker dies with it (kill -9)
                        await asyncio.to_thread(broker.start)
                    finally:
                        charging.popen.send_signal(signal.SIGCONT)
                    back = time.monotonic()
                total = sum(map(len, energies))
                assert total >= CHARGERS
                async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=10) as http:
                    deadline = time.monotonic() + 90
                    while True:
                        seen = await histories(http, vehicles)
                        complete = sum(1 for h in seen for s in h if s["status"] == "completed")
                        if complete == total or time.monotonic() > deadline:
                            break
                        await asyncio.sleep(1.0)
                    recovered = time.monotonic() - back
                    assert complete == total, (f"the cloud shows {complete} of {total} finished sessions "
                                               f"{recovered:.0f} s after the crash")
                    for vehicle, expected, history in zip(vehicles, energies, seen, strict=True):
                        got = sorted(history, key=lambda s: int(str(s["transaction_id"])))
                        assert [s["energy_wh"] for s in got] == expected, f"sessions of {vehicle} lost or doubled"
                        assert {s["status"] for s in got} == {"completed"}, f"a session of {vehicle} never stopped"
                print(f"\nbroker killed (-9, no persistence) with {CHARGERS} chargers charging: {total} sessions, "
                      f"every one complete in the cloud {recovered:.1f} s after the broker came back")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    charging.popen.send_signal(signal.SIGCONT)
                await asyncio.to_thread(system.stop)
    finally:
        services.delete_rabbitmq_vhost(vhost)
        await drop_databases(name)


@pytest.mark.timeout(400)
async def test_a_broker_killed_while_chargers_charge_loses_no_session_or_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await crash(tmp_path, monkeypatch, float(os.environ.get("EVPARK_BROKER_CRASH_S", "8")))


@pytest.mark.soak
@pytest.mark.timeout(1800)
async def test_a_broker_killed_after_minutes_of_charging_loses_no_session_or_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await crash(tmp_path, monkeypatch, float(os.environ.get("EVPARK_BROKER_CRASH_S", "300")))
