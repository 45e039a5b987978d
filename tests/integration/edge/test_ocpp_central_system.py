"""The edge as an OCPP 1.6J central system, over a real WebSocket, with an ``ocpp``-library charger."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, SecurityError
from ocpp.v16 import ChargePoint, call
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from edge import Edge, EdgeSettings
from mqtt.envelope import Command
from mqtt.payloads import AuthListEntry, AuthListUpdate, CommandStatus, IdTagStatus
from tests.integration.edge.charger import (
    boot_notification,
    charger,
    now_iso,
    open_socket,
    running,
)

pytestmark = pytest.mark.integration

SUBPROTOCOL = Subprotocol("ocpp1.6")


async def grant(edge: Edge, *entries: AuthListEntry, version: int = 1) -> None:
    """Load the local authorization list the way the cloud does: a full authlist.update."""
    command = Command.new(edge.settings.site_id, AuthListUpdate(version=version, full=True, entries=list(entries)))
    assert await edge.site.handle_command(command) == CommandStatus.ACCEPTED


async def outbox(edge: Edge, message_type: str | None = None) -> list[dict[str, Any]]:
    rows = await edge.store.outbox_batch(10_000)
    return [row.body for row in rows if message_type is None or row.type == message_type]


async def start(cp: ChargePoint, id_tag: str = "TAG-OK", meter_start: int = 1000, connector_id: int = 1,
                timestamp: str | None = None) -> Any:
    return await cp.call(call.StartTransaction(connector_id=connector_id, id_tag=id_tag, meter_start=meter_start,
                                               timestamp=timestamp or now_iso()), suppress=False)


async def test_boot_notification_is_accepted_with_heartbeat_interval_and_utc_time(edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1", boot=False) as cp:
        result = await boot_notification(cp)
        heartbeat = await cp.call(call.Heartbeat(), suppress=False)

    assert result.status == RegistrationStatus.accepted
    assert result.interval == 120
    server_time = datetime.fromisoformat(result.current_time)
    assert server_time.utcoffset() == timedelta(0)
    assert abs(server_time - datetime.now(UTC)) < timedelta(seconds=5)
    assert datetime.fromisoformat(heartbeat.current_time).utcoffset() == timedelta(0)
    boots = await outbox(edge, "charger.boot")
    assert boots == [{"charger_id": "CP-1", "vendor": "Acme", "model": "Wallbox-22", "serial_number": "SN-1",
                      "firmware_version": "1.2.3", "registration_status": "Accepted"}]
    charger_record = await edge.store.get_charger("CP-1")
    assert charger_record is not None and charger_record.accepted


async def test_authorize_answers_from_the_local_auth_list(edge: Edge) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    future = datetime.now(UTC) + timedelta(days=30)
    await grant(edge,
                AuthListEntry(id_tag="TAG-OK", status=IdTagStatus.ACCEPTED, expiry_date=future, parent_id_tag="FLEET"),
                AuthListEntry(id_tag="TAG-BLOCKED", status=IdTagStatus.BLOCKED),
                AuthListEntry(id_tag="TAG-OLD", status=IdTagStatus.ACCEPTED, expiry_date=past))
    async with charger(edge.ocpp_port, "CP-1") as cp:
        answers = {tag: (await cp.call(call.Authorize(id_tag=tag), suppress=False)).id_tag_info
                   for tag in ("TAG-OK", "TAG-BLOCKED", "TAG-OLD", "TAG-NOBODY")}

    assert answers["TAG-OK"]["status"] == AuthorizationStatus.accepted
    assert answers["TAG-OK"]["parent_id_tag"] == "FLEET"
    assert datetime.fromisoformat(answers["TAG-OK"]["expiry_date"]) == future.replace(
        microsecond=future.microsecond // 1000 * 1000)
    assert answers["TAG-BLOCKED"]["status"] == AuthorizationStatus.blocked
    assert answers["TAG-OLD"]["status"] == AuthorizationStatus.expired
    assert answers["TAG-NOBODY"] == {"status": AuthorizationStatus.invalid}


async def test_full_session_ends_in_started_meter_and_stopped_envelopes_with_its_energy(edge: Edge) -> None:
    await grant(edge, AuthListEntry(id_tag="TAG-OK", status=IdTagStatus.ACCEPTED))
    async with charger(edge.ocpp_port, "CP-1") as cp:
        started = await start(cp, meter_start=12_000)
        await cp.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[{
            "timestamp": now_iso(),
            "sampledValue": [{"value": "15500"}, {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"}],
        }]), suppress=False)
        stopped = await cp.call(call.StopTransaction(meter_stop=19_500, timestamp=now_iso(),
                                                     transaction_id=started.transaction_id, id_tag="TAG-OK",
                                                     reason="EVDisconnected"), suppress=False)

    assert started.transaction_id >= 1
    assert started.id_tag_info["status"] == AuthorizationStatus.accepted
    assert stopped.id_tag_info["status"] == AuthorizationStatus.accepted
    session = [row for row in await outbox(edge) if "transaction_id" in row]
    assert [(row.get("energy_wh"), row.get("energy_register_wh")) for row in session] == [
        (None, None), (None, 15_500), (7_500, None)]
    started_body, meter_body, stopped_body = session
    assert started_body["meter_start_wh"] == 12_000 and started_body["id_tag_status"] == "Accepted"
    assert meter_body["power_w"] == 7200.0 and meter_body["transaction_id"] == started.transaction_id
    assert stopped_body["meter_stop_wh"] == 19_500 and stopped_body["reconciled"] is False
    assert stopped_body["reason"] == "EVDisconnected"
    assert [body["transaction_id"] for body in session] == [started.transaction_id] * 3
    types = [row.type for row in await edge.store.outbox_batch(100) if row.type.startswith("session.")]
    assert types == ["session.started", "session.meter", "session.stopped"]


async def test_start_transaction_revalidates_the_id_tag_and_still_answers(edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1") as cp:
        result = await start(cp, id_tag="TAG-NOBODY")

    assert result.transaction_id >= 1
    assert result.id_tag_info["status"] == AuthorizationStatus.invalid
    [body] = await outbox(edge, "session.started")
    assert body["id_tag_status"] == "Invalid"


async def test_repeated_start_transaction_gets_the_same_transaction_id_without_a_second_session(
        edge: Edge) -> None:
    timestamp = now_iso()
    async with charger(edge.ocpp_port, "CP-1") as cp:
        first = await start(cp, timestamp=timestamp)
        again = await start(cp, timestamp=timestamp)
        other = await start(cp, connector_id=2, timestamp=timestamp)

    assert again.transaction_id == first.transaction_id
    assert other.transaction_id > first.transaction_id
    assert len(await outbox(edge, "session.started")) == 2


async def test_stop_of_unknown_or_minus_one_transaction_is_answered_and_reconciled_once(edge: Edge) -> None:
    stop_time = now_iso()
    async with charger(edge.ocpp_port, "CP-1") as cp:
        for transaction_id in (-1, 987_654, 987_654):
            answer = await cp.call(call.StopTransaction(
                meter_stop=5_000, timestamp=stop_time, transaction_id=transaction_id, reason="PowerLoss",
                transaction_data=[{"timestamp": stop_time, "sampledValue": [
                    {"value": "2000", "context": "Transaction.Begin"},
                    {"value": "5000", "context": "Transaction.End"}]}],
            ), suppress=False)
            assert answer.id_tag_info is None

    stops = await outbox(edge, "session.stopped")
    assert [(s["transaction_id"], s["reconciled"], s["energy_wh"], s["meter_start_wh"]) for s in stops] == [
        (-1, True, 3_000, 2_000), (987_654, True, 3_000, 2_000)]


async def test_repeated_stop_is_relayed_once_and_negative_energy_is_never_billed(edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1") as cp:
        started = await start(cp, meter_start=50_000)
        for _ in range(2):  # a retry after a lost CALLRESULT
            await cp.call(call.StopTransaction(meter_stop=100, timestamp=now_iso(),
                                               transaction_id=started.transaction_id), suppress=False)

    [stopped] = await outbox(edge, "session.stopped")
    assert stopped["energy_wh"] == 0 and stopped["meter_stop_wh"] == 100 and stopped["reconciled"] is False


async def test_timestamps_from_an_unset_clock_are_accepted_flagged_and_never_give_negative_durations(
        edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1") as cp:
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing",
                                              timestamp="1970-01-01T00:00:05Z"), suppress=False)
        started = await start(cp, timestamp="1970-01-01T00:00:10Z")
        await cp.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
            {"timestamp": "1970-01-01T00:05:00Z", "sampledValue": [{"value": "1500"}]}]), suppress=False)
        await cp.call(call.StopTransaction(meter_stop=2_000, timestamp="1970-01-01T00:00:01Z",
                                           transaction_id=started.transaction_id), suppress=False)

    status, start_body, meter_body, stop_body = [
        row for row in await outbox(edge) if "clock_suspect" in row]
    assert all(body["clock_suspect"] for body in (status, start_body, meter_body, stop_body))
    began = datetime.fromisoformat(start_body["started_at"])
    ended = datetime.fromisoformat(stop_body["stopped_at"])
    assert began.year >= 2024 and ended >= began
    assert stop_body["energy_wh"] == 1_000


async def test_meter_values_in_kwh_are_relayed_in_wh_and_other_units_do_not_break_them(edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1") as cp:
        started = await start(cp)
        await cp.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[{
            "timestamp": now_iso(),
            "sampledValue": [
                {"value": "7.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
                {"value": "11", "unit": "kW", "measurand": "Power.Active.Import"},
                {"value": "31.5", "unit": "Celcius", "measurand": "Temperature"},
                {"value": "31.5", "unit": "Celsius", "measurand": "Temperature"},
                {"value": "not-a-number", "unit": "Wh"},
            ],
        }, {
            "timestamp": now_iso(), "sampledValue": [{"value": "230", "unit": "V", "measurand": "Voltage"}],
        }]), suppress=False)

    [meter] = await outbox(edge, "session.meter")
    assert meter["energy_register_wh"] == 7_500
    assert meter["power_w"] == 11_000.0


async def test_unknown_charger_gets_http_404_unless_unknown_chargers_are_accepted(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(accept_unknown_chargers=False)) as edge:
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(edge.ocpp_port, "CP-STRANGER"):
                pass
        assert refused.value.response.status_code == 404

        with pytest.raises(InvalidStatus) as wrong_path:
            async with connect(f"ws://127.0.0.1:{edge.ocpp_port}/other/CP-1", subprotocols=[SUBPROTOCOL]):
                pass
        assert wrong_path.value.response.status_code == 404

        await edge.store.register_charger("CP KNOWN/1")
        async with charger(edge.ocpp_port, "CP KNOWN/1") as cp:  # percent-decoded id
            await cp.call(call.Heartbeat(), suppress=False)
        known = await edge.store.get_charger("CP KNOWN/1")
        assert known is not None and known.vendor == "Acme"


async def test_a_second_connection_with_the_same_id_replaces_the_first(edge: Edge) -> None:
    async with open_socket(edge.ocpp_port, "CP-1") as first_socket:
        first = ChargePoint("CP-1", first_socket, response_timeout=5)
        async with running(first):
            await boot_notification(first)
            async with charger(edge.ocpp_port, "CP-1", boot=False) as second:
                await asyncio.wait_for(first_socket.wait_closed(), 5)
                assert first_socket.close_code == 1000
                # No re-boot needed: the accepted state survives reconnects.
                await second.call(call.Heartbeat(), suppress=False)
                assert edge.ocpp.connected_chargers == ["CP-1"]
                assert edge.ocpp.connection("CP-1") is not None


async def test_malformed_frames_get_1_6_call_errors_and_the_connection_stays_up(edge: Edge) -> None:
    async def exchange(ws: Any, frame: str) -> list[Any]:
        await ws.send(frame)
        return list(json.loads(await asyncio.wait_for(ws.recv(), 5)))

    async with open_socket(edge.ocpp_port, "CP-1") as ws:
        extra_field = '[2,"m1","BootNotification",{"chargePointVendor":"A","chargePointModel":"B","x":1}]'
        assert (await exchange(ws, extra_field))[:3] == [4, "m1", "FormationViolation"]
        assert (await exchange(ws, '[2,"m2","Heartbeat","not an object"]'))[:3] == [4, "m2", "FormationViolation"]
        assert (await exchange(ws, '[2,"m3","BootNotification",{"chargePointVendor":'))[:3] == [
            4, "m3", "FormationViolation"]
        assert (await exchange(ws, '[2,"m4","BootNotification",{"chargePointModel":"B"}]'))[:3] == [
            4, "m4", "ProtocolError"]
        bad_type = '[2,"m5","BootNotification",{"chargePointVendor":5,"chargePointModel":"B"}]'
        assert (await exchange(ws, bad_type))[:3] == [4, "m5", "TypeConstraintViolation"]
        await ws.send('[7,"ignored"]')  # OCPP-J: an unknown message type is ignored, not answered
        error = await exchange(ws, '[2,"m6","Heartbeat",{}]')
        assert error[:3] == [4, "m6", "SecurityError"]  # no accepted boot yet
        assert error[4] == {} or isinstance(error[4], dict)

        cp = ChargePoint("CP-1", ws, response_timeout=5)
        async with running(cp):
            assert (await boot_notification(cp)).status == RegistrationStatus.accepted
            await cp.call(call.Heartbeat(), suppress=False)
            with pytest.raises(OcppNotImplemented):
                await cp.call(_Unknown(), suppress=False, skip_schema_validation=True)
            with pytest.raises(NotSupportedError):
                await cp.call(call.GetLocalListVersion(), suppress=False)
            await cp.call(call.Heartbeat(), suppress=False)


@dataclass
class _Unknown:
    """A CALL named after no OCPP 1.6 action (the ocpp library names a CALL after its class)."""


async def test_calls_before_an_accepted_boot_get_security_error_but_a_reconnect_keeps_acceptance(
        edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1", boot=False) as cp:
        with pytest.raises(SecurityError):
            await cp.call(call.Heartbeat(), suppress=False)
        await boot_notification(cp)
    async with charger(edge.ocpp_port, "CP-1", boot=False) as cp:
        await cp.call(call.Heartbeat(), suppress=False)


async def test_a_connection_without_the_ocpp16_subprotocol_is_closed(edge: Edge) -> None:
    for offered in ((), ("ocpp2.0.1",)):
        async with open_socket(edge.ocpp_port, "CP-1", subprotocols=offered) as ws:
            assert ws.subprotocol is None
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1002


async def test_transaction_ids_survive_an_edge_restart(make_settings: Callable[..., EdgeSettings]) -> None:
    settings = make_settings()
    async with Edge(settings) as edge, charger(edge.ocpp_port, "CP-1") as cp:
        before = [(await start(cp, meter_start=n)).transaction_id for n in range(3)]
    async with Edge(settings) as edge, charger(edge.ocpp_port, "CP-1", boot=False) as cp:
        after = (await start(cp, meter_start=99)).transaction_id
        assert await edge.store.get_transaction(before[-1]) is not None

    assert before == sorted(set(before))
    assert after > max(before)
