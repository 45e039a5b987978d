"""The OCPP-J side of one charger's connection: frames in, CALLERRORs, the fast path, CALLs out.

:class:`OcppConnection` is the ``ocpp`` library's v16 ChargePoint with the central system's framing
rules (see :mod:`edge.ocpp`); the ``@on`` handlers live in :mod:`edge.ocpp.handlers`.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import structlog
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError, OCPPError, PropertyConstraintViolationError, SecurityError
from ocpp.messages import Call, CallError, CallResult, MessageType, validate_payload
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from edge.metrics import OCPP_MESSAGES
from edge.ocpp.codec import (
    V16_ERROR_CODES,
    call_id,
    call_result_frame,
    decode_frame,
    fits_sqlite,
    frame_text,
    v16_spelling,
)
from edge.ocpp.fastpath import FAST_ACTIONS, answer_payload, snake_case
from edge.site import CallAnswer, Site
from edge.validation import Schemas

log = structlog.get_logger(__name__)

V16_ACTIONS = frozenset(action.value for action in Action)


@functools.lru_cache(maxsize=128)
def _message_counter(action: str) -> Any:
    return OCPP_MESSAGES.labels(action=action if action in V16_ACTIONS else "unknown")


class OcppConnection(ChargePoint):  # type: ignore[misc]  # the ocpp library is untyped
    """One charger's OCPP 1.6J connection, without its handlers (see :class:`edge.ocpp.ChargerConnection`).

    ``schemas`` are the compiled schemas of the fast path's actions (:data:`edge.ocpp.fastpath.FAST_ACTIONS`),
    built once by the composition root.
    """

    def __init__(self, charger_id: str, connection: ServerConnection, site: Site, schemas: Schemas) -> None:
        super().__init__(charger_id, connection)
        self.connection = connection
        self._site = site
        self._schemas = schemas
        self._boot_accepted = False
        self._log = log.bind(charger_id=charger_id)
        self._awaiting: str | None = None
        self.last_message_at = asyncio.get_running_loop().time()
        self.offline_reported = False

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
            unique_id = call_id(frame_text(raw_msg))
            if unique_id is not None:
                await self._send_error(unique_id, "InternalError", "The central system failed on this CALL")

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
        return CallAnswer(kind="result", payload=response.payload)

    async def _route(self, raw_msg: str | bytes) -> None:
        try:
            frame, long_integers = decode_frame(raw_msg)
        except (ValueError, UnicodeDecodeError):
            text = frame_text(raw_msg)
            unique_id = call_id(text)
            self._log.warning("ocpp.malformed_frame", reason="not JSON", frame=text[:200])
            if unique_id is not None:
                await self._send_error(unique_id, "FormationViolation", "Frame is not valid JSON")
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
        if long_integers and not fits_sqlite(frame[3]):
            await self._send(call.create_call_error(PropertyConstraintViolationError(
                description="An integer is out of range", details={})).to_json())
            return
        _message_counter(call.action).inc()
        try:
            if call.action in FAST_ACTIONS and self._boot_accepted \
                    and self._schemas.is_valid(call.action, call.payload):
                await self._answer_fast(call)
                return
            await self._dispatch(call)
        except OCPPError as error:
            self._log.warning("ocpp.call_error", action=call.action,
                              code=V16_ERROR_CODES.get(error.code, error.code), description=error.description)
            await self._send(call.create_call_error(error).to_json())

    async def _dispatch(self, call: Call) -> None:
        if call.action not in self.route_map:
            # OCPP-J 1.6 §4.2.3: NotSupported = "recognized but not supported",
            # NotImplemented = "not known". (The ocpp library swaps the two.)
            if call.action in V16_ACTIONS:
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
        payload = answer_payload(await handler(**snake_case(call.payload)))
        if not self._schemas.is_valid(call.action, payload, response=True):
            # A bug of ours: let the library say what is wrong with the answer (it raises).
            await validate_payload(CallResult(call.unique_id, payload, action=call.action), self._ocpp_version)
        await self._send(call_result_frame(call.unique_id, payload))

    async def _is_boot_accepted(self) -> bool:
        if not self._boot_accepted:
            self._boot_accepted = await self._site.boot_accepted(self.id)
        return self._boot_accepted

    async def _send_error(self, unique_id: str, code: str, description: str) -> None:
        await self._send(CallError(unique_id, code, description, {}).to_json())

    async def _send(self, message: str) -> None:
        await super()._send(v16_spelling(message))
