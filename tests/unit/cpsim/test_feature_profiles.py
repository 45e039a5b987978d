"""The central system's messages of the optional feature profiles, sent by an ocpp-library-only
central system: reservations block the connector, charging profiles limit the simulated power,
the local list answers offline, firmware and diagnostics walk their status sequences."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.errors import AuthorizationRefused, ConnectorNotAvailable
from tests.unit.cpsim.central_system import CentralSystem

FAST: dict[str, Any] = {"meter_interval": 0.001, "speedup": 2_000}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _profile(profile_id: int, purpose: str, limit: float, *, unit: str = "W", stack_level: int = 0,
             **extra: Any) -> dict[str, Any]:
    return {"chargingProfileId": profile_id, "stackLevel": stack_level, "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Relative", **extra,
            "chargingSchedule": {"chargingRateUnit": unit,
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}


@pytest.fixture
async def central() -> AsyncIterator[CentralSystem]:
    async with CentralSystem() as system:
        yield system


async def test_reservation_blocks_the_connector_for_other_tags_and_is_used_by_its_own(
        central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        point = central.points["CP-1"]
        expiry = _iso(datetime.now(UTC) + timedelta(minutes=5))
        answer = await point.call(call.ReserveNow(connector_id=1, expiry_date=expiry, id_tag="OWNER",
                                                  reservation_id=7))
        assert answer.status == "Accepted"
        await central.wait_until(lambda: charger.connector_status(1) == "Reserved")
        other = await point.call(call.ReserveNow(connector_id=1, expiry_date=expiry, id_tag="X", reservation_id=8))
        assert other.status == "Occupied"
        assert (await point.call(call.ReserveNow(connector_id=0, expiry_date=expiry, id_tag="X",
                                                 reservation_id=9))).status == "Rejected"
        with pytest.raises(ConnectorNotAvailable, match="Reserved"):
            await charger.run_session(1, "SOMEONE-ELSE", 100, **FAST)
        remote = await point.call(call.RemoteStartTransaction(id_tag="SOMEONE-ELSE", connector_id=1))
        assert remote.status == "Rejected"
        await charger.run_session(1, "OWNER", 100, **FAST)

    start, = central.of("StartTransaction")
    assert start["reservation_id"] == 7
    statuses = [s["status"] for s in central.of("StatusNotification") if s["connector_id"] == 1]
    assert statuses[1:3] == ["Reserved", "Preparing"]


async def test_reservation_cancelled_or_expired_frees_the_connector(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url, connectors=2) as charger:
        point = central.points["CP-1"]
        long = _iso(datetime.now(UTC) + timedelta(minutes=5))
        short = _iso(datetime.now(UTC) + timedelta(seconds=0.3))
        assert (await point.call(call.ReserveNow(connector_id=1, expiry_date=long, id_tag="A",
                                                 reservation_id=1))).status == "Accepted"
        assert (await point.call(call.ReserveNow(connector_id=2, expiry_date=short, id_tag="B",
                                                 reservation_id=2))).status == "Accepted"
        assert (await point.call(call.CancelReservation(reservation_id=1))).status == "Accepted"
        assert (await point.call(call.CancelReservation(reservation_id=99))).status == "Rejected"
        await central.wait_until(lambda: charger.connector_status(1) == "Available"
                                 and charger.connector_status(2) == "Available", within=10)
        await charger.run_session(2, "ANYONE", 50, **FAST)


async def test_charging_profile_really_limits_the_simulated_power(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        point = central.points["CP-1"]
        # A default for new transactions on the whole charger: 16 A on 3 phases = 11,040 W; and a
        # charger-wide cap of 4,000 W, which wins.
        default = await point.call(call.SetChargingProfile(
            connector_id=0, cs_charging_profiles=_profile(1, "TxDefaultProfile", 16, unit="A")))
        cap = await point.call(call.SetChargingProfile(
            connector_id=0, cs_charging_profiles=_profile(2, "ChargePointMaxProfile", 4000)))
        assert (default.status, cap.status) == ("Accepted", "Accepted")
        session = asyncio.create_task(charger.run_session(1, "TAG-1", 3000, power_w=11000, meter_interval=0.01,
                                                          speedup=100))
        await central.wait_until(lambda: len(central.of("MeterValues")) >= 3)
        # During the transaction, a TxProfile of 2,000 W for it; then the cap is cleared.
        transaction_id = central.of("StartTransaction")[0]["transaction_id"]
        tx = await point.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=_profile(
            3, "TxProfile", 2000, transactionId=transaction_id)))
        assert tx.status == "Accepted"
        schedule = await point.call(call.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="W"))
        assert schedule.status == "Accepted"
        assert schedule.charging_schedule["charging_schedule_period"][0]["limit"] == 2000
        count = len(central.of("MeterValues"))
        await central.wait_until(lambda: len(central.of("MeterValues")) >= count + 3)
        assert (await point.call(call.ClearChargingProfile(id=3))).status == "Accepted"
        assert (await point.call(call.ClearChargingProfile(id=3))).status == "Unknown"
        charger.stop_session(1)
        await session

    powers = [float(v["value"]) for m in central.of("MeterValues") for mv in m["meter_value"]
              for v in mv["sampled_value"] if v["measurand"] == "Power.Active.Import"]
    assert max(powers) == 4000, "the ChargePointMaxProfile caps the 11 kW charger"
    assert 2000 in powers
    assert all(p <= 4000 for p in powers)


async def test_charging_profiles_that_break_the_rules_are_rejected(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url):
        point = central.points["CP-1"]
        on_connector = await point.call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=_profile(1, "ChargePointMaxProfile", 4000)))
        without_transaction = await point.call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=_profile(2, "TxProfile", 4000)))
        too_high = await point.call(call.SetChargingProfile(
            connector_id=1, cs_charging_profiles=_profile(3, "TxDefaultProfile", 4000, stack_level=11)))
        config = await point.call(call.GetConfiguration(key=["ChargeProfileMaxStackLevel",
                                                             "SupportedFeatureProfiles"]))

    assert (on_connector.status, without_transaction.status, too_high.status) == ("Rejected",) * 3
    values = {entry["key"]: entry for entry in config.configuration_key}
    assert values["ChargeProfileMaxStackLevel"] == {"key": "ChargeProfileMaxStackLevel", "readonly": True,
                                                    "value": "10"}
    assert set(values["SupportedFeatureProfiles"]["value"].split(",")) == {
        "Core", "FirmwareManagement", "LocalAuthListManagement", "Reservation", "SmartCharging", "RemoteTrigger"}


async def test_local_list_is_versioned_and_decides_offline(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        point = central.points["CP-1"]
        assert (await point.call(call.GetLocalListVersion())).list_version == 0
        full = await point.call(call.SendLocalList(list_version=3, update_type="Full", local_authorization_list=[
            {"idTag": "GOOD", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "BAD", "idTagInfo": {"status": "Blocked"}}]))
        stale = await point.call(call.SendLocalList(list_version=2, update_type="Differential",
                                                    local_authorization_list=[{"idTag": "GOOD"}]))
        assert (full.status, stale.status) == ("Accepted", "VersionMismatch")
        assert (await point.call(call.GetLocalListVersion())).list_version == 3

        await charger.go_offline()
        with pytest.raises(AuthorizationRefused):
            await charger.run_session(1, "BAD", 50, **FAST)
        await charger.run_session(1, "GOOD", 50, **FAST)
        await charger.go_online()

    assert [s["id_tag"] for s in central.of("StartTransaction")] == ["GOOD"]


async def test_firmware_update_and_diagnostics_walk_their_status_sequences(central: CentralSystem) -> None:
    async with SimulatedCharger("CP-1", central.url) as charger:
        charger.firmware_step_s = 0.01
        point = central.points["CP-1"]
        await point.call(call.UpdateFirmware(location="https://example.invalid/fw.bin",
                                             retrieve_date=_iso(datetime.now(UTC))))
        await central.wait_until(lambda: len(central.of("BootNotification")) == 2)
        diagnostics = await point.call(call.GetDiagnostics(location="ftp://example.invalid/upload"))
        assert diagnostics.file_name.startswith("diagnostics-CP-1-")
        await central.wait_until(lambda: len(central.of("DiagnosticsStatusNotification")) == 2)
        await point.call(call.UpdateFirmware(location="https://fail.example.invalid/fw.bin",
                                             retrieve_date=_iso(datetime.now(UTC))))
        await central.wait_until(lambda: len(central.of("FirmwareStatusNotification")) == 6)

    firmware = [m["status"] for m in central.of("FirmwareStatusNotification")]
    assert firmware == ["Downloading", "Downloaded", "Installing", "Installed", "Downloading", "DownloadFailed"]
    assert [m["status"] for m in central.of("DiagnosticsStatusNotification")] == ["Uploading", "Uploaded"]
