"""The charger side of the OCPP tests, written only with the ``ocpp`` library and websockets.

It deliberately shares no code with ``edge``: a shared bug could not hide on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import RegistrationStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def url(port: int, charger_id: str) -> str:
    return f"ws://127.0.0.1:{port}/ocpp/{quote(charger_id, safe='')}"


@contextlib.asynccontextmanager
async def open_socket(port: int, charger_id: str,
                      subprotocols: tuple[str, ...] = ("ocpp1.6",)) -> AsyncIterator[ClientConnection]:
    async with connect(url(port, charger_id), subprotocols=[Subprotocol(s) for s in subprotocols] or None,
                       open_timeout=5, close_timeout=2) as ws:
        yield ws


@contextlib.asynccontextmanager
async def running(cp: ChargePoint) -> AsyncIterator[ChargePoint]:
    """Run the charger's receive loop (it routes CALLRESULTs to ``cp.call``)."""
    task = asyncio.create_task(cp.start(), name=f"charger:{cp.id}")
    try:
        yield cp
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def charger(port: int, charger_id: str, *, boot: bool = True) -> AsyncIterator[ChargePoint]:
    async with open_socket(port, charger_id) as ws:
        cp = ChargePoint(charger_id, ws, response_timeout=5)
        async with running(cp):
            if boot:
                result = await boot_notification(cp)
                assert result.status == RegistrationStatus.accepted
            yield cp


async def boot_notification(cp: ChargePoint) -> call_result.BootNotification:
    result: call_result.BootNotification = await cp.call(
        call.BootNotification(charge_point_model="Wallbox-22", charge_point_vendor="Acme",
                              charge_point_serial_number="SN-1", firmware_version="1.2.3"),
        suppress=False,
    )
    return result


# --- a charger that answers every central system → charger CALL of OCPP 1.6 -------------------

CHARGER_ANSWERS: dict[str, Any] = {
    "ChangeAvailability": call_result.ChangeAvailability(status="Accepted"),
    "ChangeConfiguration": call_result.ChangeConfiguration(status="Accepted"),
    "ClearCache": call_result.ClearCache(status="Accepted"),
    "DataTransfer": call_result.DataTransfer(status="Accepted", data="pong"),
    "GetConfiguration": call_result.GetConfiguration(configuration_key=[
        {"key": "SupportedFeatureProfiles", "readonly": True,
         "value": "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"}]),
    "RemoteStartTransaction": call_result.RemoteStartTransaction(status="Accepted"),
    "RemoteStopTransaction": call_result.RemoteStopTransaction(status="Accepted"),
    "Reset": call_result.Reset(status="Accepted"),
    "UnlockConnector": call_result.UnlockConnector(status="Unlocked"),
    "GetDiagnostics": call_result.GetDiagnostics(file_name="diagnostics.zip"),
    "UpdateFirmware": call_result.UpdateFirmware(),
    "GetLocalListVersion": call_result.GetLocalListVersion(list_version=7),
    "SendLocalList": call_result.SendLocalList(status="Accepted"),
    "ReserveNow": call_result.ReserveNow(status="Accepted"),
    "CancelReservation": call_result.CancelReservation(status="Accepted"),
    "SetChargingProfile": call_result.SetChargingProfile(status="Accepted"),
    "ClearChargingProfile": call_result.ClearChargingProfile(status="Accepted"),
    "GetCompositeSchedule": call_result.GetCompositeSchedule(status="Accepted", connector_id=1),
    "TriggerMessage": call_result.TriggerMessage(status="Accepted"),
    "CertificateSigned": call_result.CertificateSigned(status="Accepted"),
    "InstallCertificate": call_result.InstallCertificate(status="Accepted"),
    "DeleteCertificate": call_result.DeleteCertificate(status="Accepted"),
    "GetInstalledCertificateIds": call_result.GetInstalledCertificateIds(status="NotFound"),
    "GetLog": call_result.GetLog(status="Accepted", filename="security.log"),
    "SignedUpdateFirmware": call_result.SignedUpdateFirmware(status="Accepted"),
    "ExtendedTriggerMessage": call_result.ExtendedTriggerMessage(status="Accepted"),
}


class AnsweringCharger(ChargePoint):  # type: ignore[misc]
    """Answers each central system CALL from ``answers`` and records what it received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers = dict(CHARGER_ANSWERS)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.delay = 0.0
        #: called with (action, request) the moment a CALL arrives, before it is answered
        self.on_received: Callable[[str, dict[str, Any]], None] | None = None


def _answer(action: str) -> Any:
    async def handler(self: AnsweringCharger, **kwargs: Any) -> Any:
        self.received.append((action, kwargs))
        if self.on_received is not None:
            self.on_received(action, kwargs)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answers[action]

    handler.__name__ = f"on_{action}"
    return on(action)(handler)


for _action in CHARGER_ANSWERS:
    setattr(AnsweringCharger, f"on_{_action}", _answer(_action))


@contextlib.asynccontextmanager
async def answering_charger(port: int, charger_id: str, *, boot: bool = True, headers: dict[str, str] | None = None,
                            kind: type[AnsweringCharger] = AnsweringCharger) -> AsyncIterator[AnsweringCharger]:
    async with connect(url(port, charger_id), subprotocols=[Subprotocol("ocpp1.6")], open_timeout=5,
                       close_timeout=2, additional_headers=headers) as ws:
        cp = kind(charger_id, ws, response_timeout=5)
        async with running(cp):
            if boot:
                result = await boot_notification(cp)
                assert result.status == RegistrationStatus.accepted
            yield cp
