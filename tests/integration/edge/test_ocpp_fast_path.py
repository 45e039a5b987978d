"""The hot CALLs (MeterValues, Heartbeat, StatusNotification) of an accepted charger take the compiled
schema's fast path, and answer exactly as the library's generic path does."""

from __future__ import annotations

import json
from typing import Any

import ocpp.charge_point
import pytest
from ocpp.messages import CallResult, _validate_payload
from websockets.asyncio.client import ClientConnection

from edge import Edge
from tests.integration.edge.charger import now_iso, open_socket

pytestmark = pytest.mark.integration

METER = {"connectorId": 1, "transactionId": 5, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
    {"value": "12.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register"},
    {"value": "7360", "unit": "W", "measurand": "Power.Active.Import"}]}]}


async def exchange(ws: ClientConnection, message_id: str, action: str, payload: Any) -> list[Any]:
    await ws.send(json.dumps([2, message_id, action, payload]))
    answer = json.loads(await ws.recv())
    assert answer[1] == message_id
    return list(answer)


async def boot(ws: ClientConnection) -> None:
    answer = await exchange(ws, "boot", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert answer[2]["status"] == "Accepted"


@pytest.fixture
def library_validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The actions the library's own (generic path) validation ran for."""
    seen: list[str] = []
    original = ocpp.charge_point.validate_payload

    async def counting(message: Any, version: str) -> None:
        seen.append(message.action)
        await original(message, version)

    monkeypatch.setattr(ocpp.charge_point, "validate_payload", counting)
    return seen


async def test_hot_calls_are_answered_without_the_library_validation(edge: Edge,
                                                                    library_validations: list[str]) -> None:
    async with open_socket(edge.ocpp_port, "CP-FAST") as ws:
        await boot(ws)
        meter = await exchange(ws, "m1", "MeterValues", METER)
        heartbeat = await exchange(ws, "h1", "Heartbeat", {})
        status = await exchange(ws, "s1", "StatusNotification",
                                {"connectorId": 1, "errorCode": "NoError", "status": "Charging",
                                 "timestamp": now_iso()})

    assert meter == [3, "m1", {}]
    assert status == [3, "s1", {}]
    assert heartbeat[:2] == [3, "h1"] and list(heartbeat[2]) == ["currentTime"]
    assert heartbeat[2]["currentTime"].endswith("Z")
    _validate_payload(CallResult("h1", heartbeat[2], action="Heartbeat"), "1.6")
    assert library_validations.count("BootNotification") == 2  # request and answer, generic path
    assert not {"MeterValues", "Heartbeat", "StatusNotification"} & set(library_validations)

    rows = await edge.store.outbox_batch(100)
    meters = [row.body for row in rows if row.type == "session.meter"]
    assert len(meters) == 1
    assert meters[0]["energy_register_wh"] == 12500 and meters[0]["power_w"] == 7360.0
    assert meters[0]["transaction_id"] == 5
    assert [row.body["status"] for row in rows if row.type == "charger.status"] == ["Charging"]


@pytest.mark.parametrize(("payload", "code"), [
    ({**METER, "connectorId": "1"}, "TypeConstraintViolation"),
    ({**METER, "connectorId": 1.0}, "TypeConstraintViolation"),
    ({**METER, "vendorExtension": 1}, "FormationViolation"),  # 1.6 spelling on the wire
    ({"connectorId": 1}, "ProtocolError"),
    ({**METER, "meterValue": []}, "FormationViolation"),
])
async def test_an_invalid_hot_call_gets_the_library_error(edge: Edge, payload: dict[str, Any], code: str) -> None:
    async with open_socket(edge.ocpp_port, "CP-BAD") as ws:
        await boot(ws)
        answer = await exchange(ws, "bad", "MeterValues", payload)
        after = await exchange(ws, "ok", "MeterValues", METER)  # the connection stays up
    assert answer[0] == 4 and answer[2] == code
    assert after == [3, "ok", {}]
    assert not [row for row in await edge.store.outbox_batch(100) if row.type == "session.meter"
                and row.body["energy_register_wh"] != 12500]


async def test_a_hot_call_before_an_accepted_boot_is_refused(edge: Edge) -> None:
    async with open_socket(edge.ocpp_port, "CP-NOBOOT") as ws:
        answer = await exchange(ws, "m1", "MeterValues", METER)
    assert answer[0] == 4 and answer[2] == "SecurityError"


@pytest.mark.parametrize(("transaction_id", "expected"), [(2**63 - 1, 3), (2**63, 4), (-(2**63) - 1, 4)])
async def test_integers_beyond_sqlite_are_refused_on_the_fast_path_too(edge: Edge, transaction_id: int,
                                                                       expected: int) -> None:
    async with open_socket(edge.ocpp_port, "CP-BIG") as ws:
        await boot(ws)
        answer = await exchange(ws, "big", "MeterValues", {**METER, "transactionId": transaction_id})
    assert answer[0] == expected
    if expected == 4:
        assert answer[2] == "PropertyConstraintViolation"
