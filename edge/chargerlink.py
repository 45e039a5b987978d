"""The port to connected chargers: a central system → charger CALL, its answer and its failures.

What the site may send (:data:`CHARGER_ACTIONS`, :data:`NOT_WHILE_PENDING`) is decided here;
:meth:`edge.site.Site.call_charger` applies it, and the OCPP server implements the port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

CHARGER_ACTIONS = frozenset({
    # Core
    "ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer", "GetConfiguration",
    "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "UnlockConnector",
    # Firmware Management, Local Auth List Management, Reservation, Smart Charging, Remote Trigger
    "GetDiagnostics", "UpdateFirmware", "GetLocalListVersion", "SendLocalList", "ReserveNow", "CancelReservation",
    "SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule", "TriggerMessage",
    # security extension
    "CertificateSigned", "InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds", "GetLog",
    "SignedUpdateFirmware", "ExtendedTriggerMessage",
})
"""Central system → charger CALLs of OCPP 1.6 (OCPP-NOTES "Messages by feature profile")."""

NOT_WHILE_PENDING = frozenset({"RemoteStartTransaction", "RemoteStopTransaction"})
"""OCPP 1.6 §4.2.1: no remote start/stop to a charger whose registration is Pending."""


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """A charger's answer to a CALL: a CALLRESULT (``result``), a CALLERROR (``error``), or a
    CALLRESULT that breaks the 1.6 schema (``invalid``)."""

    kind: Literal["result", "error", "invalid"]
    payload: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "result":
            return {"kind": "result", "payload": self.payload}
        return {"kind": self.kind, "error_code": self.error_code, "error_description": self.error_description,
                "details": self.payload}


class ChargerCallError(Exception):
    """A CALL to a charger could not be made or was not answered."""


class ChargerNotConnected(ChargerCallError):
    def __init__(self, charger_id: str) -> None:
        super().__init__(f"charger {charger_id!r} is not connected")


class ChargerCallTimeout(ChargerCallError):
    pass


class ChargerCallRefused(ChargerCallError):
    """The edge refuses to send this CALL (unknown action, invalid payload, charger not accepted)."""


class ChargerNotAccepted(ChargerCallRefused):
    """The charger's registration is Pending; this CALL waits until an operator accepts it."""


class ChargerLink(Protocol):
    """The port to connected chargers (implemented by the OCPP server)."""

    async def call(self, charger_id: str, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer: ...

    def is_connected(self, charger_id: str) -> bool: ...


class NoChargers:
    """The port before the OCPP server exists: no charger is connected."""

    async def call(self, charger_id: str, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer:
        raise ChargerNotConnected(charger_id)

    def is_connected(self, charger_id: str) -> bool:
        return False
