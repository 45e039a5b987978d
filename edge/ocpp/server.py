"""The WebSocket server of the central system: the handshake (path, subprotocol, security profile),
one :class:`edge.ocpp.ChargerConnection` per charger, liveness, and CALLs to chargers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from edge.metrics import CONNECTED_CHARGERS
from edge.ocpp.handlers import ChargerConnection
from edge.site import Admission, CallAnswer, ChargerCallRefused, ChargerNotConnected, Site
from edge.validation import Schemas

log = structlog.get_logger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
PATH_PREFIX = "/ocpp/"
MAX_CHARGER_ID_LENGTH = 64


class _QuietProbes(logging.Filter):
    """Drop websockets' error for a TCP connection closed before any HTTP request.

    That is what TCP health checks (a Kubernetes tcpSocket probe, a load balancer) do; logged
    as an error with a traceback each time, it would bury real problems.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, InvalidMessage) and isinstance(error.__cause__, EOFError))


def _websockets_logger() -> logging.Logger:
    logger = logging.getLogger("edge.ocpp.websockets")
    if not any(isinstance(f, _QuietProbes) for f in logger.filters):
        logger.addFilter(_QuietProbes())
    return logger


def charger_id_from_path(path: str) -> str | None:
    """The percent-decoded charge point id of ``/ocpp/<id>``, or None for any other path."""
    route = urlsplit(path).path
    if not route.startswith(PATH_PREFIX):
        return None
    raw = route[len(PATH_PREFIX):]
    if not raw or "/" in raw:
        return None
    charger_id = unquote(raw)
    if not charger_id or len(charger_id) > MAX_CHARGER_ID_LENGTH or not charger_id.isprintable():
        return None
    return charger_id


def certificate_cn(peer: dict[str, Any] | None) -> str | None:
    """The subject common name of a client certificate the TLS handshake verified (``getpeercert()``)."""
    if not peer:
        return None
    names = [value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"]
    return names[0] if len(names) == 1 else None


class OcppServer:
    """The WebSocket server; ``async with`` binds it, :meth:`serve_forever` runs it.

    ``schemas``: the compiled schemas of the fast path (``compile_schemas(FAST_ACTIONS)``), built once
    by the composition root and shared by every connection.
    """

    def __init__(self, site: Site, *, schemas: Schemas, host: str, port: int, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, offline_after: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._site = site
        self._schemas = schemas
        self._host = host
        self._requested_port = port
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._offline_after = offline_after
        self._ssl = ssl_context
        self._server: Server | None = None
        self._connections: dict[str, ChargerConnection] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("the OCPP server is not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def connected_chargers(self) -> list[str]:
        return sorted(self._connections)

    def connection(self, charger_id: str) -> ChargerConnection | None:
        return self._connections.get(charger_id)

    async def __aenter__(self) -> OcppServer:
        self._server = await serve(
            self._handle, self._host, self._requested_port,
            subprotocols=[SUBPROTOCOL], select_subprotocol=_select_subprotocol,
            process_request=self._process_request, ssl=self._ssl,
            ping_interval=self._ping_interval, ping_timeout=self._ping_timeout, logger=_websockets_logger(),
            # A dead peer never answers the close frame either: the offline bound is
            # ping_interval + ping_timeout + close_timeout.
            close_timeout=min(self._ping_timeout or 10.0, 10.0),
        )
        log.info("ocpp.listening", host=self._host, port=self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        log.info("ocpp.stopped")

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("enter the OcppServer context first")
        await self._server.serve_forever()

    async def call(self, charger_id: str, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer:
        """Send a CALL to a connected charger (the :class:`edge.site.ChargerLink` port)."""
        charger = self._connections.get(charger_id)
        if charger is None:
            raise ChargerNotConnected(charger_id)
        try:
            return await charger.send_call(action, payload, answer_within)
        except OCPPError as error:  # the ocpp library is the schema authority for payloads
            raise ChargerCallRefused(f"{action} payload breaks the OCPP 1.6 schema: {error.description}") from None
        except ConnectionClosed:
            raise ChargerNotConnected(charger_id) from None

    def is_connected(self, charger_id: str) -> bool:
        return charger_id in self._connections

    async def watch_liveness(self, check_every: float = 1.0) -> None:
        """Close connections silent for longer than ``offline_after`` (a heartbeat deadline)."""
        if self._offline_after is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(check_every, self._offline_after / 2))
            now = loop.time()
            for charger_id, charger in list(self._connections.items()):
                if now - charger.last_message_at > self._offline_after:
                    log.warning("ocpp.heartbeat_deadline_missed", charger_id=charger_id,
                                silent_for=round(now - charger.last_message_at, 1))
                    del self._connections[charger_id]
                    CONNECTED_CHARGERS.dec()
                    self._close_later(charger.connection, "heartbeat deadline missed")
                    await self._report_offline(charger, "heartbeat deadline missed")

    async def _report_offline(self, charger: ChargerConnection, reason: str) -> None:
        if charger.offline_reported:
            return
        charger.offline_reported = True
        try:
            await self._site.charger_connection(charger.id, online=False, reason=reason)
        except Exception:
            # E.g. the store closing under a shutdown: the next online event tells the same story.
            log.exception("ocpp.offline_not_recorded", charger_id=charger.id)

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        charger_id = charger_id_from_path(request.path)
        if charger_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, f"Connect to {PATH_PREFIX}<chargePointId>\n")
        tls_object = connection.transport.get_extra_info("ssl_object")
        tls = tls_object is not None
        admission = await self._site.admit(charger_id, request.headers.get("Authorization"), tls=tls,
                                           certificate_cn=certificate_cn(tls_object.getpeercert() if tls else None))
        if admission is Admission.UNKNOWN:
            log.warning("ocpp.unknown_charger", charger_id=charger_id)
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charge point\n")
        if admission is Admission.UNAUTHORIZED:
            log.warning("ocpp.unauthorized", charger_id=charger_id, tls=tls)  # never the credentials
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        charger_id = charger_id_from_path(connection.request.path if connection.request else "")
        if charger_id is None:  # pragma: no cover - _process_request refused it already
            await connection.close(CloseCode.POLICY_VIOLATION)
            return
        if connection.subprotocol != SUBPROTOCOL:
            # OCPP-J 1.6 §3.1.2: without an agreed subprotocol there is no OCPP to speak.
            log.warning("ocpp.no_subprotocol", charger_id=charger_id,
                        offered=_offered(connection.request.headers if connection.request else Headers()))
            await connection.close(CloseCode.PROTOCOL_ERROR, "subprotocol ocpp1.6 required")
            return
        charger = ChargerConnection(charger_id, connection, self._site, self._schemas)
        previous = self._connections.get(charger_id)
        self._connections[charger_id] = charger
        if previous is None:
            CONNECTED_CHARGERS.inc()
        else:
            log.info("ocpp.connection_replaced", charger_id=charger_id)
            self._close_later(previous.connection, "replaced by a new connection")
        log.info("ocpp.connected", charger_id=charger_id, remote=str(connection.remote_address))
        reason = "connection closed"
        try:
            await self._site.charger_connection(charger_id, online=True)
            await charger.start()
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            reason = f"connection closed ({code})" if code else "connection lost (no close frame)"
            log.info("ocpp.disconnected", charger_id=charger_id, code=code)
        finally:
            if self._connections.get(charger_id) is charger:
                del self._connections[charger_id]
                CONNECTED_CHARGERS.dec()
                await self._report_offline(charger, reason)

    def _close_later(self, connection: ServerConnection, reason: str) -> None:
        # Not awaited: a dead peer would hold the new connection for close_timeout seconds.
        task = asyncio.create_task(connection.close(CloseCode.NORMAL_CLOSURE, reason),
                                   name=f"ocpp.close-replaced:{connection.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Subprotocol | None:
    # Complete the handshake without a subprotocol instead of failing it with HTTP 400 (the
    # websockets default); _handle then closes the connection with a reason the charger can log.
    return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None


def _offered(headers: Headers) -> list[str]:
    return headers.get_all("Sec-WebSocket-Protocol")
