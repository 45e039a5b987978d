"""What every feature profile of the simulated charger builds on.

``ChargerBase`` holds the charger's state (connectors, configuration, the link, the offline
queue) and the plumbing each profile uses: sending a CALL (or queueing it while offline),
StatusNotifications, meter values, background tasks. The profiles are mixins on top of it
(``chargepoint_sim.profiles``); ``SimulatedCharger`` composes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ocpp.exceptions import OCPPError
from ocpp.v16 import call, call_result
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chargepoint_sim.errors import CentralSystemError, ConnectionLost, ConnectorNotAvailable, CpsimError
from chargepoint_sim.features import (
    LOCAL_LIST_MAX,
    MAX_PROFILES,
    MAX_SCHEDULE_PERIODS,
    MAX_STACK_LEVEL,
    LocalAuthList,
    SmartCharging,
)
from chargepoint_sim.meter import MeterSample

if TYPE_CHECKING:
    from chargepoint_sim.link import OcppLink

log = logging.getLogger("chargepoint_sim")

SampleCallback = Callable[[MeterSample], None]

SUPPORTED_FEATURE_PROFILES = "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"


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


QUEUED_OFFLINE = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})
"""Transaction-related messages a charger keeps while offline and sends later, in order (OCPP 1.6 §4.7)."""


@dataclass
class Connector:
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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ChargerBase:
    """The state of one simulated charger and the plumbing its feature profiles share."""

    def __init__(self, charger_id: str, url: str, *, connectors: int, vendor: str, model: str,
                 basic_auth_password: str | None, ssl_context: ssl.SSLContext | None, speedup: float,
                 remote_session_energy_wh: int, open_timeout: float, response_timeout: float) -> None:
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
        self._connectors = {n: Connector(n) for n in range(1, connectors + 1)}
        for connector in self._connectors.values():
            connector.idle.set()
        self._charger_status: str = ChargePointStatus.available
        self._config: dict[str, tuple[str, bool]] = {
            # key: (value, read-only); the profile that owns each key is named on its right.
            "HeartbeatInterval": ("0", False),  # Core
            "MeterValueSampleInterval": ("60", False),  # Core
            "AuthorizeRemoteTxRequests": ("false", False),  # Core
            "NumberOfConnectors": (str(connectors), True),  # Core
            "SupportedFeatureProfiles": (SUPPORTED_FEATURE_PROFILES, True),  # Core
            "LocalAuthorizeOffline": ("true", False),  # Core
            "LocalAuthListEnabled": ("true", False),  # Local Auth List Management
            "LocalAuthListMaxLength": (str(LOCAL_LIST_MAX), True),  # Local Auth List Management
            "SendLocalListMaxLength": (str(LOCAL_LIST_MAX), True),  # Local Auth List Management
            "StopTransactionOnInvalidId": ("true", False),  # Core
            "ReserveConnectorZeroSupported": ("false", True),  # Reservation
            "ChargeProfileMaxStackLevel": (str(MAX_STACK_LEVEL), True),  # Smart Charging
            "ChargingScheduleMaxPeriods": (str(MAX_SCHEDULE_PERIODS), True),  # Smart Charging
            "MaxChargingProfilesInstalled": (str(MAX_PROFILES), True),  # Smart Charging
            "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),  # Smart Charging
        }
        self._ws: ClientConnection | None = None
        self._link: OcppLink | None = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._boot_triggered = asyncio.Event()
        self.faults = Faults()
        self.smart_charging = SmartCharging()
        self.local_list = LocalAuthList()
        self.offline = False
        """True while the link is down on purpose (``go_offline``): transaction messages are queued."""
        self._queue: list[tuple[Any, int | None]] = []
        self._local_transaction = 0
        self._transaction_ids: dict[int, int] = {}
        self._clock_origin = time.monotonic()

    # --- connectors -----------------------------------------------------------------------

    def _connector(self, connector_id: int) -> Connector:
        try:
            return self._connectors[connector_id]
        except KeyError:
            raise ConnectorNotAvailable(
                f"charger {self.charger_id} has no connector {connector_id} "
                f"(it has 1..{len(self._connectors)})") from None

    def _targets(self, connector_id: int) -> list[Connector] | None:
        if connector_id == 0:
            return list(self._connectors.values())
        connector = self._connectors.get(connector_id)
        return None if connector is None else [connector]

    # --- status and meter values ----------------------------------------------------------

    async def _set_status(self, connector: Connector, status: str) -> None:
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
        return now_iso()

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

    # --- CALLs to the central system ------------------------------------------------------

    async def _call(self, request: Any) -> Any:
        """Send one CALL (or queue it while offline) and return its CALLRESULT payload."""
        action = type(request).__name__
        if action in QUEUED_OFFLINE and (self.offline or self._queue):
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

    # --- background tasks -----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=f"cpsim-{self.charger_id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("%s: %s failed: %s", self.charger_id, task.get_name(), exc)
