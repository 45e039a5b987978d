"""A simulated OCPP 1.6J charger: connects, boots, heartbeats and plays charging sessions.

It speaks to any central system through the ``ocpp`` library and ``websockets`` only; it shares
no code with the edge, so a bug on one side cannot hide on the other. ``SimulatedCharger``
composes one mixin per OCPP 1.6 feature profile (``chargepoint_sim.profiles``) and owns the
connection's life: connect, boot, go offline and back, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from types import TracebackType
from typing import Any

from ocpp.v16.enums import ChargePointStatus, RegistrationStatus
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from chargepoint_sim.errors import CentralSystemUnreachable, ConnectionLost, CpsimError, explain_connect_error
from chargepoint_sim.link import OcppLink
from chargepoint_sim.profiles.base import Faults, SampleCallback, SessionReport
from chargepoint_sim.profiles.core import BOOT_RETRY_DEFAULT_S, FIRMWARE_VERSION
from chargepoint_sim.profiles.remote_trigger import RemoteTrigger
from chargepoint_sim.profiles.reservation import ReservationProfile
from chargepoint_sim.profiles.security import SecurityProfile

__all__ = ["BOOT_RETRY_DEFAULT_S", "FIRMWARE_VERSION", "SUBPROTOCOL", "Faults", "SampleCallback", "SessionReport",
           "SimulatedCharger"]

log = logging.getLogger("chargepoint_sim")

SUBPROTOCOL = Subprotocol("ocpp1.6")


class SimulatedCharger(SecurityProfile, RemoteTrigger, ReservationProfile):
    """An OCPP 1.6J charger with ``connectors`` connectors, used as an async context manager.

    ``async with SimulatedCharger("CP-1", "ws://127.0.0.1:9000/ocpp") as charger`` connects to
    ``<url>/<charger_id>`` (the id percent-encoded), boots (waiting and retrying while the
    central system answers Pending or Rejected), announces every connector's status and sends
    heartbeats at the interval the central system gave. ``run_session`` plays one session.
    Leaving the block closes the connection; a session still running is abandoned, so call
    ``stop_session`` first to end it with a StopTransaction.

    The feature profiles: Core (``CoreProfile``), Firmware Management and Remote Trigger
    (``RemoteTrigger`` builds on ``FirmwareManagement``), Reservation, Smart Charging
    (``smart_charging``) and Local Auth List Management (``local_list``), and the security
    whitepaper's Basic auth and TLS (``SecurityProfile``).
    """

    def __init__(self, charger_id: str, url: str, *, connectors: int = 1, vendor: str = "evpark",
                 model: str = "cpsim", basic_auth_password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, speedup: float = 1.0,
                 remote_session_energy_wh: int = 10_000, open_timeout: float = 10.0,
                 response_timeout: float = 30.0) -> None:
        super().__init__(charger_id, url, connectors=connectors, vendor=vendor, model=model,
                         basic_auth_password=basic_auth_password, ssl_context=ssl_context, speedup=speedup,
                         remote_session_energy_wh=remote_session_energy_wh, open_timeout=open_timeout,
                         response_timeout=response_timeout)

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
        options = self._handshake_options()
        try:
            ws = await connect(self.endpoint, subprotocols=[SUBPROTOCOL], open_timeout=self._open_timeout,
                               **options)
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
        self._link = OcppLink(self, ws, self._response_timeout)
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

    @property
    def connected(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def wait_closed(self) -> None:
        """Return when the connection to the central system is gone."""
        if self._reader is not None:
            await asyncio.shield(self._reader)

    async def _read(self, link: OcppLink) -> None:
        with contextlib.suppress(ConnectionClosed):
            await link.start()
        log.info("%s: connection to %s closed", self.charger_id, self.url)

    # --- faults and hand-driven messages --------------------------------------------------

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
        """Put one raw OCPP-J frame on the wire; for a CALL, return the raw answer (None otherwise).

        Uses the ``ocpp`` library's private ``_call_lock``, ``_send`` and ``_get_specific_response``
        (pinned by tests/unit/test_library_contracts.py) so a raw CALL waits its turn like any other.
        """
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
