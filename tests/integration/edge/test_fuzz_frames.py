"""Bad input: thousands of random and mutated OCPP-J frames (hypothesis) at a live edge over a real
WebSocket. No crash, every CALL answered with a CALLRESULT or a 1.6-spelled CALLERROR, the connection
survives, and a transaction started before the fuzzing is stopped and relayed exactly once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from ocpp.v16 import call
from ocpp.v16.enums import Action
from websockets.sync.client import ClientConnection, connect

from edge import Edge, EdgeSettings
from tests.integration.edge.charger import charger, now_iso, url

pytestmark = pytest.mark.integration

_T = TypeVar("_T")

V16_ERROR_CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
                   "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                   "TypeConstraintViolation", "GenericError"}

VALID_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "W"}),
    ("Heartbeat", {}),
    ("Authorize", {"idTag": "TAG-1"}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ("StartTransaction", {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": "2025-06-01T12:00:00Z"}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 10, "timestamp": "2025-06-01T12:30:00Z"}),
    ("MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2025-06-01T12:10:00Z", "sampledValue": [{"value": "5", "unit": "kWh"}]}]}),
    ("DataTransfer", {"vendorId": "x"}),
    ("FirmwareStatusNotification", {"status": "Idle"}),
    ("SecurityEventNotification", {"type": "x", "timestamp": "1970-01-01T00:00:00Z"}),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40).map(lambda s: "f" + s)
actions = st.sampled_from([a.value for a in Action]) | st.text(max_size=20)


@st.composite
def mutated_call(draw: st.DrawFn) -> str:
    action, payload = draw(st.sampled_from(VALID_CALLS))
    payload = dict(payload)
    mutation = draw(st.sampled_from(["none", "drop", "retype", "add", "action"]))
    if mutation == "drop" and payload:
        payload.pop(draw(st.sampled_from(sorted(payload))))
    elif mutation == "retype" and payload:
        payload[draw(st.sampled_from(sorted(payload)))] = draw(json_values)
    elif mutation == "add":
        payload[draw(st.text(min_size=1, max_size=10))] = draw(json_values)
    elif mutation == "action":
        action = draw(actions)
    return json.dumps([2, draw(ids), action, payload])


frames = st.one_of(
    mutated_call(),
    mutated_call().map(lambda f: f[: len(f) // 2]),  # truncated
    st.tuples(st.integers(min_value=-1, max_value=6), ids, actions, json_values).map(lambda t: json.dumps(list(t))),
    st.lists(json_values, max_size=5).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=80),
    st.binary(max_size=60),  # sent as binary WebSocket frames
)


def expects_answer(frame: str | bytes) -> str | None:
    """The id of a well-formed CALL (it must be answered), else None."""
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    if isinstance(data, list) and len(data) == 4 and type(data[0]) is int and data[0] == 2 \
            and isinstance(data[1], str) and isinstance(data[2], str) and isinstance(data[3], dict):
        return data[1]
    return None


class EdgeThread:
    """A live edge on its own event loop, so hypothesis can drive it from plain (sync) code."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.edge: Edge | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with Edge(self.settings) as edge:
            self.edge = edge
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EdgeThread:
        self._thread.start()
        assert self._ready.wait(20), "the edge did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        self.loop.close()

    def run(self, coroutine: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine(), self.loop).result(30)


@pytest.fixture
def live_edge(make_settings: Callable[..., EdgeSettings]) -> Iterator[EdgeThread]:
    with EdgeThread(make_settings()) as running:
        yield running


# The edge's thread draws reconnect jitter from `random` while hypothesis generates; that is not
# randomness inside a strategy.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_thousands_of_random_frames_never_crash_the_edge_or_lose_a_transaction(live_edge: EdgeThread) -> None:
    edge = live_edge.edge
    assert edge is not None
    port = edge.ocpp_port

    async def start() -> int:
        async with charger(port, "CP-1") as cp:
            answer = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=100,
                                                         timestamp=now_iso()), suppress=False)
            return int(answer.transaction_id)

    transaction_id = live_edge.run(start)
    sent = 0
    with connect(url(port, "CP-FUZZ"), subprotocols=["ocpp1.6"], open_timeout=5) as ws:  # type: ignore[list-item]
        sync = iter(range(1_000_000))

        def exchange(batch: list[str | bytes]) -> None:
            nonlocal sent
            for frame in batch:
                ws.send(frame)
            marker = f"sync-{next(sync)}"
            ws.send(json.dumps([2, marker, "Heartbeat", {}]))
            sent += len(batch) + 1
            answered = drain(ws, marker)
            missing = {i for i in map(expects_answer, batch) if i is not None} - answered
            assert not missing, f"CALLs without an answer: {missing}"

        exchange([json.dumps([2, "boot", "BootNotification", {"chargePointVendor": "F", "chargePointModel": "Z"}])])

        @settings(max_examples=400, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), database=None)
        @given(st.lists(frames, min_size=1, max_size=20))
        def fuzz(batch: list[str | bytes]) -> None:
            exchange(batch)

        fuzz()
    assert sent >= 2_000

    async def stop() -> list[dict[str, Any]]:
        async with charger(port, "CP-1", boot=False) as cp:
            await cp.call(call.StopTransaction(meter_stop=2_100, timestamp=now_iso(), transaction_id=transaction_id),
                          suppress=False)
        return [row.body for row in await edge.store.outbox_batch(100_000) if row.type.startswith("session.")]

    session = [b for b in live_edge.run(stop) if b.get("charger_id") == "CP-1"]
    assert [(b.get("transaction_id"), "energy_wh" in b) for b in session] == [
        (transaction_id, False), (transaction_id, True)]
    assert session[-1]["energy_wh"] == 2_000


def drain(ws: ClientConnection, marker: str) -> set[str]:
    """Read answers up to the marker's; each must be a CALLRESULT or a 1.6 CALLERROR. Returns their ids."""
    answered: set[str] = set()
    while True:
        frame = json.loads(ws.recv(timeout=10))
        assert isinstance(frame, list) and frame[0] in (3, 4), frame
        if frame[0] == 4:
            assert len(frame) == 5 and frame[2] in V16_ERROR_CODES and isinstance(frame[4], dict), frame
        answered.add(frame[1])
        if frame[1] == marker:
            assert frame[0] == 3, frame
            return answered
