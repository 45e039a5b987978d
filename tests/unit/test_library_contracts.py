"""Contracts with the private or undocumented internals of the libraries the project leans on.

pyproject.toml keeps ``ocpp``, ``websockets``, ``aiomqtt``, ``paho-mqtt`` and ``aiosqlite`` below their
next major (for aiosqlite, 0.x: the next minor) version; inside that range a release may still change
an internal. Each test below pins one internal, the way we use it, and fails naming it, the file that
uses it and what changed, so an upgrade that breaks one is caught here and not on a site.

ocpp (``ocpp.v16.ChargePoint`` and ``ocpp.charge_point``):

* ``ChargePoint._call_lock``: the asyncio.Lock that ``call()`` holds from send to answer; taken around
  our own CALLs in edge/ocpp/connection.py (``send_call``) and chargepoint-sim/chargepoint_sim/charger.py
  (``send_raw``).
* ``ChargePoint._send(message)``: the one way a frame leaves; overridden in edge/ocpp/connection.py,
  called there and in chargepoint-sim/chargepoint_sim/charger.py (``send_raw``).
* ``ChargePoint._get_specific_response(unique_id, timeout)``: the answer to one CALL, fed by
  ``route_message``; edge/ocpp/connection.py (``send_call``), chargepoint-sim/chargepoint_sim/charger.py.
* ``ChargePoint._handle_call(call)``: runs the ``@on`` handler with snake_case keywords, sends the
  CALLRESULT, then runs the ``@after`` hook; edge/ocpp/connection.py (``_dispatch``). The handlers of
  chargepoint-sim/chargepoint_sim/profiles/*.py rely on ``@after`` running only once the answer is sent.
* ``ChargePoint._ocpp_version``: edge/ocpp/connection.py (``validate_payload``).
* ``ChargePoint.route_map[action]["_on_action"]``: edge/ocpp/connection.py (``_dispatch``, ``_answer_fast``).
* ``ChargePoint.start()`` handing every frame to an overridable ``route_message``:
  edge/ocpp/connection.py, chargepoint-sim/chargepoint_sim/link.py (the ``silent`` fault).
* ``ocpp.charge_point.camel_to_snake_case``, ``snake_to_camel_case``, ``remove_nones``,
  ``serialize_as_dict`` (undocumented helpers) and the answer ``_handle_call`` builds with them:
  edge/ocpp/fastpath.py, edge/ocpp/handlers.py.
* the schema files ``ocpp/v16/schemas/<Action>[Response].json`` and the three the library parses with
  Decimal (``ocpp.messages._validate_payload``): edge/validation.py (``SCHEMA_DIR``, ``LIBRARY_ONLY``).

websockets:

* ``ClientConnection.transport.abort()`` (undocumented attribute): a cut cable in
  chargepoint-sim/chargepoint_sim/charger.py (``go_offline(abrupt=True)``).
* ``ServerConnection.transport.get_extra_info(...)`` in ``process_request``: edge/ocpp/server.py.
* a TCP connection closed before any HTTP request is logged as ``InvalidMessage`` caused by
  ``EOFError``: edge/ocpp/server.py (``_QuietProbes``).

aiomqtt / paho-mqtt:

* ``aiomqtt.Client._client`` is paho's ``Client``; its ``manual_ack_set(True)`` defers the PUBACK until
  ``ack(mid, qos)``: mqtt/client.py (``enable_manual_ack``, ``ack``), used by edge/uplink.py,
  cloud/platform/ingest.py, cloud/platform/mqtt_link.py.

aiosqlite:

* ``Connection._execute(fn)``: runs ``fn`` on aiosqlite's thread, in order with the statements queued
  before it, and ``connect(..., factory=...)`` making that thread's connection with our factory:
  edge/store/group_commit.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
import aiosqlite
import paho.mqtt.client as paho
import pytest
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.messages import Call, CallError, CallResult, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidMessage
from websockets.http11 import Request

from edge.validation import LIBRARY_ONLY, SCHEMA_DIR

NOW = "2026-12-07T12:00:00.000Z"


def _broken(internal: str, used_by: str, what: str) -> str:
    return f"{internal} (used by {used_by}) changed in the installed version: {what}"


def _params(fn: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(fn).parameters)


async def _until(check: Callable[[], bool], what: str, within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class _Wire:
    """A stand-in for the WebSocket under a ChargePoint: what was sent, and frames to receive."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.incoming: asyncio.Queue[str] = asyncio.Queue()

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self) -> str:
        return await self.incoming.get()


# --- ocpp ----------------------------------------------------------------------------------


async def test_ocpp_call_lock_is_the_lock_call_holds_from_send_to_answer() -> None:
    wire = _Wire()
    point = ChargePoint("CP-1", wire, response_timeout=2)
    lock = getattr(point, "_call_lock", None)
    assert isinstance(lock, asyncio.Lock), _broken(
        "ocpp ChargePoint._call_lock", "edge/ocpp/connection.py, chargepoint_sim/charger.py",
        f"not an asyncio.Lock but {type(lock).__name__}")
    async with lock:
        heartbeat = asyncio.create_task(point.call(call.Heartbeat()))
        await asyncio.sleep(0.05)
        assert wire.sent == [], _broken("ocpp ChargePoint._call_lock", "chargepoint_sim/charger.py send_raw",
                                        "call() sent a CALL while another holder had the lock")
    await _until(lambda: len(wire.sent) == 1, "call() to send once the lock was free")
    unique_id = json.loads(wire.sent[0])[1]
    await point.route_message(json.dumps([3, unique_id, {"currentTime": NOW}]))
    answer = await asyncio.wait_for(heartbeat, 2)
    assert answer.current_time == NOW


async def test_ocpp_send_and_get_specific_response_carry_one_call_and_its_answer() -> None:
    used_by = "edge/ocpp/connection.py, chargepoint_sim/charger.py"
    assert _params(ChargePoint._send) == ["self", "message"], _broken(
        "ocpp ChargePoint._send", used_by, f"signature is now {inspect.signature(ChargePoint._send)}")
    assert _params(ChargePoint._get_specific_response) == ["self", "unique_id", "timeout"], _broken(
        "ocpp ChargePoint._get_specific_response", used_by,
        f"signature is now {inspect.signature(ChargePoint._get_specific_response)}")
    wire = _Wire()
    point = ChargePoint("CP-1", wire, response_timeout=2)
    frame = '[2,"u-1","Heartbeat",{}]'
    await point._send(frame)
    assert wire.sent == [frame], _broken("ocpp ChargePoint._send", used_by, "the frame did not reach the connection")

    await point.route_message(json.dumps([3, "someone-else", {}]))  # an answer nobody waits for is skipped
    await point.route_message(json.dumps([3, "u-1", {"currentTime": NOW}]))
    response = await point._get_specific_response("u-1", 1)
    assert isinstance(response, CallResult) and response.unique_id == "u-1", _broken(
        "ocpp ChargePoint._get_specific_response", used_by, f"answered {response!r}")
    assert json.loads(response.to_json()) == [3, "u-1", {"currentTime": NOW}]

    await point.route_message(json.dumps([4, "u-2", "NotSupported", "no", {"cause": "x"}]))
    error = await point._get_specific_response("u-2", 1)
    assert isinstance(error, CallError), _broken("ocpp ChargePoint._get_specific_response", used_by,
                                                 f"a CALLERROR came back as {error!r}")
    assert (error.error_code, error.error_description, error.error_details) == ("NotSupported", "no", {"cause": "x"})

    with pytest.raises(TimeoutError):
        await point._get_specific_response("never-answered", 0.05)


class _Probe(ChargePoint):  # type: ignore[misc]
    def __init__(self, wire: _Wire) -> None:
        super().__init__("CP-1", wire)
        self.wire = wire
        self.events: list[tuple[str, Any]] = []

    @on(Action.authorize)
    def on_authorize(self, **kwargs: Any) -> Any:
        self.events.append(("on", kwargs))
        return call_result.Authorize(id_tag_info=IdTagInfo(status="Accepted"))

    @after(Action.authorize)
    def after_authorize(self, **kwargs: Any) -> None:
        self.events.append(("after, frames sent", len(self.wire.sent)))

    @on(Action.status_notification)
    def on_status(self, connector_id: int, error_code: str, status: str, **kwargs: Any) -> Any:
        self.events.append(("status", (connector_id, error_code, status, kwargs)))
        return call_result.StatusNotification()


async def test_ocpp_handle_call_runs_the_handler_answers_then_runs_the_after_hook() -> None:
    used_by = "edge/ocpp/connection.py, chargepoint_sim/profiles/*.py"
    point = _Probe(_Wire())
    assert getattr(point, "_ocpp_version", None) == "1.6", _broken(
        "ocpp ChargePoint._ocpp_version", "edge/ocpp/connection.py", f"is {getattr(point, '_ocpp_version', None)!r}")
    route = point.route_map.get(Action.authorize)
    assert route is not None and route.get("_on_action") == point.on_authorize, _broken(
        'ocpp ChargePoint.route_map[action]["_on_action"]', "edge/ocpp/connection.py", f"route is {route!r}")
    assert _params(ChargePoint._handle_call) == ["self", "msg"], _broken(
        "ocpp ChargePoint._handle_call", used_by, f"signature is now {inspect.signature(ChargePoint._handle_call)}")

    await point._handle_call(Call("u-1", "Authorize", {"idTag": "TAG-1"}))
    assert point.events == [("on", {"id_tag": "TAG-1"}), ("after, frames sent", 1)], _broken(
        "ocpp ChargePoint._handle_call", used_by,
        f"expected the handler (snake_case keywords), the answer sent, then @after; got {point.events}")
    assert json.loads(point.wire.sent[0]) == [3, "u-1", {"idTagInfo": {"status": "Accepted"}}]

    # edge/ocpp/fastpath.py builds the same answer with the library's helpers.
    answer = call_result.Authorize(id_tag_info=IdTagInfo(status="Accepted"))
    assert snake_to_camel_case(remove_nones(serialize_as_dict(answer))) == {"idTagInfo": {"status": "Accepted"}}


def test_ocpp_case_helpers_convert_nested_payloads_as_the_fast_path_expects() -> None:
    used_by = "edge/ocpp/fastpath.py, edge/ocpp/handlers.py"
    meter_values = {"connectorId": 1, "transactionId": 7,
                    "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "10", "measurand": "Energy"}]}]}
    snake = {"connector_id": 1, "transaction_id": 7,
             "meter_value": [{"timestamp": NOW, "sampled_value": [{"value": "10", "measurand": "Energy"}]}]}
    assert camel_to_snake_case(meter_values) == snake, _broken("ocpp.charge_point.camel_to_snake_case", used_by,
                                                               f"gave {camel_to_snake_case(meter_values)}")
    assert snake_to_camel_case(snake) == meter_values, _broken("ocpp.charge_point.snake_to_camel_case", used_by,
                                                               f"gave {snake_to_camel_case(snake)}")
    assert remove_nones({"a": None, "b": {"c": None, "d": 1}, "l": [{"x": None, "y": 2}]}) == {
        "b": {"d": 1}, "l": [{"y": 2}]}, _broken("ocpp.charge_point.remove_nones", used_by, "no longer recursive")
    assert serialize_as_dict(call_result.Heartbeat(current_time=NOW)) == {"current_time": NOW}, _broken(
        "ocpp.charge_point.serialize_as_dict", used_by, "a result dataclass is no longer a plain dict")


async def test_ocpp_start_hands_every_frame_to_an_overridden_route_message() -> None:
    seen: list[str] = []

    class _Link(ChargePoint):  # type: ignore[misc]
        async def route_message(self, raw_msg: str) -> None:
            seen.append(raw_msg)

    wire = _Wire()
    reader = asyncio.create_task(_Link("CP-1", wire).start())
    try:
        await wire.incoming.put('[2,"u-1","Reset",{"type":"Soft"}]')
        await _until(lambda: bool(seen), "start() to call route_message")
    finally:
        reader.cancel()
    assert seen == ['[2,"u-1","Reset",{"type":"Soft"}]'], _broken(
        "ocpp ChargePoint.start/route_message", "edge/ocpp/connection.py, chargepoint_sim/link.py", f"saw {seen}")


async def test_ocpp_ships_every_v16_schema_and_parses_exactly_three_with_decimal() -> None:
    used_by = "edge/validation.py"
    missing = [name for action in Action for name in (action.value, f"{action.value}Response")
               if not (SCHEMA_DIR / f"{name}.json").is_file()]
    assert not missing, _broken("ocpp's schema files ocpp/v16/schemas/*.json", used_by, f"missing {missing}")
    with_multiple_of = {path.stem for path in SCHEMA_DIR.glob("*.json")
                        if "multipleOf" in path.read_text(encoding="utf-8-sig")}
    assert with_multiple_of == LIBRARY_ONLY, _broken(
        "ocpp.messages._validate_payload's Decimal schemas", used_by,
        f"schemas with multipleOf are now {sorted(with_multiple_of)}, LIBRARY_ONLY is {sorted(LIBRARY_ONLY)}")
    # 21.4 is a multiple of 0.1 only when read as a Decimal: the library must still read these so.
    limit = {"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
             "chargingProfileKind": "Absolute",
             "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0,
                                                                                       "limit": 21.4}]}}
    await validate_payload(Call("u-1", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": limit}), "1.6")
    await validate_payload(Call("u-2", "RemoteStartTransaction", {"idTag": "T", "chargingProfile": limit}), "1.6")
    await validate_payload(CallResult("u-3", {"status": "Accepted", "chargingSchedule": limit["chargingSchedule"]},
                                      action="GetCompositeSchedule"), "1.6")


# --- websockets ----------------------------------------------------------------------------


async def test_websockets_client_transport_abort_drops_the_link_without_a_close_frame() -> None:
    used_by = "chargepoint_sim/charger.py go_offline(abrupt=True)"
    closed: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        try:
            await connection.recv()
        except ConnectionClosed as exc:
            closed.set_result(exc)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client: ClientConnection = await connect(f"ws://127.0.0.1:{port}")
        transport = getattr(client, "transport", None)
        assert isinstance(transport, asyncio.Transport), _broken(
            "websockets ClientConnection.transport", used_by, f"is {transport!r}")
        transport.abort()
        seen = await asyncio.wait_for(closed, 5)
        assert seen.rcvd is None, _broken("websockets ClientConnection.transport.abort()", used_by,
                                          "the server received a close frame")
        with pytest.raises(ConnectionClosed):
            await client.recv()


async def test_websockets_server_transport_and_probe_log_are_what_the_edge_reads() -> None:
    used_by = "edge/ocpp/server.py"
    extra: list[Any] = []
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tests.library_contracts.websockets")
    logger.propagate = False
    keep = _Keep()
    logger.addHandler(keep)

    async def process_request(connection: ServerConnection, request: Request) -> None:
        extra.append((connection.transport.get_extra_info("ssl_object"),
                      connection.transport.get_extra_info("peername")))

    async def handler(connection: ServerConnection) -> None:
        await connection.close()

    try:
        async with serve(handler, "127.0.0.1", 0, process_request=process_request, logger=logger) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as client:
                with pytest.raises(ConnectionClosed):
                    await client.recv()
            assert len(extra) == 1 and extra[0][0] is None and extra[0][1][0] == "127.0.0.1", _broken(
                "websockets ServerConnection.transport.get_extra_info", used_by, f"gave {extra}")

            _, writer = await asyncio.open_connection("127.0.0.1", port)  # a TCP health check
            writer.close()
            await writer.wait_closed()

            def probe_logged() -> bool:
                return any(r.exc_info and isinstance(r.exc_info[1], InvalidMessage)
                           and isinstance(r.exc_info[1].__cause__, EOFError) for r in records)

            await _until(probe_logged, "websockets to log the bare TCP probe")
    except AssertionError as exc:
        raise AssertionError(_broken("websockets' log of a TCP probe (InvalidMessage from EOFError)", used_by,
                                     f"{exc}; records: {[(r.getMessage(), r.exc_info) for r in records]}")) from exc
    finally:
        logger.removeHandler(keep)


# --- aiomqtt / paho-mqtt -------------------------------------------------------------------


async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One MQTT control packet: (first byte, body)."""
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, await reader.readexactly(length)


async def test_aiomqtt_client_wraps_paho_whose_manual_ack_defers_the_puback() -> None:
    used_by = "mqtt/client.py"
    from_client: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first, _ = await _packet(reader)
            assert first == 0x10  # CONNECT
            writer.write(b"\x20\x02\x00\x00")  # CONNACK, accepted
            topic = b"contracts/manual-ack"
            body = len(topic).to_bytes(2, "big") + topic + (7).to_bytes(2, "big") + b"stored?"
            writer.write(bytes([0x32, len(body)]) + body)  # PUBLISH, QoS 1, packet id 7
            await writer.drain()
            while True:
                from_client.put_nowait(await _packet(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aiomqtt.Client("127.0.0.1", port, identifier="library-contracts")
    inner = getattr(client, "_client", None)
    assert isinstance(inner, paho.Client), _broken("aiomqtt Client._client", used_by, f"is {inner!r}")
    assert _params(paho.Client.manual_ack_set) == ["self", "on"], _broken(
        "paho Client.manual_ack_set", used_by, f"signature is now {inspect.signature(paho.Client.manual_ack_set)}")
    assert _params(paho.Client.ack) == ["self", "mid", "qos"], _broken(
        "paho Client.ack", used_by, f"signature is now {inspect.signature(paho.Client.ack)}")
    inner.manual_ack_set(True)
    try:
        async with client:
            message = await asyncio.wait_for(anext(aiter(client.messages)), 5)
            assert (message.mid, message.qos, message.payload) == (7, 1, b"stored?")
            await asyncio.sleep(0.3)
            pubacks = [p for p in _drain(from_client) if p[0] == 0x40]
            assert not pubacks, _broken("paho Client.manual_ack_set(True)", used_by,
                                        "the message was acknowledged before ack() was called")
            inner.ack(message.mid, message.qos)
            while True:
                first, body = await asyncio.wait_for(from_client.get(), 5)
                if first == 0x40:
                    break
            assert body == b"\x00\x07", _broken("paho Client.ack", used_by, f"PUBACK body {body!r}")
    finally:
        server.close()
        await server.wait_closed()


def _drain(queue: asyncio.Queue[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


# --- aiosqlite -----------------------------------------------------------------------------


async def test_aiosqlite_execute_runs_a_function_on_its_thread_after_what_was_queued() -> None:
    used_by = "edge/store/group_commit.py"
    made: list[tuple[sqlite3.Connection, int]] = []

    class _Connection(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append((self, threading.get_ident()))

    execute: Callable[..., Awaitable[Any]] | None = None
    async with aiosqlite.connect(":memory:", factory=_Connection) as db:
        assert len(made) == 1, _broken("aiosqlite.connect(factory=...)", used_by,
                                       f"the factory made {len(made)} connections")
        execute = getattr(db, "_execute", None)
        assert execute is not None and inspect.iscoroutinefunction(execute), _broken(
            "aiosqlite Connection._execute", used_by, f"is {execute!r}")
        await db.execute("CREATE TABLE t (x INTEGER)")
        inserting = asyncio.create_task(db.execute("INSERT INTO t VALUES (1)"))
        await asyncio.sleep(0)  # the INSERT is queued on the thread first

        def count() -> tuple[int, int]:
            conn, _ = made[0]
            return conn.execute("SELECT count(*) FROM t").fetchone()[0], threading.get_ident()

        rows, thread = await execute(count)
        await inserting
        assert thread == made[0][1], _broken("aiosqlite Connection._execute", used_by,
                                             "the function ran on another thread than the connection's")
        assert rows == 1, _broken("aiosqlite Connection._execute", used_by,
                                  "the function ran before a statement queued earlier")

        def fail() -> None:
            raise sqlite3.OperationalError("boom")

        with pytest.raises(sqlite3.OperationalError, match="boom"):
            await execute(fail)
