"""A minimal OCPP 1.6J central system for testing the simulator.

Built only from the ``ocpp`` library and ``websockets`` (no evpark code), so the simulator is
checked against an independent implementation of the other side.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Received:
    charger_id: str
    action: str
    payload: dict[str, Any]


@dataclass
class CentralSystem:
    """Accepts chargers, answers their CALLs, and records everything they send."""

    known: set[str] | None = None
    """Charger ids that may connect (others get HTTP 404); None: every id."""
    passwords: dict[str, str] = field(default_factory=dict)
    """Chargers that must authenticate with HTTP Basic auth (others need none)."""
    refused_tags: dict[str, str] = field(default_factory=dict)
    """id tag -> non-Accepted status for Authorize."""
    start_refused_tags: dict[str, str] = field(default_factory=dict)
    """id tag -> non-Accepted status in StartTransaction only."""
    boot_answers: list[tuple[str, int]] = field(default_factory=list)
    """(status, interval) answers to the first BootNotifications; then Accepted."""
    heartbeat_interval: int = 300
    received: list[Received] = field(default_factory=list)
    points: dict[str, _Point] = field(default_factory=dict)
    url: str = ""
    _next_transaction: int = 100
    _server: Server | None = None

    async def __aenter__(self) -> CentralSystem:
        self._server = await serve(self._serve, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp1.6")],
                                   process_request=self._check)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # --- what the tests look at ---------------------------------------------------------

    def of(self, action: str, charger_id: str | None = None) -> list[dict[str, Any]]:
        return [r.payload for r in list(self.received)
                if r.action == action and (charger_id is None or r.charger_id == charger_id)]

    async def wait_until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        # Polling on purpose: predicates also look at the charger's and the test's own state.
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    async def drop(self, charger_id: str) -> None:
        """Close a charger's connection, as a crashing or restarting edge would."""
        await self.points[charger_id].connection.close()

    # --- server side --------------------------------------------------------------------

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        charger_id = unquote(request.path.rsplit("/", 1)[-1])
        if self.known is not None and charger_id not in self.known:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "unknown charger\n")
        password = self.passwords.get(charger_id)
        if password is not None:
            expected = "Basic " + base64.b64encode(f"{charger_id}:{password}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "wrong credentials\n")
                response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
                return response
        return None

    async def _serve(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        charger_id = unquote(connection.request.path.rsplit("/", 1)[-1])
        point = _Point(self, charger_id, connection)
        self.points[charger_id] = point
        with contextlib.suppress(ConnectionClosed):
            await point.start()

    def record(self, charger_id: str, action: str, payload: dict[str, Any]) -> None:
        self.received.append(Received(charger_id, action, payload))

    def next_transaction_id(self) -> int:
        self._next_transaction += 1
        return self._next_transaction


class _Point(ChargePoint):  # type: ignore[misc]
    def __init__(self, system: CentralSystem, charger_id: str, connection: ServerConnection) -> None:
        super().__init__(charger_id, connection, response_timeout=5)
        self.system = system
        self.connection = connection

    def _record(self, action: str, payload: dict[str, Any]) -> None:
        self.system.record(self.id, action, payload)

    @on(Action.boot_notification)
    def on_boot(self, **payload: Any) -> Any:
        self._record("BootNotification", payload)
        if self.system.boot_answers:
            status, interval = self.system.boot_answers.pop(0)
            return call_result.BootNotification(current_time=_now(), interval=interval, status=status)
        return call_result.BootNotification(current_time=_now(), interval=self.system.heartbeat_interval,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self, **payload: Any) -> Any:
        self._record("Heartbeat", payload)
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status(self, **payload: Any) -> Any:
        self._record("StatusNotification", payload)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **payload: Any) -> Any:
        self._record("Authorize", {"id_tag": id_tag, **payload})
        status = self.system.refused_tags.get(id_tag, AuthorizationStatus.accepted)
        return call_result.Authorize(id_tag_info={"status": status})

    @on(Action.start_transaction)
    def on_start(self, id_tag: str, **payload: Any) -> Any:
        transaction_id = self.system.next_transaction_id()
        self._record("StartTransaction", {"id_tag": id_tag, "transaction_id": transaction_id, **payload})
        status = self.system.start_refused_tags.get(id_tag, AuthorizationStatus.accepted)
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info={"status": status})

    @on(Action.meter_values)
    def on_meter_values(self, **payload: Any) -> Any:
        self._record("MeterValues", payload)
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop(self, **payload: Any) -> Any:
        self._record("StopTransaction", payload)
        return call_result.StopTransaction(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.diagnostics_status_notification)
    def on_diagnostics(self, **payload: Any) -> Any:
        self._record("DiagnosticsStatusNotification", payload)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware(self, **payload: Any) -> Any:
        self._record("FirmwareStatusNotification", payload)
        return call_result.FirmwareStatusNotification()


@contextlib.contextmanager
def central_system_in_thread(**options: Any) -> Iterator[CentralSystem]:
    """The same central system on its own event loop in a thread, for synchronous (CLI) tests."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            holder["loop"], holder["stop"] = asyncio.get_running_loop(), stop
            async with CentralSystem(**options) as system:
                holder["system"] = system
                ready.set()
                await stop.wait()

        asyncio.run(main())

    thread = threading.Thread(target=run, name="test-central-system", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the test central system did not start")
    try:
        yield holder["system"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
