"""A simulated OCPP 1.6J charger: connects, boots, heartbeats and plays charging sessions.

It speaks to any central system through the ``ocpp`` library and ``websockets`` only; it shares
no code with the edge, so a bug on one side cannot hide on the other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    CancelReservationStatus,
    ChargePointErrorCode,
    ChargePointStatus,
    ClearCacheStatus,
    ConfigurationStatus,
    DataTransferStatus,
    DiagnosticsStatus,
    FirmwareStatus,
    GetCompositeScheduleStatus,
    MessageTrigger,
    RegistrationStatus,
    RemoteStartStopStatus,
    ReservationStatus,
    ResetStatus,
    TriggerMessageStatus,
    UnlockStatus,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from chargepoint_sim.errors import (
    AuthorizationRefused,
    CentralSystemError,
    CentralSystemUnreachable,
    ConnectionLost,
    ConnectorNotAvailable,
    CpsimError,
    explain_connect_error,
)
from chargepoint_sim.features import (
    LOCAL_LIST_MAX,
    MAX_PROFILES,
    MAX_SCHEDULE_PERIODS,
    MAX_STACK_LEVEL,
    LocalAuthList,
    SmartCharging,
)
from chargepoint_sim.meter import MeterSample, charging_curve

log = logging.getLogger("chargepoint_sim")

SUBPROTOCOL = Subprotocol("ocpp1.6")
FIRMWARE_VERSION = "cpsim-0.1"
BOOT_RETRY_DEFAULT_S = 30.0
"""Wait before re-sending a Pending/Rejected BootNotification whose interval was 0."""

SampleCallback = Callable[[MeterSample], None]


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What one charging session did, as the charger saw it."""

    transaction_id: int
    meter_start_wh: int
    meter_stop_wh: int
    energy_wh: int
    id_tag_status: str
    connector_id: int = 1
    id_tag: str = ""
    stop_reason: str = "Local"


@dataclass
class Faults:
    """Misbehaviour a technician or a scenario switches on (``SimulatedCharger.faults``)."""

    clock_1970: bool = False
    """Timestamps as from a charger whose clock was never set: counting from 1970-01-01."""
    report_kwh: bool = False
    """The energy register in kWh (unit ``kWh``) instead of Wh, as some chargers send it."""
    repeat: set[str] = field(default_factory=set)
    """Actions sent twice, as a charger retrying after a lost CALLRESULT does."""
    silent: set[str] = field(default_factory=set)
    """Central-system CALLs (e.g. ``RemoteStartTransaction``) this charger never answers nor carries out."""
    refuse_remote_start: bool = False
    """RemoteStartTransaction is answered Rejected, whatever the connectors' state."""
    stay_plugged: bool = False
    """A session started by RemoteStartTransaction does not stop when the car is full: the connector turns
    SuspendedEV and meter values at 0 W follow until a RemoteStopTransaction (or stop_session) ends it."""


_QUEUED_OFFLINE = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})
"""Transaction-related messages a charger keeps while offline and sends later, in order (OCPP 1.6 §4.7)."""


@dataclass
class _Connector:
    id: int
    register_wh: int = 0
    status: str = ChargePointStatus.available
    operative: bool = True
    inoperative_scheduled: bool = False
    busy: bool = False
    """A session owns the connector (from Authorize until the status is back to Available)."""
    transaction_id: int | None = None
    stop_reason: str | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    last_power_w: float = 0.0
    faulted: bool = False
    reservation: tuple[int, str, datetime] | None = None
    """(reservation id, id tag, expiry) while the connector is Reserved."""
    transaction_started: datetime | None = None

    def claim(self) -> None:
        self.busy = True
        self.stop_reason = None
        self.stop_requested.clear()
        self.idle.clear()

    def release(self) -> None:
        self.busy = False
        self.transaction_id = None
        self.last_power_w = 0.0
        if self.status in (ChargePointStatus.preparing, ChargePointStatus.charging, ChargePointStatus.finishing):
            # The session broke off (connection lost): announce the connector free on reconnect.
            # A real charger would queue the StopTransaction offline; this simulator does not.
            self.status = ChargePointStatus.available if self.operative else ChargePointStatus.unavailable
        if self.faulted:
            self.status = ChargePointStatus.faulted
        self.idle.set()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimulatedCharger:
    """An OCPP 1.6J charger with ``connectors`` connectors, used as an async context manager.

    ``async with SimulatedCharger("CP-1", "ws://127.0.0.1:9000/ocpp") as charger`` connects to
    ``<url>/<charger_id>`` (the id percent-encoded), boots (waiting and retrying while the
    central system answers Pending or Rejected), announces every connector's status and sends
    heartbeats at the interval the central system gave. ``run_session`` plays one session.
    Leaving the block closes the connection; a session still running is abandoned, so call
    ``stop_session`` first to end it with a StopTransaction.
    """

    def __init__(self, charger_id: str, url: str, *, connectors: int = 1, vendor: str = "evpark",
                 model: str = "cpsim", basic_auth_password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, speedup: float = 1.0,
                 remote_session_energy_wh: int = 10_000, open_timeout: float = 10.0,
                 response_timeout: float = 30.0) -> None:
        if not charger_id:
            raise ValueError("charger_id must not be empty")
        if connectors < 1:
            raise ValueError("a charger has at least one connector")
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.charger_id = charger_id
        self.url = url
        self.endpoint = f"{url.rstrip('/')}/{quote(charger_id, safe='')}"
        self.vendor = vendor
        self.model = model
        self.speedup = speedup
        """Default time compression for sessions (also the ones the central system starts)."""
        self.remote_session_energy_wh = remote_session_energy_wh
        """Energy a session started by RemoteStartTransaction delivers before it stops itself."""
        self.registration_status: str | None = None
        self._password = basic_auth_password
        self._ssl = ssl_context
        self._open_timeout = open_timeout
        self._response_timeout = response_timeout
        self._connectors = {n: _Connector(n) for n in range(1, connectors + 1)}
        for connector in self._connectors.values():
            connector.idle.set()
        self._charger_status: str = ChargePointStatus.available
        self._config: dict[str, tuple[str, bool]] = {
            # key: (value, read-only)
            "HeartbeatInterval": ("0", False),
            "MeterValueSampleInterval": ("60", False),
            "AuthorizeRemoteTxRequests": ("false", False),
            "NumberOfConnectors": (str(connectors), True),
            "SupportedFeatureProfiles": (
                "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger", True),
            "LocalAuthorizeOffline": ("true", False),
            "LocalAuthListEnabled": ("true", False),
            "LocalAuthListMaxLength": (str(LOCAL_LIST_MAX), True),
            "SendLocalListMaxLength": (str(LOCAL_LIST_MAX), True),
            "StopTransactionOnInvalidId": ("true", False),
            "ReserveConnectorZeroSupported": ("false", True),
            "ChargeProfileMaxStackLevel": (str(MAX_STACK_LEVEL), True),
            "ChargingScheduleMaxPeriods": (str(MAX_SCHEDULE_PERIODS), True),
            "MaxChargingProfilesInstalled": (str(MAX_PROFILES), True),
            "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
        }
        self._ws: ClientConnection | None = None
        self._link: _OcppLink | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._boot_triggered = asyncio.Event()
        self.faults = Faults()
        self.smart_charging = SmartCharging()
        self.local_list = LocalAuthList()
        self.firmware_status = FirmwareStatus.idle
        self.diagnostics_status = DiagnosticsStatus.idle
        self.firmware_step_s = 1.0
        """Wall seconds between two steps of a firmware update or diagnostics upload."""
        self.offline = False
        """True while the link is down on purpose (``go_offline``): transaction messages are queued."""
        self._queue: list[tuple[Any, int | None]] = []
        self._local_transaction = 0
        self._transaction_ids: dict[int, int] = {}
        self._clock_origin = time.monotonic()

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedCharger:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self, *, boot: bool | None = None) -> None:
        """Open the WebSocket, boot until Accepted, announce statuses, start heartbeats.

        A charger boots once: reconnecting after a BootNotification was Accepted skips it (as
        real chargers do, OCPP 1.6 §4.2), unless ``boot=True``. Meter registers and
        configuration survive reconnects, so reuse one instance to simulate a flaky link.
        """
        headers: dict[str, str] = {}
        if self._password is not None:
            # HTTP Basic auth, user = charger id (OCPP 1.6 security whitepaper, Security Profiles 1 and 2).
            token = base64.b64encode(f"{self.charger_id}:{self._password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        options: dict[str, Any] = {}
        if self._ssl is not None:
            if not self.endpoint.startswith("wss://"):
                raise CentralSystemUnreachable(
                    f"a CA file was given but {self.url} is not a wss:// URL: use wss:// for TLS.")
            options["ssl"] = self._ssl
        try:
            ws = await connect(self.endpoint, subprotocols=[SUBPROTOCOL], additional_headers=headers,
                               open_timeout=self._open_timeout, **options)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise CentralSystemUnreachable(explain_connect_error(
                exc, self.url, self.charger_id, has_password=self._password is not None,
                open_timeout=self._open_timeout)) from exc
        if ws.subprotocol != SUBPROTOCOL:
            # OCPP-J 1.6 §3.1.2: without an agreed subprotocol the server will close on us.
            await ws.close()
            raise CentralSystemUnreachable(
                f"the central system at {self.url} did not accept the ocpp1.6 subprotocol: "
                "check that the URL points at an OCPP 1.6J endpoint.")
        self._ws = ws
        self._link = _OcppLink(self, ws, self._response_timeout)
        self._reader = asyncio.create_task(self._read(self._link), name=f"cpsim-{self.charger_id}-reader")
        try:
            if boot or (boot is None and self.registration_status != RegistrationStatus.accepted):
                await self._boot()
            await self._replay()
            await self._announce_all()
            self._restart_heartbeat()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection and stop every background task of this charger."""
        tasks = [t for t in (self._heartbeat, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            tasks.append(self._reader)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._heartbeat = None
        self._reader = None
        self._ws = None
        self._link = None

    async def go_offline(self, *, abrupt: bool = False) -> None:
        """Lose the link to the central system, as a site losing its internet does.

        Sessions keep running: StartTransaction, MeterValues and StopTransaction are queued
        (a StartTransaction gets a local transaction id), Authorize is accepted locally
        (LocalAuthorizeOffline), status changes are kept and announced on reconnect.
        ``abrupt`` drops the TCP connection without a WebSocket close, as a cut cable does.
        """
        self.offline = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._ws is not None:
            if abrupt:
                self._ws.transport.abort()
            else:
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        self._heartbeat = self._reader = None
        self._ws = None
        self._link = None

    async def go_online(self) -> None:
        """Reconnect after ``go_offline``; the queued messages are replayed in order, then statuses announced."""
        self.offline = False
        await self.connect()

    @property
    def queued(self) -> int:
        """How many transaction messages wait for the link to come back."""
        return len(self._queue)

    async def report_fault(self, connector_id: int, error_code: str = "GroundFailure",
                           info: str | None = None) -> None:
        """Put a connector in Faulted: a running session stops (reason Other), then StatusNotification."""
        connector = self._connector(connector_id)
        connector.faulted = True
        if self.stop_session(connector_id, "Other"):
            await connector.idle.wait()
        connector.status = ChargePointStatus.faulted
        await self._send_status(connector_id, ChargePointStatus.faulted, error_code=error_code, info=info)

    async def clear_fault(self, connector_id: int) -> None:
        """The fault is gone: the connector is Available (or Unavailable if set Inoperative) again."""
        connector = self._connector(connector_id)
        connector.faulted = False
        await self._set_status(connector, ChargePointStatus.available if connector.operative
                               else ChargePointStatus.unavailable)

    async def send(self, request: Any) -> Any:
        """Send one OCPP request (an ``ocpp.v16.call`` dataclass) as this charger; return the answer.

        For the interactive shell and tests: the charger's own state does not change.
        """
        return await self._call(request)

    async def send_raw(self, frame: str, answer_within: float = 10.0) -> str | None:
        """Put one raw OCPP-J frame on the wire; for a CALL, return the raw answer (None otherwise)."""
        link = self._link
        if link is None or self._reader is None or self._reader.done():
            raise ConnectionLost(f"charger {self.charger_id} is not connected to {self.url}.")
        try:
            message = json.loads(frame)
        except ValueError:
            message = None
        if isinstance(message, list) and len(message) >= 3 and message[0] == 2:
            async with link._call_lock:  # one CALL at a time (OCPP-J §4.1.1), shared with the library
                await link._send(frame)
                try:
                    response = await link._get_specific_response(str(message[1]), answer_within)
                except TimeoutError:
                    raise CpsimError(f"no answer to the raw CALL within {answer_within:g} s") from None
            return str(response.to_json())
        await link._send(frame)
        return None

    @property
    def connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def wait_closed(self) -> None:
        """Return when the connection to the central system is gone."""
        if self._reader is not None:
            await asyncio.shield(self._reader)

    async def _read(self, link: _OcppLink) -> None:
        with contextlib.suppress(ConnectionClosed):
            await link.start()
        log.info("%s: connection to %s closed", self.charger_id, self.url)

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

    def _connector(self, connector_id: int) -> _Connector:
        try:
            return self._connectors[connector_id]
        except KeyError:
            raise ConnectorNotAvailable(
                f"charger {self.charger_id} has no connector {connector_id} "
                f"(it has 1..{len(self._connectors)})") from None

    def _available_connector(self, connector_id: int, id_tag: str) -> _Connector:
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

    async def _session(self, connector: _Connector, id_tag: str, energy_wh: int, *, authorize: bool,
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

    async def _stop_transaction(self, connector: _Connector, id_tag: str, meter_start: int,
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

    async def _remote_session(self, connector: _Connector, id_tag: str) -> None:
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

    async def _set_status(self, connector: _Connector, status: str) -> None:
        connector.status = status
        await self._send_status(connector.id, status)

    async def _send_status(self, connector_id: int, status: str, *,
                           error_code: str = ChargePointErrorCode.no_error, info: str | None = None) -> None:
        await self._call(call.StatusNotification(
            connector_id=connector_id, error_code=error_code, status=status, info=info,
            timestamp=self.timestamp()))

    def timestamp(self) -> str:
        """Now, as this charger's clock says it (from 1970 with the clock_1970 fault)."""
        if self.faults.clock_1970:
            since = datetime.fromtimestamp(time.monotonic() - self._clock_origin, UTC)
            return since.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return _now()

    def _meter_value(self, register_wh: int, power_w: float | None = None, *,
                     context: str = "Sample.Periodic") -> dict[str, Any]:
        if self.faults.report_kwh:
            energy = {"value": f"{register_wh / 1000:.3f}", "unit": "kWh"}
        else:
            energy = {"value": str(register_wh), "unit": "Wh"}
        sampled = [{**energy, "context": context, "measurand": "Energy.Active.Import.Register",
                    "location": "Outlet"}]
        if power_w is not None:
            sampled.append({"value": f"{power_w:.1f}", "context": context, "measurand": "Power.Active.Import",
                            "location": "Outlet", "unit": "W"})
        return {"timestamp": self.timestamp(), "sampledValue": sampled}

    async def _send_meter_values(self, connector_ids: list[int]) -> None:
        for connector_id in connector_ids:
            connector = self._connectors[connector_id]
            await self._call(call.MeterValues(
                connector_id=connector_id, transaction_id=connector.transaction_id,
                meter_value=[self._meter_value(connector.register_wh, connector.last_power_w,
                                          context="Trigger")]))

    # --- CALLs to the central system ------------------------------------------------------

    async def _call(self, request: Any) -> Any:
        """Send one CALL (or queue it while offline) and return its CALLRESULT payload."""
        action = type(request).__name__
        if action in _QUEUED_OFFLINE and (self.offline or self._queue):
            # Offline, or older messages still wait: keep the order (OCPP 1.6 §4.7).
            return self._enqueue(request)
        if self.offline:
            if action == "StatusNotification":
                return call_result.StatusNotification()  # the current status is announced on reconnect
            if action == "Authorize":
                # LocalAuthorizeOffline: the Local Authorization List decides; a tag not on it is trusted.
                status = self.local_list.entries.get(request.id_tag, "Accepted")
                return call_result.Authorize(id_tag_info={"status": status})
            raise ConnectionLost(f"charger {self.charger_id} is offline (simulated): {action} was not sent.")
        try:
            answer = await self._send_call(request)
        except ConnectionLost:
            if not self.offline:
                raise
            return await self._call(request)  # the link went down meanwhile: queue it or answer locally
        if action in self.faults.repeat:
            # The same message again, as after a lost CALLRESULT; the central system must not double it.
            with contextlib.suppress(CpsimError):
                await self._send_call(request)
        return answer

    def _enqueue(self, request: Any) -> Any:
        action = type(request).__name__
        if action == "StartTransaction":
            self._local_transaction -= 1
            self._queue.append((request, self._local_transaction))
            return call_result.StartTransaction(transaction_id=self._local_transaction,
                                                id_tag_info={"status": "Accepted"})
        self._queue.append((request, None))
        if action == "StopTransaction":
            return call_result.StopTransaction(id_tag_info={"status": "Accepted"})
        return call_result.MeterValues()

    async def _replay(self) -> None:
        """Send the queued transaction messages in order, replacing local transaction ids by real ones."""
        while self._queue:
            request, local_id = self._queue[0]
            known = self._transaction_ids.get(getattr(request, "transaction_id", None) or 0)
            if known is not None:
                request = dataclasses.replace(request, transaction_id=known)
            try:
                answer = await self._send_call(request)
            except CentralSystemError as exc:
                # It must be answered with a CALLRESULT (OCPP 1.6 §4.7); retrying an error forever helps no one.
                log.warning("%s: queued %s refused: %s", self.charger_id, type(request).__name__, exc)
                answer = None
            self._queue.pop(0)
            if local_id is not None and answer is not None:
                self._transaction_ids[local_id] = answer.transaction_id
                for connector in self._connectors.values():
                    if connector.transaction_id == local_id:
                        connector.transaction_id = answer.transaction_id

    async def _send_call(self, request: Any) -> Any:
        """Send one CALL and return its CALLRESULT payload; fail fast if the connection drops."""
        action = type(request).__name__
        link, reader = self._link, self._reader
        if link is None or reader is None:
            raise ConnectionLost(f"charger {self.charger_id} is not connected to {self.url}: "
                                 f"cannot send {action}.")
        if reader.done():
            raise ConnectionLost(f"the central system at {self.url} closed the connection before "
                                 f"{action} could be sent: check the edge's log.")
        pending = asyncio.ensure_future(link.call(request, suppress=False))
        try:
            done, _ = await asyncio.wait({pending, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending
        if pending not in done:
            raise ConnectionLost(f"the central system at {self.url} closed the connection while "
                                 f"{action} waited for its answer: check the edge's log.")
        try:
            return pending.result()
        except OCPPError as exc:
            raise CentralSystemError(action, getattr(exc, "code", type(exc).__name__),
                                     str(exc.description)) from exc
        except ConnectionClosed as exc:
            raise ConnectionLost(f"the central system at {self.url} closed the connection "
                                 f"while {action} was being sent: check the edge's log.") from exc
        except TimeoutError as exc:
            raise CpsimError(f"the central system at {self.url} did not answer {action} within "
                             f"{self._response_timeout:g} s: check the edge's log.") from exc

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=f"cpsim-{self.charger_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("%s: %s failed: %s", self.charger_id, task.get_name(), exc)

    # --- answers to the central system's CALLs (called by _OcppLink) ----------------------

    def _targets(self, connector_id: int) -> list[_Connector] | None:
        if connector_id == 0:
            return list(self._connectors.values())
        connector = self._connectors.get(connector_id)
        return None if connector is None else [connector]

    def _accept_remote_start(self, connector_id: int | None, id_tag: str) -> _Connector | None:
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

    def _change_availability(self, connector_id: int, kind: str) -> tuple[str, list[_Connector]]:
        targets = self._targets(connector_id)
        if targets is None:
            return AvailabilityStatus.rejected, []
        changed: list[_Connector] = []
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

    async def _announce_availability(self, connector_id: int, changed: list[_Connector]) -> None:
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

    # --- reservations, firmware, diagnostics ----------------------------------------------

    def _reserve(self, connector_id: int, id_tag: str, reservation_id: int, expiry: datetime) -> str:
        if connector_id == 0:
            return ReservationStatus.rejected  # ReserveConnectorZeroSupported is false
        connector = self._connectors.get(connector_id)
        if connector is None:
            return ReservationStatus.rejected
        if connector.faulted:
            return ReservationStatus.faulted
        if not connector.operative:
            return ReservationStatus.unavailable
        if connector.busy or (connector.reservation is not None and connector.reservation[0] != reservation_id):
            return ReservationStatus.occupied
        connector.reservation = (reservation_id, id_tag, expiry)
        return ReservationStatus.accepted

    async def _reserved(self, connector: _Connector, reservation_id: int, expiry: datetime) -> None:
        await self._set_status(connector, ChargePointStatus.reserved)
        await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()))
        if connector.reservation is not None and connector.reservation[0] == reservation_id:
            connector.reservation = None  # expired (§5.13)
            if not connector.busy:
                await self._set_status(connector, ChargePointStatus.available)

    def _cancel_reservation(self, reservation_id: int) -> _Connector | None:
        for connector in self._connectors.values():
            if connector.reservation is not None and connector.reservation[0] == reservation_id:
                connector.reservation = None
                return connector
        return None

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


_TRIGGERABLE = {
    MessageTrigger.boot_notification, MessageTrigger.heartbeat, MessageTrigger.status_notification,
    MessageTrigger.meter_values, MessageTrigger.diagnostics_status_notification,
    MessageTrigger.firmware_status_notification,
}


class _OcppLink(ChargePoint):  # type: ignore[misc]
    """The ocpp library's view of the connection: thin handlers for the central system's CALLs.

    Each ``@on`` handler answers at once; anything that needs a CALL of our own is started by
    the matching ``@after`` hook, which the library runs only once the answer is on the wire
    (never await your own CALL inside the handler of theirs: OCPP-J §4.1.1, one CALL at a time).
    """

    def __init__(self, sim: SimulatedCharger, connection: ClientConnection, response_timeout: float) -> None:
        super().__init__(sim.charger_id, connection, response_timeout=response_timeout)
        self.sim = sim
        self._remote_start: tuple[_Connector, str] | None = None
        self._availability: tuple[int, list[_Connector]] | None = None
        self._trigger: tuple[str, int | None] | None = None
        self._reservation: tuple[int, int, datetime] | None = None
        self._freed: _Connector | None = None
        self._firmware: tuple[str, datetime] | None = None
        self._diagnostics: str | None = None

    async def route_message(self, raw_msg: str) -> None:
        if self.sim.faults.silent:
            with contextlib.suppress(ValueError, TypeError, IndexError, KeyError):
                message = json.loads(raw_msg)
                if message[0] == 2 and message[2] in self.sim.faults.silent:
                    log.info("%s: %s left unanswered (fault)", self.sim.charger_id, message[2])
                    return
        await super().route_message(raw_msg)

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

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any) -> Any:
        if requested_message not in _TRIGGERABLE:
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

    # Reservation profile

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                       **_: Any) -> Any:
        expiry = datetime.fromisoformat(expiry_date.replace("Z", "+00:00"))
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        status = self.sim._reserve(connector_id, id_tag, reservation_id, expiry)
        if status == ReservationStatus.accepted:
            self._reservation = (connector_id, reservation_id, expiry)
        return call_result.ReserveNow(status=status)

    @after(Action.reserve_now)
    def after_reserve_now(self, **_: Any) -> None:
        if self._reservation is not None:
            connector_id, reservation_id, expiry = self._reservation
            self._reservation = None
            self.sim._spawn(self.sim._reserved(self.sim._connectors[connector_id], reservation_id, expiry),
                            f"reservation-{reservation_id}")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        connector = self.sim._cancel_reservation(reservation_id)
        if connector is None:
            return call_result.CancelReservation(status=CancelReservationStatus.rejected)
        self._freed = connector
        return call_result.CancelReservation(status=CancelReservationStatus.accepted)

    @after(Action.cancel_reservation)
    def after_cancel_reservation(self, **_: Any) -> None:
        if self._freed is not None:
            connector, self._freed = self._freed, None
            if not connector.busy:
                self.sim._spawn(self.sim._set_status(connector, ChargePointStatus.available), "reservation-cancelled")

    # Smart Charging profile

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any) -> Any:
        connector = self.sim._connectors.get(connector_id)
        status = self.sim.smart_charging.set(
            connector_id, cs_charging_profiles, transaction_id=connector.transaction_id if connector else None,
            connector_ids=set(self.sim._connectors))
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any) -> Any:
        return call_result.ClearChargingProfile(status=self.sim.smart_charging.clear(
            profile_id=id, connector_id=connector_id, purpose=charging_profile_purpose, stack_level=stack_level))

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None,
                                  **_: Any) -> Any:
        if connector_id != 0 and connector_id not in self.sim._connectors:
            return call_result.GetCompositeSchedule(status=GetCompositeScheduleStatus.rejected)
        now = datetime.now(UTC)
        started = None if connector_id == 0 else self.sim._connectors[connector_id].transaction_started
        limit_w = self.sim.smart_charging.limit_w(connector_id, now=now, transaction_started=started)
        if limit_w is None:
            limit_w = 22_000.0  # the hardware's own limit
        unit = charging_rate_unit or "W"
        limit = round(limit_w / (230.0 * 3), 1) if unit == "A" else limit_w
        return call_result.GetCompositeSchedule(
            status=GetCompositeScheduleStatus.accepted, connector_id=connector_id,
            schedule_start=now.isoformat().replace("+00:00", "Z"),
            charging_schedule={"duration": duration, "charging_rate_unit": unit,
                               "charging_schedule_period": [{"start_period": 0, "limit": limit}]})

    # Local Auth List Management profile

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(list_version=self.sim.local_list.version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str,
                           local_authorization_list: list[dict[str, Any]] | None = None, **_: Any) -> Any:
        return call_result.SendLocalList(
            status=self.sim.local_list.update(list_version, update_type, local_authorization_list))

    # Firmware Management profile

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
