"""The Core profile (OCPP 1.6 §3 to §6): boot, heartbeat, statuses, sessions, configuration.

``CoreProfile`` is the charger's side: BootNotification until Accepted, heartbeats, one charging
session (Authorize, StartTransaction, MeterValues, StopTransaction), and what the central
system's Core CALLs change (availability, configuration, reset, remote start and stop).
``CoreHandlers`` answers those CALLs on the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    ChargePointStatus,
    ClearCacheStatus,
    ConfigurationStatus,
    DataTransferStatus,
    RegistrationStatus,
    RemoteStartStopStatus,
    ResetStatus,
    UnlockStatus,
)

from chargepoint_sim.errors import AuthorizationRefused, ConnectionLost, ConnectorNotAvailable, CpsimError
from chargepoint_sim.meter import charging_curve
from chargepoint_sim.profiles.base import ChargerBase, Connector, SampleCallback, SessionReport

log = logging.getLogger("chargepoint_sim")

FIRMWARE_VERSION = "cpsim-0.1"
BOOT_RETRY_DEFAULT_S = 30.0
"""Wait before re-sending a Pending/Rejected BootNotification whose interval was 0."""


class CoreProfile(ChargerBase):
    """Boot, heartbeat, statuses, charging sessions and the Core CALLs' effects."""

    # --- sessions -------------------------------------------------------------------------

    def register_wh(self, connector_id: int) -> int:
        """The energy register of a connector; it persists across sessions."""
        return self._connector(connector_id).register_wh

    def connector_status(self, connector_id: int) -> str:
        return self._charger_status if connector_id == 0 else self._connector(connector_id).status

    async def run_session(self, connector_id: int, id_tag: str, energy_wh: int, *,
                          meter_interval: float = 1.0, power_w: float = 11000,
                          meter_start_wh: int | None = None, speedup: float | None = None,
                          on_sample: SampleCallback | None = None) -> SessionReport:
        """Play one session: Authorize, Preparing, StartTransaction, Charging, MeterValues until
        ``energy_wh`` is delivered, StopTransaction (reason Local), Finishing, Available.

        A sample is sent every ``meter_interval`` wall seconds and covers ``meter_interval *
        speedup`` simulated seconds. ``meter_start_wh`` sets the connector's register first.
        ``stop_session`` ends it early (then meterStop - meterStart is what was delivered).
        Raises AuthorizationRefused when the id tag is not Accepted.
        """
        if energy_wh < 0:
            raise ValueError("energy_wh must not be negative")
        if meter_interval <= 0 or power_w <= 0:
            raise ValueError("meter_interval and power_w must be positive")
        if meter_start_wh is not None and meter_start_wh < 0:
            raise ValueError("meter_start_wh must not be negative")
        connector = self._available_connector(connector_id, id_tag)
        connector.claim()
        try:
            return await self._session(connector, id_tag, energy_wh, authorize=True,
                                       meter_interval=meter_interval, power_w=power_w,
                                       meter_start_wh=meter_start_wh,
                                       speedup=self.speedup if speedup is None else speedup,
                                       on_sample=on_sample)
        finally:
            connector.release()

    def stop_session(self, connector_id: int, reason: str = "Local") -> bool:
        """Ask the session on a connector to stop with ``reason``; False when none is running."""
        connector = self._connector(connector_id)
        if not connector.busy:
            return False
        connector.stop_reason = reason
        connector.stop_requested.set()
        return True

    def _available_connector(self, connector_id: int, id_tag: str) -> Connector:
        connector = self._connector(connector_id)
        if connector.reservation is not None and connector.reservation[1] != id_tag:
            raise ConnectorNotAvailable(f"connector {connector_id} of {self.charger_id} is Reserved for "
                                        f"another id tag (reservation {connector.reservation[0]})")
        if connector.busy:
            raise ConnectorNotAvailable(
                f"connector {connector_id} of {self.charger_id} already has a session")
        if connector.faulted:
            raise ConnectorNotAvailable(f"connector {connector_id} of {self.charger_id} is Faulted")
        if not connector.operative:
            raise ConnectorNotAvailable(
                f"connector {connector_id} of {self.charger_id} was set Inoperative by the central system")
        return connector

    async def _session(self, connector: Connector, id_tag: str, energy_wh: int, *, authorize: bool,
                       meter_interval: float, power_w: float, meter_start_wh: int | None,
                       speedup: float, on_sample: SampleCallback | None,
                       stay_plugged: bool = False) -> SessionReport:
        if authorize:
            answer = await self._call(call.Authorize(id_tag=id_tag))
            status = answer.id_tag_info["status"]
            if status != "Accepted":
                raise AuthorizationRefused(id_tag, status)
        if meter_start_wh is not None:
            connector.register_wh = meter_start_wh
        meter_start = connector.register_wh
        await self._set_status(connector, ChargePointStatus.preparing)
        reservation_id = None
        if connector.reservation is not None and connector.reservation[1] == id_tag:
            reservation_id = connector.reservation[0]  # the reservation ends with this transaction (§5.13)
            connector.reservation = None
        started = await self._call(call.StartTransaction(
            connector_id=connector.id, id_tag=id_tag, meter_start=meter_start, timestamp=self.timestamp(),
            reservation_id=reservation_id))
        connector.transaction_id = started.transaction_id
        connector.transaction_started = datetime.now(UTC)
        tag_status = started.id_tag_info["status"]
        if tag_status != "Accepted":
            # StopTransactionOnInvalidId (OCPP 1.6 §9.1, default true): end it right away.
            await self._stop_transaction(connector, id_tag, meter_start, "DeAuthorized")
            raise AuthorizationRefused(id_tag, tag_status, during="StartTransaction")
        await self._set_status(connector, ChargePointStatus.charging)
        def limit() -> float | None:
            # Profiles run on wall time; a compressed session sees the limit of the wall moment.
            return self.smart_charging.limit_w(connector.id, now=datetime.now(UTC),
                                               transaction_started=connector.transaction_started)

        for sample in charging_curve(meter_start, energy_wh, power_w, meter_interval * speedup, limit):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connector.stop_requested.wait(), meter_interval)
            if connector.stop_reason is not None:
                break
            connector.register_wh = sample.register_wh
            connector.last_power_w = sample.power_w
            await self._call(call.MeterValues(
                connector_id=connector.id, transaction_id=connector.transaction_id,
                meter_value=[self._meter_value(sample.register_wh, sample.power_w)]))
            if on_sample is not None:
                on_sample(sample)
        if stay_plugged and connector.stop_reason is None:
            # The battery is full and the car stays plugged in: the EV suspends charging (OCPP 1.6 §7.7).
            connector.last_power_w = 0.0
            await self._set_status(connector, ChargePointStatus.suspended_ev)
            while connector.stop_reason is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(connector.stop_requested.wait(), meter_interval)
                if connector.stop_reason is None:
                    await self._call(call.MeterValues(
                        connector_id=connector.id, transaction_id=connector.transaction_id,
                        meter_value=[self._meter_value(connector.register_wh, 0.0)]))
        reason = connector.stop_reason or "Local"
        await self._stop_transaction(connector, id_tag, meter_start, reason)
        return SessionReport(transaction_id=started.transaction_id, meter_start_wh=meter_start,
                             meter_stop_wh=connector.register_wh,
                             energy_wh=connector.register_wh - meter_start, id_tag_status=tag_status,
                             connector_id=connector.id, id_tag=id_tag, stop_reason=reason)

    async def _stop_transaction(self, connector: Connector, id_tag: str, meter_start: int,
                                reason: str) -> None:
        transaction_id = connector.transaction_id
        assert transaction_id is not None
        # The transaction is over once StopTransaction is on its way: a RemoteStop for it is Rejected.
        connector.transaction_id = None
        connector.transaction_started = None
        connector.last_power_w = 0.0
        self.smart_charging.end_transaction(connector.id)
        meter_stop = connector.register_wh
        await self._call(call.StopTransaction(
            meter_stop=meter_stop, timestamp=self.timestamp(), transaction_id=transaction_id,
            reason=reason, id_tag=id_tag,
            transaction_data=[self._meter_value(meter_start, context="Transaction.Begin"),
                              self._meter_value(meter_stop, context="Transaction.End")]))
        await self._set_status(connector, ChargePointStatus.finishing)
        if connector.inoperative_scheduled:
            connector.operative = False
            connector.inoperative_scheduled = False
        await self._set_status(connector, ChargePointStatus.available if connector.operative
                               else ChargePointStatus.unavailable)

    async def _remote_session(self, connector: Connector, id_tag: str) -> None:
        meter_interval = max(1.0, float(self._config["MeterValueSampleInterval"][0]))
        authorize = self._config["AuthorizeRemoteTxRequests"][0] == "true"
        try:
            report = await self._session(connector, id_tag, self.remote_session_energy_wh,
                                         authorize=authorize, meter_interval=meter_interval,
                                         power_w=11000, meter_start_wh=None, speedup=self.speedup,
                                         on_sample=None, stay_plugged=self.faults.stay_plugged)
            log.info("%s: remote session %s ended: %s Wh", self.charger_id, report.transaction_id,
                     report.energy_wh)
        except CpsimError as exc:
            log.warning("%s: remote session on connector %s failed: %s", self.charger_id, connector.id, exc)
            if connector.transaction_id is None and connector.status == ChargePointStatus.preparing:
                await self._set_status(connector, ChargePointStatus.available)
        finally:
            connector.release()

    # --- boot, heartbeat, status ----------------------------------------------------------

    async def _boot(self) -> None:
        while True:
            self._boot_triggered.clear()
            answer = await self._send_boot()
            if answer.status == RegistrationStatus.accepted:
                return
            # Pending/Rejected: stay quiet until the interval passes (OCPP 1.6 §4.2), or until
            # the central system triggers a BootNotification.
            wait = answer.interval if answer.interval > 0 else BOOT_RETRY_DEFAULT_S
            log.warning("%s: BootNotification %s by %s; retrying in %s s", self.charger_id,
                        answer.status, self.url, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._boot_triggered.wait(), wait)

    async def _send_boot(self) -> Any:
        answer = await self._call(call.BootNotification(
            charge_point_model=self.model, charge_point_vendor=self.vendor,
            charge_point_serial_number=self.charger_id[:25], firmware_version=FIRMWARE_VERSION))
        self.registration_status = answer.status
        if answer.status == RegistrationStatus.accepted and answer.interval > 0:
            self._config["HeartbeatInterval"] = (str(answer.interval), False)
            if self._heartbeat is not None:
                self._restart_heartbeat()
        return answer

    def _restart_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        interval = int(self._config["HeartbeatInterval"][0])
        if interval > 0:
            self._heartbeat = asyncio.create_task(self._heartbeats(interval),
                                                  name=f"cpsim-{self.charger_id}-heartbeat")

    async def _heartbeats(self, interval: int) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._call(call.Heartbeat())
            except ConnectionLost:
                return
            except CpsimError as exc:
                log.warning("%s: heartbeat failed: %s", self.charger_id, exc)

    async def _announce_all(self) -> None:
        await self._send_status(0, self._charger_status)
        for connector in self._connectors.values():
            await self._send_status(connector.id, connector.status)

    # --- what the central system's Core CALLs do (called by CoreHandlers) -----------------

    def _accept_remote_start(self, connector_id: int | None, id_tag: str) -> Connector | None:
        if connector_id is None:
            candidates = list(self._connectors.values())
        else:
            candidates = [c for c in (self._connectors.get(connector_id),) if c is not None]
        for connector in candidates:
            reserved_for_other = connector.reservation is not None and connector.reservation[1] != id_tag
            if not connector.busy and connector.operative and not connector.faulted and not reserved_for_other:
                connector.claim()
                return connector
        return None

    def _remote_stop(self, transaction_id: int) -> bool:
        for connector in self._connectors.values():
            if connector.busy and connector.transaction_id == transaction_id:
                return self.stop_session(connector.id, "Remote")
        return False

    async def _reset(self, reset_type: str) -> None:
        reason = "HardReset" if reset_type == "Hard" else "SoftReset"
        for connector in self._connectors.values():
            self.stop_session(connector.id, reason)
        await asyncio.gather(*(c.idle.wait() for c in self._connectors.values()))
        # A rebooted charger boots again; we keep the connection (a simulator needs no reconnect).
        await self._boot()
        await self._announce_all()

    def _change_availability(self, connector_id: int, kind: str) -> tuple[str, list[Connector]]:
        targets = self._targets(connector_id)
        if targets is None:
            return AvailabilityStatus.rejected, []
        changed: list[Connector] = []
        scheduled = False
        for connector in targets:
            if kind == AvailabilityType.inoperative:
                if connector.busy:
                    connector.inoperative_scheduled = True
                    scheduled = True
                elif connector.operative:
                    connector.operative = False
                    changed.append(connector)
            else:
                connector.inoperative_scheduled = False
                if not connector.operative:
                    connector.operative = True
                    changed.append(connector)
        if connector_id == 0:
            self._charger_status = (ChargePointStatus.unavailable if kind == AvailabilityType.inoperative
                                    else ChargePointStatus.available)
        return (AvailabilityStatus.scheduled if scheduled else AvailabilityStatus.accepted), changed

    async def _announce_availability(self, connector_id: int, changed: list[Connector]) -> None:
        if connector_id == 0:
            await self._send_status(0, self._charger_status)
        for connector in changed:
            if not connector.busy:
                await self._set_status(connector, ChargePointStatus.available if connector.operative
                                       else ChargePointStatus.unavailable)

    def _configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        wanted = keys or list(self._config)
        known = [{"key": k, "readonly": self._config[k][1], "value": self._config[k][0]}
                 for k in wanted if k in self._config]
        unknown = [k for k in wanted if k not in self._config]
        return known, unknown

    def _change_configuration(self, key: str, value: str) -> str:
        if key not in self._config:
            return ConfigurationStatus.not_supported
        if self._config[key][1]:
            return ConfigurationStatus.rejected
        if key in ("HeartbeatInterval", "MeterValueSampleInterval"):
            if not value.strip().isdigit():
                return ConfigurationStatus.rejected
            value = str(int(value))
        elif key == "AuthorizeRemoteTxRequests":
            if value.lower() not in ("true", "false"):
                return ConfigurationStatus.rejected
            value = value.lower()
        self._config[key] = (value, False)
        if key == "HeartbeatInterval" and self._link is not None:
            self._restart_heartbeat()
        return ConfigurationStatus.accepted


class CoreHandlers:
    """The link's answers to the Core CALLs of the central system (mixed into ``OcppLink``).

    Each ``@on`` handler answers at once; anything that needs a CALL of our own is started by
    the matching ``@after`` hook, once the answer is on the wire.
    """

    sim: CoreProfile
    _remote_start: tuple[Connector, str] | None = None
    _availability: tuple[int, list[Connector]] | None = None

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> Any:
        if self.sim.faults.refuse_remote_start:
            return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.rejected)
        connector = self.sim._accept_remote_start(connector_id, id_tag)
        if connector is None:
            return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.rejected)
        self._remote_start = (connector, id_tag)
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @after(Action.remote_start_transaction)
    def after_remote_start(self, **_: Any) -> None:
        if self._remote_start is not None:
            connector, id_tag = self._remote_start
            self._remote_start = None
            self.sim._spawn(self.sim._remote_session(connector, id_tag), f"remote-session-{connector.id}")

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        stopping = self.sim._remote_stop(transaction_id)
        return call_result.RemoteStopTransaction(
            status=RemoteStartStopStatus.accepted if stopping else RemoteStartStopStatus.rejected)

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> Any:
        return call_result.Reset(status=ResetStatus.accepted)

    @after(Action.reset)
    def after_reset(self, type: str, **_: Any) -> None:
        self.sim._spawn(self.sim._reset(type), "reset")

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        status, changed = self.sim._change_availability(connector_id, type)
        if status != AvailabilityStatus.rejected:
            self._availability = (connector_id, changed)
        return call_result.ChangeAvailability(status=status)

    @after(Action.change_availability)
    def after_change_availability(self, **_: Any) -> None:
        if self._availability is not None:
            connector_id, changed = self._availability
            self._availability = None
            self.sim._spawn(self.sim._announce_availability(connector_id, changed), "availability")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known, unknown = self.sim._configuration(key)
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        return call_result.ChangeConfiguration(status=self.sim._change_configuration(key, value))

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        if connector_id not in self.sim._connectors:
            return call_result.UnlockConnector(status=UnlockStatus.unlock_failed)
        # Unlocking a connector with a running transaction ends it (OCPP 1.6 §5.18).
        self.sim.stop_session(connector_id, "UnlockCommand")
        return call_result.UnlockConnector(status=UnlockStatus.unlocked)

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status=ClearCacheStatus.accepted)

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)
