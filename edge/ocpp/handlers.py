"""The ``@on`` handlers of the central system: one call on the site model, its answer back.

Each handler takes the CALL's payload as snake_case arguments (the ``ocpp`` library's convention),
makes one call on :class:`edge.site.Site` and returns the library's result dataclass. Protocol
quirks are cited where they are handled; the framing rules are in :mod:`edge.ocpp.connection`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, GenericStatus, RegistrationStatus

from edge.domain import AuthDecision, meter_in_range
from edge.ocpp.connection import OcppConnection
from edge.site import BootInfo
from mqtt.payloads import METER_MAX_WH


def ocpp_time(value: datetime) -> str:
    """An OCPP dateTime: UTC, milliseconds, ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _id_tag_info(decision: AuthDecision) -> IdTagInfo:
    return IdTagInfo(
        status=AuthorizationStatus(decision.status.value),
        expiry_date=ocpp_time(decision.expiry_date) if decision.expiry_date else None,
        parent_id_tag=decision.parent_id_tag,
    )


def _check_meter(field: str, value: int) -> None:
    """A meterStart/meterStop beyond what the contract carries (:data:`mqtt.payloads.METER_MAX_WH`) is
    refused with PropertyConstraintViolation naming the field; nothing is stored."""
    if not meter_in_range(value):
        raise PropertyConstraintViolationError(
            description=f"{field} is out of range: a meter reads 0 to {METER_MAX_WH} Wh",
            details={"field": field})


class ChargerConnection(OcppConnection):
    """One charger's OCPP 1.6J connection. Handlers are thin: parse, call the site, answer."""

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str,
                                   **kwargs: Any) -> call_result.BootNotification:
        info = BootInfo(vendor=charge_point_vendor, model=charge_point_model,
                        serial=kwargs.get("charge_point_serial_number") or kwargs.get("charge_box_serial_number"),
                        firmware=kwargs.get("firmware_version"))
        answer = await self._site.boot(self.id, info)
        self._boot_accepted = answer.status == "Accepted"
        return call_result.BootNotification(current_time=ocpp_time(answer.current_time), interval=answer.interval,
                                            status=RegistrationStatus(answer.status))

    @on(Action.heartbeat)
    async def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=ocpp_time(await self._site.heartbeat(self.id)))

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str,
                                     **kwargs: Any) -> call_result.StatusNotification:
        await self._site.connector_status(self.id, connector_id, status=status, error_code=error_code,
                                          info=kwargs.get("info"), timestamp=kwargs.get("timestamp"))
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=_id_tag_info(await self._site.authorize(id_tag)))

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                                   **kwargs: Any) -> call_result.StartTransaction:
        _check_meter("meterStart", meter_start)
        answer = await self._site.start_transaction(self.id, connector_id=connector_id, id_tag=id_tag,
                                                    meter_start=meter_start, timestamp=timestamp,
                                                    reservation_id=kwargs.get("reservation_id"))
        return call_result.StartTransaction(transaction_id=answer.transaction_id,
                                            id_tag_info=_id_tag_info(answer.auth))

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                              **kwargs: Any) -> call_result.MeterValues:
        await self._site.meter_values(self.id, connector_id=connector_id,
                                      transaction_id=kwargs.get("transaction_id"), meter_value=meter_value)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int,
                                  **kwargs: Any) -> call_result.StopTransaction:
        _check_meter("meterStop", meter_stop)
        decision = await self._site.stop_transaction(
            self.id, transaction_id=transaction_id, meter_stop=meter_stop, timestamp=timestamp,
            id_tag=kwargs.get("id_tag"), reason=kwargs.get("reason"),
            transaction_data=kwargs.get("transaction_data"),
        )
        return call_result.StopTransaction(id_tag_info=_id_tag_info(decision) if decision else None)

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        # DataTransfer.conf: no vendor extensions are known to this central system; kept for the record.
        await self._notify(Action.data_transfer, vendor_id=vendor_id, **kwargs)
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    # Firmware Management and the security extension: recorded and relayed as charger.notification.

    async def _notify(self, action: str, **kwargs: Any) -> None:
        await self._site.charger_notification(self.id, action, snake_to_camel_case(kwargs))

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, **kwargs: Any) -> call_result.DiagnosticsStatusNotification:
        await self._notify(Action.diagnostics_status_notification, **kwargs)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, **kwargs: Any) -> call_result.FirmwareStatusNotification:
        await self._notify(Action.firmware_status_notification, **kwargs)
        return call_result.FirmwareStatusNotification()

    @on(Action.security_event_notification)
    async def on_security_event(self, **kwargs: Any) -> call_result.SecurityEventNotification:
        await self._notify(Action.security_event_notification, **kwargs)
        return call_result.SecurityEventNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, **kwargs: Any) -> call_result.LogStatusNotification:
        await self._notify(Action.log_status_notification, **kwargs)
        return call_result.LogStatusNotification()

    @on(Action.signed_firmware_status_notification)
    async def on_signed_firmware_status(self, **kwargs: Any) -> call_result.SignedFirmwareStatusNotification:
        await self._notify(Action.signed_firmware_status_notification, **kwargs)
        return call_result.SignedFirmwareStatusNotification()

    @on(Action.sign_certificate)
    async def on_sign_certificate(self, csr: str, **kwargs: Any) -> call_result.SignCertificate:
        # Accepted = the CSR will be processed: it goes to the cloud as a charger.notification; the
        # signed chain comes back as CertificateSigned (admin API).
        await self._notify(Action.sign_certificate, csr=csr, **kwargs)
        return call_result.SignCertificate(status=GenericStatus.accepted)
