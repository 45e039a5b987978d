"""Every OCPP 1.6 message of the six feature profiles and the security extension, both directions,
over a real WebSocket with an ``ocpp``-library charger; CALLs to chargers go through the admin API."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from ocpp.charge_point import camel_to_snake_case
from ocpp.v16 import call

from edge import Edge, EdgeSettings
from edge.site import CHARGER_ACTIONS
from tests.integration.edge.charger import (
    CHARGER_ANSWERS,
    AnsweringCharger,
    answering_charger,
    boot_notification,
    charger,
    now_iso,
    open_socket,
    running,
)
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration

PROFILE = {"chargingProfileId": 9, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
           "chargingProfileKind": "Absolute",
           "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}}

REQUESTS: dict[str, dict[str, Any]] = {
    "ChangeAvailability": {"connectorId": 0, "type": "Inoperative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "60"},
    "ClearCache": {},
    "DataTransfer": {"vendorId": "evpark", "messageId": "ping", "data": "x"},
    "GetConfiguration": {"key": ["SupportedFeatureProfiles"]},
    "RemoteStartTransaction": {"connectorId": 1, "idTag": "TAG-OK"},
    "RemoteStopTransaction": {"transactionId": 5},
    "Reset": {"type": "Soft"},
    "UnlockConnector": {"connectorId": 1},
    "GetDiagnostics": {"location": "ftp://example.com/diagnostics"},
    "UpdateFirmware": {"location": "https://example.com/fw.bin", "retrieveDate": "2030-01-01T00:00:00Z"},
    "GetLocalListVersion": {},
    "SendLocalList": {"listVersion": 3, "updateType": "Full",
                      "localAuthorizationList": [{"idTag": "TAG-OK", "idTagInfo": {"status": "Accepted"}}]},
    "ReserveNow": {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "TAG-OK", "reservationId": 42},
    "CancelReservation": {"reservationId": 42},
    "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": PROFILE},
    "ClearChargingProfile": {"id": 9},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
    "TriggerMessage": {"requestedMessage": "StatusNotification", "connectorId": 1},
    "CertificateSigned": {"certificateChain": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
    "InstallCertificate": {"certificateType": "CentralSystemRootCertificate",
                           "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
    "DeleteCertificate": {"certificateHashData": {"hashAlgorithm": "SHA256", "issuerNameHash": "aa",
                                                  "issuerKeyHash": "bb", "serialNumber": "01"}},
    "GetInstalledCertificateIds": {"certificateType": "CentralSystemRootCertificate"},
    "GetLog": {"logType": "SecurityLog", "requestId": 1, "log": {"remoteLocation": "https://example.com/logs"}},
    "SignedUpdateFirmware": {"requestId": 1, "firmware": {
        "location": "https://example.com/fw.bin", "retrieveDateTime": "2030-01-01T00:00:00Z",
        "signingCertificate": "-----BEGIN CERTIFICATE-----", "signature": "c2ln"}},
    "ExtendedTriggerMessage": {"requestedMessage": "Heartbeat"},
}


def test_every_central_system_action_of_the_notes_is_covered() -> None:
    assert set(REQUESTS) == CHARGER_ACTIONS == set(CHARGER_ANSWERS)


@pytest.fixture
async def admin(edge: Edge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}", timeout=10) as client:
        yield client


@pytest.mark.parametrize("action", sorted(REQUESTS))
async def test_a_central_system_call_reaches_the_charger_and_its_answer_comes_back(
        edge: Edge, admin: httpx.AsyncClient, action: str) -> None:
    async with answering_charger(edge.ocpp_port, "CP-1") as cp:
        response = await admin.post(f"/chargers/CP-1/calls/{action}", json=REQUESTS[action])

    assert response.status_code == 200, response.text
    answer = response.json()
    expected = CHARGER_ANSWERS[action]
    from ocpp.charge_point import serialize_as_dict, snake_to_camel_case

    assert answer["kind"] == "result"
    assert answer["payload"] == {k: v for k, v in snake_to_camel_case(serialize_as_dict(expected)).items()
                                 if v is not None}
    assert [(a, kw) for a, kw in cp.received] == [(action, camel_to_snake_case(REQUESTS[action]))]
    async with edge.store.transaction() as tx:
        [record] = await tx.charger_calls("CP-1")
    assert (record["action"], record["outcome"], record["origin"]) == (action, "result", "admin")
    assert record["request"] == REQUESTS[action]
    [relayed] = [row.body for row in await edge.store.outbox_batch(100) if row.type == "charger.call"]
    assert (relayed["charger_id"], relayed["action"], relayed["origin"], relayed["outcome"]) == (
        "CP-1", action, "admin", "result")
    assert relayed["request"] == REQUESTS[action] and relayed["response"] == {"kind": "result",
                                                                             "payload": answer["payload"]}


async def test_accepted_reservations_profiles_and_local_lists_are_kept_in_the_site_state(
        edge: Edge, admin: httpx.AsyncClient) -> None:
    async with answering_charger(edge.ocpp_port, "CP-1") as cp:
        for action in ("ReserveNow", "SetChargingProfile", "SendLocalList"):
            assert (await admin.post(f"/chargers/CP-1/calls/{action}", json=REQUESTS[action])).status_code == 200
        state = (await admin.get("/chargers/CP-1")).json()
        assert [(r["id"], r["state"], r["id_tag"]) for r in state["reservations"]] == [(42, "active", "TAG-OK")]
        assert [(p["profile_id"], p["purpose"], p["connector_id"]) for p in state["charging_profiles"]] == [
            (9, "TxDefaultProfile", 1)]
        assert state["local_list_version"] == 3

        cp.answers["ReserveNow"] = type(CHARGER_ANSWERS["ReserveNow"])(status="Occupied")
        rejected = {**REQUESTS["ReserveNow"], "reservationId": 43}
        assert (await admin.post("/chargers/CP-1/calls/ReserveNow", json=rejected)).json()["payload"] == {
            "status": "Occupied"}
        for action in ("CancelReservation", "ClearChargingProfile", "GetLocalListVersion"):
            assert (await admin.post(f"/chargers/CP-1/calls/{action}", json=REQUESTS[action])).status_code == 200
        state = (await admin.get("/chargers/CP-1")).json()

    assert [(r["id"], r["state"]) for r in state["reservations"]] == [(42, "cancelled")]  # 43 was never made
    assert state["charging_profiles"] == []
    assert state["local_list_version"] == 7  # what GetLocalListVersion answered


async def test_a_start_with_a_reservation_uses_it(edge: Edge, admin: httpx.AsyncClient) -> None:
    async with answering_charger(edge.ocpp_port, "CP-1") as cp:
        await admin.post("/chargers/CP-1/calls/ReserveNow", json=REQUESTS["ReserveNow"])
        await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-OK", meter_start=0, timestamp=now_iso(),
                                            reservation_id=42), suppress=False)
    [reservation] = (await admin.get("/chargers/CP-1")).json()["reservations"]
    assert reservation["state"] == "used"
    [started] = [row.body for row in await edge.store.outbox_batch(100) if row.type == "session.started"]
    assert started["reservation_id"] == 42


CHARGER_MESSAGES: list[tuple[Any, str, dict[str, Any], Callable[[Any], bool]]] = [
    (call.DiagnosticsStatusNotification(status="Uploaded"), "DiagnosticsStatusNotification",
     {"diagnostics_status": "Uploaded"}, lambda result: True),
    (call.FirmwareStatusNotification(status="Installing"), "FirmwareStatusNotification",
     {"firmware_status": "Installing"}, lambda result: True),
    (call.SecurityEventNotification(type="SettingSystemTime", timestamp="2025-06-01T12:00:00Z",
                                    tech_info="NTP"), "SecurityEventNotification", {}, lambda result: True),
    (call.SignCertificate(csr="-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----"),
     "SignCertificate", {}, lambda result: result.status == "Accepted"),
    (call.LogStatusNotification(status="Uploading", request_id=1), "LogStatusNotification", {},
     lambda result: True),
    (call.SignedFirmwareStatusNotification(status="SignatureVerified", request_id=2),
     "SignedFirmwareStatusNotification", {"firmware_status": "SignatureVerified"}, lambda result: True),
    (call.DataTransfer(vendor_id="com.acme", message_id="hello", data="{}"), "DataTransfer", {},
     lambda result: result.status == "UnknownVendorId"),
]


@pytest.mark.parametrize(("message", "action", "charger_state", "answer_ok"), CHARGER_MESSAGES,
                         ids=[m[1] for m in CHARGER_MESSAGES])
async def test_a_charger_notification_is_answered_kept_and_relayed(
        edge: Edge, message: Any, action: str, charger_state: dict[str, Any],
        answer_ok: Callable[[Any], bool]) -> None:
    async with charger(edge.ocpp_port, "CP-1") as cp:
        result = await cp.call(message, suppress=False)

    assert answer_ok(result)
    async with edge.store.transaction() as tx:
        [event] = await tx.charger_events("CP-1")
        record = await tx.get_charger("CP-1")
    assert event["action"] == action
    [relayed] = [row.body for row in await edge.store.outbox_batch(100) if row.type == "charger.notification"]
    assert relayed["action"] == action and relayed["charger_id"] == "CP-1"
    assert relayed["payload"] == event["payload"]
    assert camel_to_snake_case(relayed["payload"]).items() >= {
        k: v for k, v in vars(message).items() if v is not None}.items()
    for column, value in charger_state.items():
        assert getattr(record, column) == value


async def test_the_core_charger_messages_are_answered(edge: Edge) -> None:
    """Authorize, Boot, Heartbeat, MeterValues, Start/Stop and StatusNotification end to end."""
    async with charger(edge.ocpp_port, "CP-1") as cp:
        await cp.call(call.Heartbeat(), suppress=False)
        await cp.call(call.StatusNotification(connector_id=0, error_code="NoError", status="Available"),
                      suppress=False)
        await cp.call(call.Authorize(id_tag="TAG-X"), suppress=False)
        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-X", meter_start=0,
                                                      timestamp=now_iso()), suppress=False)
        await cp.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
            {"timestamp": now_iso(), "sampledValue": [{"value": "10"}]}]), suppress=False)
        await cp.call(call.StopTransaction(meter_stop=20, timestamp=now_iso(),
                                           transaction_id=started.transaction_id), suppress=False)
    async def offline_recorded() -> bool:  # the offline event follows the close handshake
        return [row.type for row in await edge.store.outbox_batch(100)][-1] == "charger.connection"

    await poll_until(offline_recorded, within=20, interval=0.02)
    types = [row.type for row in await edge.store.outbox_batch(100)]
    assert types == ["charger.connection", "charger.boot", "charger.status", "session.started", "session.meter",
                     "session.stopped", "charger.connection"]


# --- failures of CALLs to chargers ------------------------------------------------------------


async def test_a_call_to_a_charger_that_is_not_connected_is_409(edge: Edge, admin: httpx.AsyncClient) -> None:
    response = await admin.post("/chargers/CP-GONE/calls/Reset", json={"type": "Soft"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Charger not connected"


async def test_a_charger_that_does_not_answer_gives_504_and_a_later_answer_is_dropped(
        edge: Edge, admin: httpx.AsyncClient) -> None:
    async with answering_charger(edge.ocpp_port, "CP-1") as cp:
        cp.delay = 1.0
        late = await admin.post("/chargers/CP-1/calls/Reset", params={"answer_within": 0.2}, json={"type": "Soft"})
        assert late.status_code == 504 and late.json()["status"] == 504
        await asyncio.sleep(1.0)  # the late CALLRESULT arrives and must not answer the next CALL
        cp.delay = 0
        cp.answers["Reset"] = type(CHARGER_ANSWERS["Reset"])(status="Rejected")
        again = await admin.post("/chargers/CP-1/calls/Reset", json={"type": "Hard"})
    assert again.status_code == 200 and again.json()["payload"] == {"status": "Rejected"}
    async with edge.store.transaction() as tx:
        assert [c["outcome"] for c in await tx.charger_calls("CP-1")] == ["result", "timeout"]
    assert [row.body["outcome"] for row in await edge.store.outbox_batch(100) if row.type == "charger.call"] == [
        "timeout", "result"]


async def test_unknown_actions_and_payloads_breaking_the_schema_are_refused_before_sending(
        edge: Edge, admin: httpx.AsyncClient) -> None:
    async with answering_charger(edge.ocpp_port, "CP-1") as cp:
        unknown = await admin.post("/chargers/CP-1/calls/BootNotification", json={})
        invalid = await admin.post("/chargers/CP-1/calls/Reset", json={"type": "Sideways"})
    assert unknown.status_code == 404
    assert invalid.status_code == 422 and "schema" in invalid.json()["detail"]
    assert cp.received == []


async def test_a_charger_callerror_is_returned_as_its_answer(edge: Edge, admin: httpx.AsyncClient) -> None:
    async with answering_charger(edge.ocpp_port, "CP-1") as cp:
        del cp.route_map["Reset"]  # the ocpp library answers NotImplemented for an action without handler
        response = await admin.post("/chargers/CP-1/calls/Reset", json={"type": "Soft"})
    assert response.status_code == 200
    assert response.json()["kind"] == "error" and response.json()["error_code"] in {"NotImplemented",
                                                                                    "NotSupported"}


async def test_the_admin_api_needs_the_bearer_token_when_one_is_set(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(admin_token="s3cret-token")) as edge, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as client:
        assert (await client.get("/health")).status_code == 200
        refused = await client.get("/chargers")
        wrong = await client.get("/chargers", headers={"Authorization": "Bearer nope"})
        ok = await client.get("/chargers", headers={"Authorization": "Bearer s3cret-token"})
    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["type"] == "about:blank"
    assert ok.status_code == 200 and ok.json() == []


class _Eager:
    """A charger's socket that reads each frame the moment it arrives, so arrival times show when the
    edge sent it (the ``ocpp`` ChargePoint itself handles one frame at a time)."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.arrivals: list[tuple[float, list[Any]]] = []
        self.frames: asyncio.Queue[str] = asyncio.Queue()

    async def read(self) -> None:
        async for raw in self.socket:
            self.arrivals.append((asyncio.get_running_loop().time(), json.loads(raw)))
            await self.frames.put(str(raw))

    async def recv(self) -> str:
        return await self.frames.get()

    async def send(self, message: str) -> None:
        await self.socket.send(message)


async def test_rule_framing_one_outstanding_call_per_connection_with_unique_ids_of_at_most_36_characters(
        edge: Edge, admin: httpx.AsyncClient) -> None:
    async with open_socket(edge.ocpp_port, "CP-1") as socket:
        eager = _Eager(socket)
        reader = asyncio.create_task(eager.read())
        cp = AnsweringCharger("CP-1", eager, response_timeout=5)
        try:
            async with running(cp):
                await boot_notification(cp)
                cp.delay = 0.2
                codes = [r.status_code for r in await asyncio.gather(
                    *(admin.post("/chargers/CP-1/calls/ClearCache", json={}) for _ in range(3)))]
        finally:
            reader.cancel()
    assert codes == [200, 200, 200]
    calls = [(at, frame) for at, frame in eager.arrivals if frame[0] == 2]
    ids = [frame[1] for _, frame in calls]
    assert len(ids) == 3 and len(set(ids)) == 3 and all(len(i) <= 36 for i in ids)
    # Each CALL left the edge only after the previous one was answered (0.2 s later).
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(calls)]
    assert all(gap >= 0.18 for gap in gaps), gaps
