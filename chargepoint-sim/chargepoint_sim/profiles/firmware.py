"""The Firmware Management profile (OCPP 1.6 §6.8, §6.3): firmware updates and diagnostics uploads.

Nothing is downloaded or uploaded: a location with "fail" in it fails, any other succeeds, one
status notification every ``firmware_step_s`` wall seconds. An installed firmware reboots the
charger (a new BootNotification).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, DiagnosticsStatus, FirmwareStatus

from chargepoint_sim.profiles.core import CoreProfile


class FirmwareManagement(CoreProfile):
    """Firmware updates and diagnostics uploads, as the charger plays them."""

    firmware_status: FirmwareStatus = FirmwareStatus.idle
    diagnostics_status: DiagnosticsStatus = DiagnosticsStatus.idle
    firmware_step_s: float = 1.0
    """Wall seconds between two steps of a firmware update or diagnostics upload."""

    async def _update_firmware(self, location: str, retrieve_at: datetime) -> None:
        await asyncio.sleep(max(0.0, (retrieve_at - datetime.now(UTC)).total_seconds()))
        failing = "fail" in location.lower()
        steps = ([FirmwareStatus.downloading, FirmwareStatus.download_failed] if failing else
                 [FirmwareStatus.downloading, FirmwareStatus.downloaded, FirmwareStatus.installing,
                  FirmwareStatus.installed])
        for status in steps:
            self.firmware_status = status
            await self._call(call.FirmwareStatusNotification(status=status))
            await asyncio.sleep(self.firmware_step_s)
        if not failing:
            # A new firmware means a reboot: the charger boots again (§6.8, §4.2).
            await self._boot()
            await self._announce_all()
        self.firmware_status = FirmwareStatus.idle

    async def _upload_diagnostics(self, location: str) -> None:
        failing = "fail" in location.lower()
        for status in [DiagnosticsStatus.uploading,
                       DiagnosticsStatus.upload_failed if failing else DiagnosticsStatus.uploaded]:
            self.diagnostics_status = status
            await self._call(call.DiagnosticsStatusNotification(status=status))
            await asyncio.sleep(self.firmware_step_s)
        self.diagnostics_status = DiagnosticsStatus.idle


class FirmwareHandlers:
    """The link's answers to UpdateFirmware and GetDiagnostics (mixed into ``OcppLink``)."""

    sim: FirmwareManagement
    _firmware: tuple[str, datetime] | None = None
    _diagnostics: str | None = None

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, retrieve_date: str, **_: Any) -> Any:
        retrieve_at = datetime.fromisoformat(retrieve_date.replace("Z", "+00:00"))
        self._firmware = (location, retrieve_at if retrieve_at.tzinfo else retrieve_at.replace(tzinfo=UTC))
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    def after_update_firmware(self, **_: Any) -> None:
        if self._firmware is not None:
            (location, retrieve_at), self._firmware = self._firmware, None
            self.sim._spawn(self.sim._update_firmware(location, retrieve_at), "firmware")

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, **_: Any) -> Any:
        self._diagnostics = location
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return call_result.GetDiagnostics(file_name=f"diagnostics-{self.sim.charger_id}-{stamp}.log")

    @after(Action.get_diagnostics)
    def after_get_diagnostics(self, **_: Any) -> None:
        if self._diagnostics is not None:
            location, self._diagnostics = self._diagnostics, None
            self.sim._spawn(self.sim._upload_diagnostics(location), "diagnostics")
