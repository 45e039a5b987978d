"""The Remote Trigger profile (OCPP 1.6 §5.17): TriggerMessage.

The central system asks for a message now: BootNotification, Heartbeat, StatusNotification,
MeterValues, or the status notification of a firmware update or diagnostics upload.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, MessageTrigger, RegistrationStatus, TriggerMessageStatus

from chargepoint_sim.profiles.firmware import FirmwareManagement

TRIGGERABLE = frozenset({
    MessageTrigger.boot_notification, MessageTrigger.heartbeat, MessageTrigger.status_notification,
    MessageTrigger.meter_values, MessageTrigger.diagnostics_status_notification,
    MessageTrigger.firmware_status_notification,
})


class RemoteTrigger(FirmwareManagement):
    """Sends the message a TriggerMessage asked for (firmware and diagnostics statuses included)."""

    async def _triggered(self, message: str, connector_id: int | None) -> None:
        ids = list(self._connectors) if connector_id is None else [connector_id]
        if message == MessageTrigger.boot_notification:
            if self.registration_status == RegistrationStatus.accepted:
                await self._send_boot()
            else:
                self._boot_triggered.set()
        elif message == MessageTrigger.heartbeat:
            await self._call(call.Heartbeat())
        elif message == MessageTrigger.status_notification:
            if connector_id is None or connector_id == 0:
                await self._send_status(0, self._charger_status)
            for n in ids:
                if n != 0:
                    await self._send_status(n, self._connectors[n].status)
        elif message == MessageTrigger.meter_values:
            await self._send_meter_values([n for n in ids if n != 0])
        elif message == MessageTrigger.diagnostics_status_notification:
            await self._call(call.DiagnosticsStatusNotification(status=self.diagnostics_status))
        elif message == MessageTrigger.firmware_status_notification:
            await self._call(call.FirmwareStatusNotification(status=self.firmware_status))

    async def _send_meter_values(self, connector_ids: list[int]) -> None:
        for connector_id in connector_ids:
            connector = self._connectors[connector_id]
            await self._call(call.MeterValues(
                connector_id=connector_id, transaction_id=connector.transaction_id,
                meter_value=[self._meter_value(connector.register_wh, connector.last_power_w,
                                               context="Trigger")]))


class RemoteTriggerHandlers:
    """The link's answer to TriggerMessage (mixed into ``OcppLink``)."""

    sim: RemoteTrigger
    _trigger: tuple[str, int | None] | None = None

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any) -> Any:
        if requested_message not in TRIGGERABLE:
            return call_result.TriggerMessage(status=TriggerMessageStatus.not_implemented)
        if connector_id is not None and connector_id != 0 and connector_id not in self.sim._connectors:
            return call_result.TriggerMessage(status=TriggerMessageStatus.rejected)
        self._trigger = (requested_message, connector_id)
        return call_result.TriggerMessage(status=TriggerMessageStatus.accepted)

    @after(Action.trigger_message)
    def after_trigger_message(self, **_: Any) -> None:
        if self._trigger is not None:
            message, connector_id = self._trigger
            self._trigger = None
            self.sim._spawn(self.sim._triggered(message, connector_id), f"trigger-{message}")
