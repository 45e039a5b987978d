"""Load mode: thousands of lean simulated chargers, and what they measured.

Each charger is one asyncio task on one WebSocket: BootNotification, StatusNotification,
StartTransaction, then MeterValues every ``meter_interval`` seconds (first one at a random
phase, so the load is even) until the run ends, then StopTransaction. Frames are built with
string formatting and answers are matched by prefix, so the generator spends a few tens of
microseconds per message and the central system's figures are not limited by it
(``bench/bench_cpsim.py`` measures that cost).

Latency is CALL sent → CALLRESULT received, recorded in a log-scale histogram (``LoadStats``)
that merges across worker processes: ``run_load_processes`` spreads the chargers over N
processes and merges their snapshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import math
import multiprocessing
import queue
import random
import resource
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from chargepoint_sim.errors import explain_connect_error

BUCKETS_PER_DECADE = 40
"""Histogram resolution: about 6% between two bucket edges."""
_MIN_LATENCY_S = 1e-6
_BUCKETS = 8 * BUCKETS_PER_DECADE  # 1 µs … 100 s
_SUBPROTOCOLS: list[Any] = ["ocpp1.6"]


@dataclass
class LoadStats:
    """Counters and a latency histogram; cumulative, mergeable across processes."""

    chargers: int = 0
    connected: int = 0
    peak_connected: int = 0
    """Most chargers connected at the same time (summed over processes)."""
    sent: int = 0
    answered: int = 0
    errors: int = 0
    """CALLERRORs, timeouts and connections that failed or dropped."""
    connect_failures: int = 0
    cpu_s: float = 0.0
    """CPU time (user + system) the generator itself spent."""
    last_error: str = ""
    histogram: list[int] = field(default_factory=lambda: [0] * _BUCKETS)

    def record(self, latency_s: float) -> None:
        self.answered += 1
        index = int(math.log10(max(latency_s, _MIN_LATENCY_S) / _MIN_LATENCY_S) * BUCKETS_PER_DECADE)
        self.histogram[min(index, _BUCKETS - 1)] += 1

    def merge(self, other: LoadStats) -> None:
        self.chargers += other.chargers
        self.connected += other.connected
        self.peak_connected += other.peak_connected
        self.sent += other.sent
        self.answered += other.answered
        self.errors += other.errors
        self.connect_failures += other.connect_failures
        self.cpu_s += other.cpu_s
        self.last_error = other.last_error or self.last_error
        self.histogram = [a + b for a, b in zip(self.histogram, other.histogram, strict=True)]

    def percentile_ms(self, p: float) -> float | None:
        """The latency under which ``p`` percent of the answers came (upper bucket edge), in ms."""
        total = sum(self.histogram)
        if total == 0:
            return None
        rank = math.ceil(total * p / 100)
        seen = 0
        for index, count in enumerate(self.histogram):
            seen += count
            if seen >= rank:
                return _MIN_LATENCY_S * 10 ** ((index + 1) / BUCKETS_PER_DECADE) * 1000
        return None  # pragma: no cover - rank <= total

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        def ms(p: float) -> float | None:
            value = self.percentile_ms(p)
            return None if value is None else round(value, 3)

        return {
            "chargers": self.chargers,
            "connected": self.connected,
            "peak_connected": self.peak_connected,
            "connect_failures": self.connect_failures,
            "messages_sent": self.sent,
            "messages_answered": self.answered,
            "errors": self.errors,
            "duration_s": round(elapsed_s, 3),
            "messages_per_s": round(self.answered / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "latency_ms": {"p50": ms(50), "p90": ms(90), "p99": ms(99), "max": ms(100)},
            "generator_cpu_s": round(self.cpu_s, 3),
            "generator_cpu_us_per_message": (round(self.cpu_s * 1e6 / self.answered, 1)
                                             if self.answered else None),
            "last_error": self.last_error or None,
        }


@dataclass(frozen=True, slots=True)
class LoadOptions:
    url: str
    chargers: int
    meter_interval: float = 10.0
    duration_s: float = 60.0
    prefix: str = "LOAD-"
    first_index: int = 1
    id_tag: str = "LOAD-TAG"
    password: str | None = None
    ca_file: str | None = None
    connect_concurrency: int = 200
    response_timeout: float = 30.0
    ramp_s: float = 0.0
    """Spread the connections over this many seconds (0: as fast as connect_concurrency allows)."""


class _Clock:
    """One formatted UTC timestamp per wall second, shared by every charger of a process."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._text


class _CallFailed(Exception):
    pass


class _LeanCharger:
    """One charger of the load: a WebSocket, a counter of message ids, pre-built frames."""

    __slots__ = ("charger_id", "clock", "next_id", "options", "stats", "ws")

    def __init__(self, charger_id: str, options: LoadOptions, stats: LoadStats, clock: _Clock) -> None:
        self.charger_id = charger_id
        self.options = options
        self.stats = stats
        self.clock = clock
        self.next_id = 0
        self.ws: ClientConnection | None = None

    async def call(self, action: str, payload_json: str) -> str:
        """Send one CALL and return the raw CALLRESULT payload text (answers its CALLs with NotImplemented)."""
        assert self.ws is not None
        self.next_id += 1
        message_id = str(self.next_id)
        result_prefix = f'[3,"{message_id}"'
        started = time.perf_counter()
        await self.ws.send(f'[2,"{message_id}","{action}",{payload_json}]')
        self.stats.sent += 1
        async with asyncio.timeout(self.options.response_timeout):
            while True:
                answer = await self.ws.recv()
                if isinstance(answer, bytes):
                    answer = answer.decode()
                if answer.startswith(result_prefix):  # the fast path: compact JSON, our answer
                    self.stats.record(time.perf_counter() - started)
                    return answer[len(result_prefix) + 1:-1]
                message = json.loads(answer)
                if not isinstance(message, list) or len(message) < 3:
                    continue  # OCPP-J §4.1.3: an unknown message is ignored
                if message[0] == 3 and message[1] == message_id:
                    self.stats.record(time.perf_counter() - started)
                    return json.dumps(message[2])
                if message[0] == 4 and message[1] == message_id:
                    raise _CallFailed(f"{action} was answered with a CALLERROR: {answer[:200]}")
                if message[0] == 2:
                    # The central system's own CALL: a load charger implements none of them.
                    await self.ws.send(json.dumps([4, message[1], "NotImplemented", "cpsim load charger", {}]))

    async def run(self, ending: asyncio.Event, gate: asyncio.Semaphore) -> None:
        options = self.options
        headers = {}
        if options.password is not None:
            token = base64.b64encode(f"{self.charger_id}:{options.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        endpoint = f"{options.url.rstrip('/')}/{quote(self.charger_id, safe='')}"
        ssl_context = ssl.create_default_context(cafile=options.ca_file) if options.ca_file else None
        kwargs: dict[str, Any] = {"ssl": ssl_context} if ssl_context is not None else {}
        try:
            async with gate:  # only so many handshakes at once
                self.ws = await connect(endpoint, subprotocols=_SUBPROTOCOLS, additional_headers=headers,
                                        open_timeout=options.response_timeout, ping_interval=None,
                                        compression=None, max_queue=4, **kwargs)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            self.stats.connect_failures += 1
            self.stats.errors += 1
            self.stats.last_error = explain_connect_error(exc, options.url, self.charger_id,
                                                          has_password=options.password is not None,
                                                          open_timeout=options.response_timeout)
            return
        self.stats.connected += 1
        self.stats.peak_connected = max(self.stats.peak_connected, self.stats.connected)
        try:
            await self._play(ending)
        except (ConnectionClosed, OSError) as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{self.charger_id}: connection lost ({exc})"
        except (TimeoutError, _CallFailed) as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{self.charger_id}: {exc or 'no answer in time'}"
        finally:
            self.stats.connected -= 1
            with contextlib.suppress(Exception):
                await self.ws.close()

    async def _play(self, ending: asyncio.Event) -> None:
        options = self.options
        boot = await self.call("BootNotification", '{"chargePointVendor":"evpark","chargePointModel":"cpsim-load",'
                                                   f'"chargePointSerialNumber":"{self.charger_id[:25]}"}}')
        if '"Accepted"' not in boot:
            raise _CallFailed(f"BootNotification was not Accepted: {boot[:200]}")
        await self.call("StatusNotification", '{"connectorId":1,"errorCode":"NoError","status":"Preparing",'
                                              f'"timestamp":"{self.clock.now()}"}}')
        register = 0
        started = await self.call("StartTransaction", f'{{"connectorId":1,"idTag":"{options.id_tag}",'
                                                      f'"meterStart":0,"timestamp":"{self.clock.now()}"}}')
        transaction_id = _transaction_id(started)
        await self.call("StatusNotification", '{"connectorId":1,"errorCode":"NoError","status":"Charging",'
                                              f'"timestamp":"{self.clock.now()}"}}')
        tx = f',"transactionId":{transaction_id}' if transaction_id is not None else ""
        step_wh = max(1, round(11_000 * options.meter_interval / 3600))
        loop = asyncio.get_running_loop()
        next_at = loop.time() + random.uniform(0, options.meter_interval)
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for costs a Task per sleep.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_at):
                    await ending.wait()
            if ending.is_set():
                break
            register += step_wh
            await self.call("MeterValues", f'{{"connectorId":1{tx},"meterValue":[{{"timestamp":"{self.clock.now()}",'
                                           f'"sampledValue":[{{"value":"{register}",'
                                           '"measurand":"Energy.Active.Import.Register","unit":"Wh"}]}]}')
            next_at += options.meter_interval
        if transaction_id is not None:
            await self.call("StopTransaction", f'{{"transactionId":{transaction_id},"meterStop":{register},'
                                               f'"timestamp":"{self.clock.now()}","idTag":"{options.id_tag}",'
                                               '"reason":"Local"}')


def _transaction_id(result: str) -> int | None:
    try:
        value = json.loads(result).get("transactionId")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


SnapshotCallback = Callable[[LoadStats], None]


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_load(options: LoadOptions, *, on_snapshot: SnapshotCallback | None = None,
                   snapshot_every: float = 0.5, stop: asyncio.Event | None = None) -> LoadStats:
    """Run ``options.chargers`` lean chargers for ``options.duration_s`` seconds; return their stats.

    ``on_snapshot`` gets the live stats every ``snapshot_every`` seconds; setting ``stop`` ends
    the run early (every charger still sends its StopTransaction).
    """
    if options.chargers < 1:
        raise ValueError("load needs at least one charger")
    if options.meter_interval <= 0 or options.duration_s <= 0:
        raise ValueError("meter_interval and duration_s must be positive")
    _raise_fd_limit()
    stats = LoadStats(chargers=options.chargers)
    clock = _Clock()
    cpu_start = time.process_time()
    ending = stop if stop is not None else asyncio.Event()
    gate = asyncio.Semaphore(options.connect_concurrency)

    async def one(index: int) -> None:
        if options.ramp_s > 0:
            await asyncio.sleep(options.ramp_s * index / options.chargers)
        charger = _LeanCharger(f"{options.prefix}{options.first_index + index}", options, stats, clock)
        await charger.run(ending, gate)

    async def report() -> None:
        while True:
            await asyncio.sleep(snapshot_every)
            stats.cpu_s = time.process_time() - cpu_start
            if on_snapshot is not None:
                on_snapshot(stats)

    reporter = asyncio.create_task(report(), name="cpsim-load-report")
    timer = asyncio.get_running_loop().call_later(options.duration_s, ending.set)
    try:
        async with asyncio.TaskGroup() as group:
            for index in range(options.chargers):
                group.create_task(one(index), name=f"cpsim-load-{index}")
    finally:
        timer.cancel()
        reporter.cancel()
        stats.cpu_s = time.process_time() - cpu_start
    return stats


def _worker(options: LoadOptions, snapshots: Any, worker: int) -> None:
    def push(stats: LoadStats) -> None:
        with contextlib.suppress(Exception):
            snapshots.put((worker, False, stats))

    stats = asyncio.run(run_load(options, on_snapshot=push))
    snapshots.put((worker, True, stats))


def split(chargers: int, processes: int) -> list[tuple[int, int]]:
    """``(first_index, count)`` of each process's share of the chargers."""
    processes = max(1, min(processes, chargers))
    base, extra = divmod(chargers, processes)
    shares, first = [], 1
    for n in range(processes):
        count = base + (1 if n < extra else 0)
        shares.append((first, count))
        first += count
    return shares


def run_load_processes(options: LoadOptions, processes: int, *,
                       on_snapshot: SnapshotCallback | None = None) -> LoadStats:
    """Spread the chargers over ``processes`` worker processes and merge what they measured."""
    context = multiprocessing.get_context("spawn")
    snapshots: Any = context.Queue()
    shares = split(options.chargers, processes)
    workers = []
    for worker, (first, count) in enumerate(shares):
        share = dataclasses.replace(options, chargers=count, first_index=first)
        process = context.Process(target=_worker, args=(share, snapshots, worker), name=f"cpsim-load-{worker}",
                                  daemon=True)
        process.start()
        workers.append(process)
    latest: dict[int, LoadStats] = {}
    finished: set[int] = set()
    deadline = time.monotonic() + options.duration_s + options.response_timeout + 60
    try:
        while len(finished) < len(workers) and time.monotonic() < deadline:
            try:
                worker, done, stats = snapshots.get(timeout=0.5)
            except queue.Empty:
                if all(not p.is_alive() for p in workers):
                    break
                continue
            latest[worker] = stats
            if done:
                finished.add(worker)
            if on_snapshot is not None:
                on_snapshot(merge_all(latest.values(), chargers=options.chargers))
    finally:
        for process in workers:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    merged = merge_all(latest.values(), chargers=options.chargers)
    lost = len(workers) - len(finished)
    if lost:
        merged.last_error = f"{lost} worker process(es) ended without a final report"
    return merged


def merge_all(parts: Any, *, chargers: int) -> LoadStats:
    merged = LoadStats()
    for part in parts:
        merged.merge(part)
    merged.chargers = chargers
    return merged
