"""The OCPP 1.6J central system of the site, served over WebSockets.

Chargers connect to ``ws://<host>:<port>/ocpp/<chargePointId>`` (percent-encoded id) with
subprotocol ``ocpp1.6``. Each connection is a :class:`ChargerConnection` (the ``ocpp``
library's v16 ChargePoint) whose handlers turn a CALL into one call on :class:`edge.site.Site`
and return its answer. This module owns only the protocol quirks:

* OCPP-J 1.6 §3 (connection): an unknown charger id gets HTTP 404 at the handshake; a connection that
  offers no acceptable subprotocol completes the handshake without one and is closed.
* OCPP-NOTES "Status": a second connection with the same charger id replaces the first.
* OCPP-J 1.6 §4.2.3: error codes keep the 1.6 spelling on the wire (the ``ocpp`` library
  emits the 2.0.1 "FormatViolation"); a malformed CALL gets a CALLERROR when its id can be
  read; the connection stays up.
* CALLs other than BootNotification from a charger whose boot was never accepted get a
  SecurityError. The accepted state is in SQLite, so a plain reconnect keeps it.
* The central system never awaits its own CALL to a charger inside the handler of that
  charger's CALL (it would deadlock: one outstanding CALL per direction). CALLs to chargers
  (:meth:`OcppServer.call`) come from the admin API, cloud commands and background tasks,
  one at a time per connection; a CALLRESULT nobody waits for is dropped.
* Security profiles 1 and 2 (OCPP 1.6 security whitepaper): HTTP Basic auth on the upgrade
  request, checked against the charger's stored key; wrong or missing credentials get 401, a
  profile 2 charger on a connection without TLS gets 401 too (never downgraded). Profile 3: a client
  certificate of the charger CA (the TLS handshake refuses an expired or foreign one) whose subject CN
  is the charger id, else 401.
* Liveness (OCPP-NOTES "Status"): WebSocket pings, and a deadline on the time since the
  charger's last message; a charger that misses either is closed and reported offline.
* Every CALL gets an answer: an unexpected failure is answered with InternalError, and numbers a
  SQLite column cannot hold get PropertyConstraintViolation, as does a meterStart/meterStop above
  :data:`mqtt.payloads.METER_MAX_WH`. A meter value beyond it is kept out of the figures
  (:func:`edge.domain.read_sampled_values`) and relayed as a ``session.anomaly``.
* The hot actions (MeterValues, Heartbeat, StatusNotification) of an accepted charger take a
  fast path: the compiled 1.6 schema (:mod:`edge.validation`) instead of the library's
  interpreted one in a thread pool, memoised key conversion, and the same ``@on`` handler and
  answer. A payload the compiled schema refuses goes down the library's path, so the CALLERROR
  is the library's, word for word.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import ssl
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError, PropertyConstraintViolationError, SecurityError
from ocpp.messages import Call, CallError, CallResult, MessageType, validate_payload
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action, AuthorizationStatus, DataTransferStatus, GenericStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from edge import validation
from edge.domain import AuthDecision, meter_in_range
from edge.metrics import CONNECTED_CHARGERS, OCPP_MESSAGES
from edge.site import Admission, BootInfo, CallAnswer, ChargerCallRefused, ChargerNotConnected, Site
from mqtt.payloads import METER_MAX_WH

log = structlog.get_logger(__name__)

SUBPROTOCOL = Subprotocol("ocpp1.6")
PATH_PREFIX = "/ocpp/"
MAX_CHARGER_ID_LENGTH = 64

_V16_ACTIONS = frozenset(action.value for action in Action)

# OCPP-J 1.6 §4.2.3 spellings for the codes the ocpp library writes in 2.0.1 style.
_V16_ERROR_CODES = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}

_INT64 = (-(2**63), 2**63 - 1)

FAST_ACTIONS = frozenset({Action.meter_values.value, Action.heartbeat.value, Action.status_notification.value})
"""The CALLs every charger sends all day long; see the module docstring."""
validation.warm_up(FAST_ACTIONS)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


@functools.lru_cache(maxsize=128)
def _message_counter(action: str) -> Any:
    return OCPP_MESSAGES.labels(action=action if action in _V16_ACTIONS else "unknown")


@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    # The library's own conversion, memoised: a 1.6 schema admits only its own property names.
    return next(iter(camel_to_snake_case({key: None})))


@functools.lru_cache(maxsize=256)
def _camel_key(key: str) -> str:
    return next(iter(snake_to_camel_case({key: None})))


class _SnakeNames(dict[str, str]):
    """camelCase key -> the library's snake_case name, learnt on first use."""

    def __missing__(self, key: str) -> str:
        if len(self) >= 4096:  # bounded: a charger may send keys the schema refuses
            self.clear()
        name = self[key] = _snake_key(key)
        return name


_SNAKE = _SnakeNames()
_CONTAINERS = (dict, list)


def _snake_case(data: Any) -> Any:
    """:func:`ocpp.charge_point.camel_to_snake_case` for JSON data, with memoised names.

    An object whose keys are already snake_case and that holds no object or array is returned as it
    is, not copied (the innermost objects of a MeterValues: value, unit, measurand, ...): the fewer
    containers a CALL allocates, the rarer the garbage collector's passes.
    """
    if type(data) is dict:
        names = _SNAKE
        for key, value in data.items():
            if type(value) in _CONTAINERS or names[key] != key:
                return {names[key]: _snake_case(value) if type(value) in _CONTAINERS else value
                        for key, value in data.items()}
        return data
    if type(data) is list:
        return [_snake_case(value) if type(value) in _CONTAINERS else value for value in data]
    return data


def _answer_payload(result: Any) -> dict[str, Any]:
    """What the library sends for a handler's result dataclass (camelCase, Nones removed)."""
    fields = _result_fields(type(result))
    if not fields:
        return {}
    values = [(camel, getattr(result, name)) for name, camel in fields]
    if any(isinstance(value, list | dict) or dataclasses.is_dataclass(value) for _, value in values):
        return dict(snake_to_camel_case(remove_nones(serialize_as_dict(result))))
    return {camel: value for camel, value in values if value is not None}


def _result_fields(result_type: type[Any]) -> tuple[tuple[str, str], ...]:
    """(snake_case, camelCase) names of a result dataclass's fields, once per class."""
    fields = _RESULT_FIELDS.get(result_type)
    if fields is None:
        fields = _RESULT_FIELDS[result_type] = tuple((field.name, _camel_key(field.name))
                                                     for field in dataclasses.fields(result_type))
    return fields


_RESULT_FIELDS: dict[type[Any], tuple[tuple[str, str], ...]] = {}


# An integer outside SQLite's range has at least 19 digits in the frame's text; without such a
# run of digits the payload walk of _fits_sqlite cannot fail and is skipped.
_LONG_DIGITS = re.compile(r"\d{19}")


class _LongInteger(Exception):
    """An integer of 19 characters or more in a frame (see :func:`_decode`)."""


def _integer(text: str) -> int:
    if len(text) >= 19:
        raise _LongInteger
    return int(text)


_decode_short = json.JSONDecoder(parse_int=_integer).decode


def _decode(raw_msg: str | bytes) -> tuple[Any, bool]:
    """The frame, and whether its text may hold an integer too large for SQLite.

    The decoder itself notices the integer tokens of 19 characters or more (cheaper than searching the
    text for a run of digits); a frame with one is decoded again, plainly, and its payload walked.
    """
    if isinstance(raw_msg, str):
        try:
            return _decode_short(raw_msg), False
        except _LongInteger:
            return json.loads(raw_msg), True
    frame = json.loads(raw_msg)
    return frame, _LONG_DIGITS.search(raw_msg.decode("utf-8", "replace")) is not None


def _fits_sqlite(value: Any) -> bool:
    """Whether every integer in a payload fits a SQLite INTEGER (JSON schema sets no bounds)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, dict):
        return all(_fits_sqlite(v) for v in value.values())
    if isinstance(value, list):
        return all(_fits_sqlite(v) for v in value)
    return True


def _check_meter(field: str, value: int) -> None:
    """A meterStart/meterStop beyond what the contract carries (:data:`mqtt.payloads.METER_MAX_WH`) is
    refused with PropertyConstraintViolation naming the field; nothing is stored."""
    if not meter_in_range(value):
        raise PropertyConstraintViolationError(
            description=f"{field} is out of range: a meter reads 0 to {METER_MAX_WH} Wh",
            details={"field": field})


_CALL_ERROR_PREFIX = f"[{MessageType.CallError:d},"
_CALL_RESULT = int(MessageType.CallResult)

# Recovers the message id of a CALL that is not valid JSON, so it can still be answered.
_CALL_ID = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')


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


def ocpp_time(value: datetime) -> str:
    """An OCPP dateTime: UTC, milliseconds, ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _id_tag_info(decision: AuthDecision) -> IdTagInfo:
    return IdTagInfo(
        status=AuthorizationStatus(decision.status.value),
        expiry_date=ocpp_time(decision.expiry_date) if decision.expiry_date else None,
        parent_id_tag=decision.parent_id_tag,
    )


class ChargerConnection(ChargePoint):  # type: ignore[misc]  # the ocpp library is untyped
    """One charger's OCPP 1.6J connection. Handlers are thin: parse, call the site, answer."""

    def __init__(self, charger_id: str, connection: ServerConnection, site: Site) -> None:
        super().__init__(charger_id, connection)
        self.connection = connection
        self._site = site
        self._boot_accepted = False
        self._log = log.bind(charger_id=charger_id)
        self._awaiting: str | None = None
        self.last_message_at = asyncio.get_running_loop().time()
        self.offline_reported = False

    # --- framing ------------------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        self.last_message_at = asyncio.get_running_loop().time()
        try:
            await self._route(raw_msg)
        except ConnectionClosed:
            raise
        except Exception:
            # A bug must not take the charger's connection down, and the CALL must still be answered
            # (or the charger retries it forever).
            self._log.exception("ocpp.route_failed")
            text = raw_msg.decode("utf-8", "replace") if isinstance(raw_msg, bytes) else raw_msg
            match = _CALL_ID.match(text)
            if match:
                await self._send_error(match.group(1), "InternalError", "The central system failed on this CALL")

    async def send_call(self, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer:
        """Send one CALL (OCPP payload, camelCase) and wait for its answer.

        Raises TimeoutError when the charger does not answer within ``answer_within`` seconds, and the
        ``ocpp`` library's OCPPError when the payload breaks the 1.6 schema.
        """
        message = Call(str(uuid.uuid4()), action, payload)
        await validate_payload(message, self._ocpp_version)
        async with self._call_lock:
            self._awaiting = message.unique_id
            try:
                await self._send(message.to_json())
                response = await self._get_specific_response(message.unique_id, answer_within)
            finally:
                self._awaiting = None
        if response.message_type_id == MessageType.CallError:
            return CallAnswer(kind="error", payload=response.error_details or {}, error_code=response.error_code,
                              error_description=response.error_description)
        response.action = action
        try:
            await validate_payload(response, self._ocpp_version)
        except OCPPError as error:
            return CallAnswer(kind="invalid", payload=response.payload if isinstance(response.payload, dict) else {},
                              error_code=error.code, error_description=error.description)
        return CallAnswer(kind="result", payload=response.payload)

    async def _route(self, raw_msg: str | bytes) -> None:
        try:
            frame, long_integers = _decode(raw_msg)
        except (ValueError, UnicodeDecodeError):
            text = raw_msg.decode("utf-8", "replace") if isinstance(raw_msg, bytes) else raw_msg
            match = _CALL_ID.match(text)
            self._log.warning("ocpp.malformed_frame", reason="not JSON", frame=text[:200])
            if match:
                await self._send_error(match.group(1), "FormationViolation", "Frame is not valid JSON")
            return
        if not isinstance(frame, list) or not frame or type(frame[0]) is not int:
            self._log.warning("ocpp.malformed_frame", reason="not an OCPP-J array", frame=str(frame)[:200])
            if isinstance(frame, list) and len(frame) > 1 and frame[0] == MessageType.Call \
                    and isinstance(frame[1], str):
                await self._send_error(frame[1], "FormationViolation", "MessageTypeId must be an integer")
            return
        if frame[0] in (MessageType.CallResult, MessageType.CallError):
            if len(frame) < 3 or frame[1] != self._awaiting:
                # Late (after a timeout), repeated or made up: nobody waits for it. Queuing it would
                # hand it to the next CALL.
                self._log.info("ocpp.unexpected_answer", frame=str(frame)[:200])
                return
            await super().route_message(raw_msg)
            return
        if frame[0] != MessageType.Call:
            # OCPP-J 1.6 §4.1.3: a message with an unknown MessageTypeId is ignored.
            self._log.info("ocpp.unknown_message_type", message_type=frame[0])
            return
        if len(frame) != 4 or not isinstance(frame[1], str) or not isinstance(frame[2], str) \
                or not isinstance(frame[3], dict):
            self._log.warning("ocpp.malformed_frame", reason="bad CALL", frame=str(frame)[:200])
            if len(frame) > 1 and isinstance(frame[1], str):
                await self._send_error(frame[1], "FormationViolation",
                                       'A CALL is [2, "<uniqueId>", "<Action>", {<payload>}]')
            return
        call = Call(frame[1], frame[2], frame[3])
        if long_integers and not _fits_sqlite(frame[3]):
            await self._send(call.create_call_error(PropertyConstraintViolationError(
                description="An integer is out of range", details={})).to_json())
            return
        _message_counter(call.action).inc()
        try:
            if call.action in FAST_ACTIONS and self._boot_accepted and validation.is_valid(call.action, call.payload):
                await self._answer_fast(call)
                return
            await self._dispatch(call)
        except OCPPError as error:
            self._log.warning("ocpp.call_error", action=call.action,
                              code=_V16_ERROR_CODES.get(error.code, error.code), description=error.description)
            await self._send(call.create_call_error(error).to_json())

    async def _dispatch(self, call: Call) -> None:
        if call.action not in self.route_map:
            # OCPP-J 1.6 §4.2.3: NotSupported = "recognized but not supported",
            # NotImplemented = "not known". (The ocpp library swaps the two.)
            if call.action in _V16_ACTIONS:
                raise NotSupportedError(description="Requested Action is recognized but not supported by the "
                                        "receiver", details={"cause": f"{call.action} is not supported"})
            raise OcppNotImplemented(description="Requested Action is not known by receiver",
                                     details={"cause": f"{call.action} is not an OCPP 1.6 action"})
        if call.action != Action.boot_notification and not await self._is_boot_accepted():
            raise SecurityError(details={"cause": "BootNotification has not been accepted"})
        await self._handle_call(call)

    async def _answer_fast(self, call: Call) -> None:
        """The library's ``_handle_call`` for a payload the compiled schema accepted."""
        handler = self.route_map[call.action]["_on_action"]
        payload = _answer_payload(await handler(**_snake_case(call.payload)))
        if not validation.is_valid(call.action, payload, response=True):
            # A bug of ours: let the library say what is wrong with the answer (it raises).
            await validate_payload(CallResult(call.unique_id, payload, action=call.action), self._ocpp_version)
        await self._send(f"[{_CALL_RESULT},{_dumps(call.unique_id)},{_dumps(payload)}]")

    async def _is_boot_accepted(self) -> bool:
        if not self._boot_accepted:
            self._boot_accepted = await self._site.boot_accepted(self.id)
        return self._boot_accepted

    async def _send_error(self, unique_id: str, code: str, description: str) -> None:
        await self._send(CallError(unique_id, code, description, {}).to_json())

    async def _send(self, message: str) -> None:
        if message.startswith(_CALL_ERROR_PREFIX):
            frame = json.loads(message)
            if frame[2] in _V16_ERROR_CODES:
                frame[2] = _V16_ERROR_CODES[frame[2]]
                message = json.dumps(frame, separators=(",", ":"))
        await super()._send(message)

    # --- handlers -----------------------------------------------------------------------

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


class OcppServer:
    """The WebSocket server; ``async with`` binds it, :meth:`serve_forever` runs it."""

    def __init__(self, site: Site, *, host: str, port: int, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, offline_after: float | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._site = site
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
        charger = ChargerConnection(charger_id, connection, self._site)
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
