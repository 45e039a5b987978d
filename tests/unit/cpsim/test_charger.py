"""The simulated charger against an independent minimal central system (ocpp + websockets only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.v16 import call
from ocpp.v16.enums import AvailabilityType, MessageTrigger

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.errors import (
    AuthorizationRefused,
    CentralSystemUnreachable,
    ConnectionLost,
    ConnectorNotAvailable,
)
from tests.unit.cpsim.central_system import CentralSystem

FAST: dict[str, Any] = {"meter_interval": 0.001, "speedup": 20_000}
"""Each wall millisecond covers 20 simulated seconds: a 7.5 kWh session takes well under a second."""


@pytest.fixture
async def central() -> AsyncIterator[CentralSystem]:
    async with CentralSystem() as system:
        yield system


def _energy_and_power(meter_values: list[dict[str, Any]]) -> list[tuple[int, float]]:
    readings = []
    for message in meter_values:
        for meter_value in message["meter_value"]:
            values = {v["measurand"]: v for v in meter_value["sampled_value"]}
            energy = values["Energy.Active.Import.Register"]
            power = values["Power.Active.Import"]
            assert (energy["unit"], power["unit"]) == ("Wh", "W")
            readings.append((int(energy["value"]), float(power["value"])))
    return readings


async def test_session_stops_with_exactly_the_requested_energy(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        report = await charger.run_session(1, "TAG-1", 7500, power_w=11000, **FAST)

    start, = central.of("StartTransaction")
    stop, = central.of("StopTransaction")
    assert stop["meter_stop"] - start["meter_start"] == 7500
    assert stop["transaction_id"] == start["transaction_id"] == report.transaction_id
    assert stop["reason"] == "Local"
    assert stop["id_tag"] == "TAG-1"
    contexts = [v["context"] for mv in stop["transaction_data"] for v in mv["sampled_value"]]
    assert contexts == ["Transaction.Begin", "Transaction.End"]
    assert (report.meter_start_wh, report.meter_stop_wh, report.energy_wh) == (0, 7500, 7500)
    assert report.id_tag_status == "Accepted"


async def test_session_walks_the_ocpp_sequence_of_messages_and_statuses(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url, connectors=2) as charger:
        await charger.run_session(2, "TAG-1", 500, **FAST)

    actions = [r.action for r in central.received if r.action != "MeterValues"]
    assert actions[0] == "BootNotification"
    session = actions[actions.index("Authorize"):]
    assert session == ["Authorize", "StatusNotification", "StartTransaction", "StatusNotification",
                       "StopTransaction", "StatusNotification", "StatusNotification"]
    statuses = [(s["connector_id"], s["status"]) for s in central.of("StatusNotification")]
    assert statuses[:3] == [(0, "Available"), (1, "Available"), (2, "Available")]
    assert statuses[3:] == [(2, "Preparing"), (2, "Charging"), (2, "Finishing"), (2, "Available")]


async def test_power_tapers_in_the_last_fifth_of_the_energy(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        await charger.run_session(1, "TAG-1", 7500, power_w=11000, **FAST)

    readings = _energy_and_power(central.of("MeterValues"))
    powers = [power for _, power in readings]
    assert powers == sorted(powers, reverse=True), "power never rises during a session"
    early = [power for energy, power in readings if energy <= 0.8 * 7500]
    late = [power for energy, power in readings if energy > 0.9 * 7500]
    assert set(early) == {11000.0}
    assert late and max(late) < 11000 * 0.6
    assert min(powers) >= 11000 * 0.1
    energies = [energy for energy, _ in readings]
    assert energies == sorted(energies) and energies[-1] == 7500


async def test_meter_register_carries_over_to_the_next_session(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        first = await charger.run_session(1, "TAG-1", 1200, meter_start_wh=50_000, **FAST)
        second = await charger.run_session(1, "TAG-1", 800, **FAST)

    assert (first.meter_start_wh, first.meter_stop_wh) == (50_000, 51_200)
    assert (second.meter_start_wh, second.meter_stop_wh) == (51_200, 52_000)
    assert second.transaction_id != first.transaction_id


async def test_authorize_refused_raises_and_starts_nothing() -> None:
    async with CentralSystem(refused_tags={"STOLEN": "Blocked"}) as central, \
            SimulatedCharger("CP-1", central.url) as charger:
        with pytest.raises(AuthorizationRefused) as refused:
            await charger.run_session(1, "STOLEN", 1000, **FAST)
        assert refused.value.status == "Blocked"
        assert "STOLEN" in str(refused.value)
        assert central.of("StartTransaction") == []
        # the connector is free again for the next driver
        report = await charger.run_session(1, "TAG-1", 100, **FAST)
        assert report.energy_wh == 100


async def test_tag_refused_in_start_transaction_stops_the_transaction_at_once() -> None:
    async with CentralSystem(start_refused_tags={"EXPIRED": "Expired"}) as central, \
            SimulatedCharger("CP-1", central.url) as charger:
        with pytest.raises(AuthorizationRefused) as refused:
            await charger.run_session(1, "EXPIRED", 1000, **FAST)
        assert refused.value.during == "StartTransaction"
    stop, = central.of("StopTransaction")
    assert stop["reason"] == "DeAuthorized"
    assert stop["meter_stop"] == central.of("StartTransaction")[0]["meter_start"]


async def test_get_configuration_lists_unknown_keys(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url):
        answer = await central.points["CP-1"].call(
            call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]))
        everything = await central.points["CP-1"].call(call.GetConfiguration())

    assert answer.unknown_key == ["NoSuchKey"]
    assert answer.configuration_key == [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
    keys = {entry["key"] for entry in everything.configuration_key}
    assert {"HeartbeatInterval", "MeterValueSampleInterval", "SupportedFeatureProfiles"} <= keys
    assert not everything.unknown_key


async def test_change_configuration_rejects_read_only_and_unknown_keys(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url):
        point = central.points["CP-1"]
        read_only = await point.call(call.ChangeConfiguration(key="SupportedFeatureProfiles", value="Core"))
        unknown = await point.call(call.ChangeConfiguration(key="NoSuchKey", value="1"))
        not_a_number = await point.call(call.ChangeConfiguration(key="HeartbeatInterval", value="soon"))
        accepted = await point.call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="15"))
        after = await point.call(call.GetConfiguration(key=["MeterValueSampleInterval"]))

    assert (read_only.status, unknown.status, not_a_number.status, accepted.status) == (
        "Rejected", "NotSupported", "Rejected", "Accepted")
    assert after.configuration_key[0]["value"] == "15"


async def test_heartbeats_follow_the_interval_from_boot() -> None:
    async with CentralSystem(heartbeat_interval=1) as central, SimulatedCharger("CP-1", central.url):
        await central.wait_until(lambda: len(central.of("Heartbeat")) >= 1, within=10)


async def test_pending_boot_is_retried_and_a_triggered_boot_comes_at_once() -> None:
    async with CentralSystem(boot_answers=[("Pending", 60), ("Rejected", 1)]) as central:
        charger = SimulatedCharger("CP-1", central.url)
        entering = asyncio.create_task(charger.__aenter__())
        await central.wait_until(lambda: len(central.of("BootNotification")) == 1)
        assert central.of("StatusNotification") == [], "a Pending charger stays silent"
        trigger = await central.points["CP-1"].call(
            call.TriggerMessage(requested_message=MessageTrigger.boot_notification))
        assert trigger.status == "Accepted"
        # second boot is Rejected with interval 1 s; the third is Accepted
        await asyncio.wait_for(entering, timeout=15)
        try:
            assert len(central.of("BootNotification")) == 3
            assert charger.registration_status == "Accepted"
        finally:
            await charger.close()


async def test_remote_start_and_remote_stop(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url, remote_session_energy_wh=50_000):
        point = central.points["CP-1"]
        started = await point.call(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        assert started.status == "Accepted"
        await central.wait_until(lambda: bool(central.of("StartTransaction")))
        transaction_id = central.of("StartTransaction")[0]["transaction_id"]
        busy = await point.call(call.RemoteStartTransaction(id_tag="APP-2", connector_id=1))
        assert busy.status == "Rejected"
        stopped = await point.call(call.RemoteStopTransaction(transaction_id=transaction_id))
        assert stopped.status == "Accepted"
        await central.wait_until(lambda: bool(central.of("StopTransaction")))
        unknown = await point.call(call.RemoteStopTransaction(transaction_id=transaction_id))
        assert unknown.status == "Rejected"
    assert central.of("StopTransaction")[0]["reason"] == "Remote"
    assert central.of("Authorize") == [], "AuthorizeRemoteTxRequests is false by default"


async def test_change_availability_makes_the_connector_unavailable(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        point = central.points["CP-1"]
        answer = await point.call(call.ChangeAvailability(connector_id=1, type=AvailabilityType.inoperative))
        assert answer.status == "Accepted"
        await central.wait_until(lambda: charger.connector_status(1) == "Unavailable")
        await central.wait_until(lambda: central.of("StatusNotification")[-1]["status"] == "Unavailable")
        with pytest.raises(ConnectorNotAvailable):
            await charger.run_session(1, "TAG-1", 100, **FAST)
        unknown = await point.call(call.ChangeAvailability(connector_id=9, type=AvailabilityType.operative))
        assert unknown.status == "Rejected"


async def test_minimal_answers_to_the_other_core_calls(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url):
        point = central.points["CP-1"]
        assert (await point.call(call.ClearCache())).status == "Accepted"
        assert (await point.call(call.DataTransfer(vendor_id="acme"))).status == "UnknownVendorId"
        assert (await point.call(call.UnlockConnector(connector_id=1))).status == "Unlocked"
        triggered = await point.call(call.TriggerMessage(
            requested_message=MessageTrigger.diagnostics_status_notification))
        assert triggered.status == "Accepted"
        await central.wait_until(lambda: bool(central.of("DiagnosticsStatusNotification")))
        assert (await point.call(call.Reset(type="Soft"))).status == "Accepted"
        await central.wait_until(lambda: len(central.of("BootNotification")) == 2)


async def test_charger_id_is_percent_encoded_in_the_url() -> None:
    async with CentralSystem(known={"CP 1/ä"}) as central, SimulatedCharger("CP 1/ä", central.url):
        await central.wait_until(lambda: bool(central.of("BootNotification", "CP 1/ä")))


async def test_basic_auth_password_is_sent_and_a_wrong_one_is_explained() -> None:
    async with CentralSystem(passwords={"CP-1": "0123456789abcdef"}) as central:
        async with SimulatedCharger("CP-1", central.url, basic_auth_password="0123456789abcdef"):
            pass
        with pytest.raises(CentralSystemUnreachable, match=r"HTTP 401.*--password"):
            async with SimulatedCharger("CP-1", central.url, basic_auth_password="wrong-password-000"):
                pass


async def test_unknown_charger_gets_a_404_explanation() -> None:
    async with CentralSystem(known={"CP-1"}) as central:
        with pytest.raises(CentralSystemUnreachable, match=r"does not know charger 'CP-9' \(HTTP 404\)"):
            async with SimulatedCharger("CP-9", central.url):
                pass


async def test_reconnect_keeps_the_meter_and_does_not_boot_again(central: CentralSystem) -> None:
    charger = SimulatedCharger("CP-1", central.url)
    async with charger:
        await charger.run_session(1, "TAG-1", 300, **FAST)
    async with charger:
        report = await charger.run_session(1, "TAG-1", 200, **FAST)
    assert len(central.of("BootNotification")) == 1, "a plain reconnect sends no BootNotification"
    assert (report.meter_start_wh, report.meter_stop_wh) == (300, 500)
    statuses = [(s["connector_id"], s["status"]) for s in central.of("StatusNotification")]
    assert statuses.count((0, "Available")) == 2, "statuses are announced again after the reconnect"


async def test_a_dropped_connection_fails_the_session_at_once(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url, response_timeout=30) as charger:
        session = asyncio.create_task(charger.run_session(1, "TAG-1", 10**9, meter_interval=0.01))
        await central.wait_until(lambda: bool(central.of("MeterValues")))
        await central.drop("CP-1")
        with pytest.raises(ConnectionLost, match="closed the connection"):
            await asyncio.wait_for(session, timeout=10)  # at once: well below response_timeout
        assert not charger.connected


async def test_tls_to_a_plain_port_is_explained(central: CentralSystem) -> None:
    tls_url = central.url.replace("ws://", "wss://")
    with pytest.raises(CentralSystemUnreachable, match=r"TLS handshake .* failed .*ws:// or wss://"):
        async with SimulatedCharger("CP-1", tls_url, open_timeout=10):
            pass
