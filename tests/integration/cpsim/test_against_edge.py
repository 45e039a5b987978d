"""cpsim against evpark's edge, started in-process: sessions, offline replay, faults, load, and the
small car park scenario end to end (with its MQTT sensors on the real Mosquitto)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.errors import AuthorizationRefused
from chargepoint_sim.load import LoadOptions, run_load
from chargepoint_sim.scenario import EXAMPLES, load_scenario, play_scenario
from edge import Edge, EdgeSettings
from mqtt.payloads import AuthListEntry
from mqtt.sensors import BaySensorReading, SensorTopics
from tests.support import services
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration

TAGS = ["04A2B3C4D5", "04A2B3C4D6", "04A2B3C4D7", "TAG-1"]
FAST: dict[str, Any] = {"meter_interval": 0.001, "speedup": 20_000}


@pytest.fixture
def offline_port() -> Iterator[int]:
    """A port where nothing listens: the edge's uplink just retries."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@pytest.fixture
async def edge(tmp_path: Path, offline_port: int) -> AsyncIterator[Edge]:
    settings = EdgeSettings(site_id=services.fresh_name("cpsim-"), data_dir=tmp_path / "edge", ocpp_port=0,
                            accept_unknown_chargers=True, mqtt_port=offline_port, admin_enabled=False)
    async with Edge(settings) as running:
        async with running.store.transaction() as tx:
            await tx.upsert_auth_entries([AuthListEntry(id_tag=t, status="Accepted") for t in TAGS], version=1)
        yield running


async def _transactions(edge: Edge, **filters: Any) -> list[Any]:
    async with edge.store.transaction() as tx:
        return list(await tx.transactions(**filters))


async def _connectors(edge: Edge, charger_id: str) -> list[Any]:
    async with edge.store.transaction() as tx:
        return list(await tx.connectors(charger_id))


def _url(edge: Edge) -> str:
    return f"ws://127.0.0.1:{edge.ocpp_port}/ocpp"


async def test_session_is_recorded_by_the_edge_with_its_energy(edge: Edge) -> None:
    async with SimulatedCharger("CP-1", _url(edge)) as charger:
        report = await charger.run_session(1, "TAG-1", 7500, meter_start_wh=1000, **FAST)

    record = await edge.store.get_transaction(report.transaction_id)
    assert record is not None and record.state != "active"
    assert (record.meter_start, record.meter_stop) == (1000, 8500)
    assert record.charger_id == "CP-1" and record.reason == "Local"


async def test_unknown_tag_is_refused_by_the_edge(edge: Edge) -> None:
    async with SimulatedCharger("CP-1", _url(edge)) as charger:
        with pytest.raises(AuthorizationRefused):
            await charger.run_session(1, "NOT-ON-LIST", 100, **FAST)


async def test_offline_session_replays_into_one_edge_transaction(edge: Edge) -> None:
    async with SimulatedCharger("CP-1", _url(edge)) as charger:
        await charger.go_offline()
        report = await charger.run_session(1, "TAG-1", 300, meter_interval=0.005, speedup=1000)
        assert await _transactions(edge, charger_id="CP-1") == []
        await charger.go_online()

    records = await _transactions(edge, charger_id="CP-1")
    assert len(records) == 1
    assert records[0].meter_stop is not None and records[0].meter_stop - records[0].meter_start == 300
    assert report.energy_wh == 300


async def test_repeated_start_and_1970_clock_do_not_double_or_corrupt_the_session(edge: Edge) -> None:
    async with SimulatedCharger("CP-1", _url(edge)) as charger:
        charger.faults.repeat.update({"StartTransaction", "StopTransaction"})
        charger.faults.clock_1970 = True
        await charger.run_session(1, "TAG-1", 500, **FAST)

    records = await _transactions(edge, charger_id="CP-1")
    assert len(records) == 1, "a repeated StartTransaction is one session"
    assert records[0].clock_suspect
    assert records[0].meter_stop == 500


async def test_connector_fault_is_seen_by_the_edge(edge: Edge) -> None:
    async with SimulatedCharger("CP-1", _url(edge)) as charger:
        await charger.report_fault(1, "GroundFailure")
        async with asyncio.timeout(20):
            while True:
                connectors = {c.connector_id: c for c in await _connectors(edge, "CP-1")}
                if connectors.get(1) is not None and connectors[1].status == "Faulted":
                    break
                await asyncio.sleep(0.02)


async def test_load_of_twenty_chargers_against_the_edge_has_no_errors(edge: Edge) -> None:
    stats = await run_load(LoadOptions(_url(edge), 20, meter_interval=0.25, duration_s=2.0, id_tag="TAG-1"))

    assert stats.errors == 0, stats.last_error
    assert stats.answered >= 20 * 8
    records = await _transactions(edge, limit=100)
    assert len(records) == 20 and all(not r.active for r in records)


async def test_small_car_park_plays_end_to_end_against_the_edge(edge: Edge, mosquitto: tuple[str, int],
                                                               topic_root: str) -> None:
    scenario = load_scenario(EXAMPLES / "small-car-park.yaml")
    host, port = mosquitto
    scenario = scenario.model_copy(update={
        "mqtt": scenario.mqtt.model_copy(update={"host": host, "port": port, "root": topic_root}),
        "modbus": scenario.modbus.model_copy(update={"port": services.free_port()}),
    })
    readings: list[BaySensorReading] = []

    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(SensorTopics(topic_root).all_sensors(scenario.site_id), qos=1)

        async def collect() -> None:
            async for message in client.messages:
                readings.append(BaySensorReading.from_json(bytes(message.payload)))  # type: ignore[arg-type]

        collector = asyncio.create_task(collect())
        try:
            report = await asyncio.wait_for(play_scenario(scenario, url=_url(edge), time_compression=1500), 30)

            def all_readings_in() -> bool:  # the last ones may still be on their way through the broker
                assert not collector.done(), collector  # a dead collector would count stale readings
                return len(readings) >= 3

            await poll_until(all_readings_in, within=20)
            await asyncio.sleep(0.2)  # anything more would arrive now
            assert not collector.done(), collector
        finally:
            collector.cancel()

    assert report.errors == []
    assert sorted(r.energy_wh for _, r in report.sessions) == [3000, 4000]
    records = await _transactions(edge, limit=10)
    assert sorted((r.charger_id, r.meter_stop - r.meter_start) for r in records if r.meter_stop is not None) == \
        [("CP-1", 4000), ("CP-2", 3000)]
    assert [(r.bay_id, r.occupied) for r in readings] == [("B-3", False), ("B-3", True), ("B-3", False)]


async def test_edge_central_system_calls_get_real_charger_answers(edge: Edge) -> None:
    """Every feature profile's CALL from the edge gets a schema-valid CALLRESULT from the simulator."""
    expiry = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    profile = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0,
                                                                                          "limit": 3000}]}}
    calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]}, {"unknownKey": ["Nope"]}),
        ("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "4"}, {"status": "Rejected"}),
        ("ReserveNow", {"connectorId": 2, "expiryDate": expiry, "idTag": "TAG-1", "reservationId": 5},
         {"status": "Accepted"}),
        ("CancelReservation", {"reservationId": 5}, {"status": "Accepted"}),
        ("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile}, {"status": "Accepted"}),
        ("GetCompositeSchedule", {"connectorId": 1, "duration": 60}, {"status": "Accepted"}),
        ("ClearChargingProfile", {"id": 1}, {"status": "Accepted"}),
        ("SendLocalList", {"listVersion": 2, "updateType": "Full",
                           "localAuthorizationList": [{"idTag": "TAG-1", "idTagInfo": {"status": "Accepted"}}]},
         {"status": "Accepted"}),
        ("GetLocalListVersion", {}, {"listVersion": 2}),
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1}, {"status": "Accepted"}),
        ("GetDiagnostics", {"location": "ftp://example.invalid/"}, {}),
        ("UpdateFirmware", {"location": "https://example.invalid/fw.bin",
                            "retrieveDate": datetime.now(UTC).isoformat().replace("+00:00", "Z")}, {}),
    ]
    async with SimulatedCharger("CP-1", _url(edge), connectors=2) as charger:
        charger.firmware_step_s = 0.01
        for action, payload, expected in calls:
            answer = await edge.site.call_charger("CP-1", action, payload, origin="test")
            assert answer.kind == "result", (action, answer)
            for key, value in expected.items():
                assert answer.payload[key] == value, (action, answer.payload)
        # The firmware update runs on after its CALLRESULT: Downloading ... Installed, a reboot (boot
        # again), then Idle. Wait until the edge has seen Installed and the charger is Idle again.
        async def updated() -> bool:
            record = await edge.store.get_charger("CP-1")
            return record is not None and record.firmware_status == "Installed" and charger.firmware_status == "Idle"

        await poll_until(updated, within=20)
        assert (await edge.store.get_charger("CP-1")).firmware_status == "Installed"  # type: ignore[union-attr]
        assert charger.registration_status == "Accepted"
        assert charger.firmware_status == "Idle"


async def test_pending_charger_stays_quiet_until_the_edge_accepts_it(tmp_path: Path, offline_port: int) -> None:
    settings = EdgeSettings(site_id=services.fresh_name("cpsim-"), data_dir=tmp_path / "edge", ocpp_port=0,
                            accept_unknown_chargers=True, unknown_chargers_pending=True, mqtt_port=offline_port,
                            admin_enabled=False, heartbeat_interval=60)
    async with Edge(settings) as edge:
        charger = SimulatedCharger("CP-NEW", _url(edge))
        connecting = asyncio.create_task(charger.connect())
        try:
            async with asyncio.timeout(20):
                # Polling on purpose: the charger's state is not an event the test can wait on.
                while charger.registration_status != "Pending":  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            assert not connecting.done(), "a Pending charger sends nothing but BootNotification"
            assert await edge.site.accept_charger("CP-NEW")
            await asyncio.wait_for(connecting, 20)
            assert charger.registration_status == "Accepted"
            assert charger._config["HeartbeatInterval"][0] == "60"  # the interval the edge gave
        finally:
            await charger.close()
            connecting.cancel()


async def test_kwh_meter_values_are_accepted_by_the_edge(edge: Edge) -> None:
    async with SimulatedCharger("CP-1", _url(edge)) as charger:
        charger.faults.report_kwh = True
        report = await charger.run_session(1, "TAG-1", 2500, **FAST)

    record = await edge.store.get_transaction(report.transaction_id)
    assert record is not None and record.meter_stop == 2500
