"""Processes of the OCPP load benchmark (:mod:`bench.bench_ocpp`): the servers under test and
the lean load generator. Each runs in its own process so it gets its own core.

    python bench/_ocpp_load.py serve-edge --topic-root R --data-dir D   # prints "READY <port>"
    python bench/_ocpp_load.py serve-bare                               # prints "READY <port>"
    python bench/_ocpp_load.py load --port P --chargers N --mode periodic|saturate ...  # prints JSON

The generator is deliberately not the ``ocpp`` library: raw websockets, pre-serialised frames
(only the message id changes), one task per charger, at most one outstanding CALL per
connection (OCPP-J §4.1.1), latency measured per CALL from just before the send to the receipt
of its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def raise_fd_limit() -> int:
    """10,000 connections need more descriptors than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- servers under test -----------------------------------------------------------------


async def _serve_edge(args: argparse.Namespace) -> None:
    from edge.app import Edge, settle_heap
    from edge.settings import EdgeSettings

    settings = EdgeSettings(
        site_id=args.site_id, data_dir=Path(args.data_dir), log_level="WARNING", ocpp_port=0,
        heartbeat_interval=args.heartbeat, accept_unknown_chargers=True, admin_enabled=False,
        mqtt_host="127.0.0.1", mqtt_port=args.mqtt_port, mqtt_topic_root=args.topic_root,
    )
    from edge.logging import configure_logging

    configure_logging("WARNING")
    from prometheus_client import REGISTRY

    async with Edge(settings) as edge:
        settle_heap()  # as run_edge (the `evpark edge` entry point) does
        print(f"READY {edge.ocpp_port}", flush=True)
        while True:
            await asyncio.sleep(0.5)
            # The relay's progress, for the bench to report: rows waiting, rows the broker acknowledged.
            published = REGISTRY.get_sample_value("evpark_edge_outbox_published_total") or 0
            print(f"RELAY {edge.store.outbox_backlog} {int(published)} {int(edge.uplink.connected.is_set())}",
                  flush=True)


async def _serve_bare(args: argparse.Namespace) -> None:
    """A central system written only with the ``ocpp`` library (default schema validation) and
    websockets: answers BootNotification, Heartbeat, StatusNotification and MeterValues; no
    storage, no relay."""
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result
    from ocpp.v16.enums import Action, RegistrationStatus
    from websockets.asyncio.server import ServerConnection, serve

    def now() -> str:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    class Bare(ChargePoint):  # type: ignore[misc]
        @on(Action.boot_notification)
        async def on_boot(self, charge_point_vendor: str, charge_point_model: str,
                          **kwargs: Any) -> call_result.BootNotification:
            return call_result.BootNotification(current_time=now(), interval=args.heartbeat,
                                                status=RegistrationStatus.accepted)

        @on(Action.heartbeat)
        async def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
            return call_result.Heartbeat(current_time=now())

        @on(Action.status_notification)
        async def on_status(self, **kwargs: Any) -> call_result.StatusNotification:
            return call_result.StatusNotification()

        @on(Action.meter_values)
        async def on_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
            return call_result.MeterValues()

    async def handle(connection: ServerConnection) -> None:
        path = connection.request.path if connection.request else "/"
        cp = Bare(path.rstrip("/").rsplit("/", 1)[-1], connection)
        try:
            await cp.start()
        except Exception:
            return

    async with serve(handle, "127.0.0.1", 0, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                     backlog=4096) as server:
        print(f"READY {next(iter(server.sockets)).getsockname()[1]}", flush=True)
        await asyncio.Future()


# --- the load generator -----------------------------------------------------------------


def _frames(charger_index: int, timestamp: str) -> dict[str, str]:
    """Pre-serialised CALL payloads (the part after the action) for one charger."""
    meter = {
        "connectorId": 1,
        "transactionId": charger_index + 1,
        "meterValue": [{
            "timestamp": timestamp,
            "sampledValue": [
                {"value": str(1_000_000 + charger_index), "context": "Sample.Periodic",
                 "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
                {"value": "7360.0", "context": "Sample.Periodic", "measurand": "Power.Active.Import",
                 "location": "Outlet", "unit": "W"},
                {"value": "32.0", "context": "Sample.Periodic", "measurand": "Current.Import",
                 "location": "Outlet", "unit": "A", "phase": "L1"},
            ],
        }],
    }
    boot = {"chargePointVendor": "evpark-bench", "chargePointModel": "load-1",
            "chargePointSerialNumber": f"SN{charger_index:06d}", "firmwareVersion": "1.0.0"}
    status = {"connectorId": 1, "errorCode": "NoError", "status": "Charging", "timestamp": timestamp}
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    return {
        "BootNotification": f'"BootNotification",{dumps(boot)}]',
        "StatusNotification": f'"StatusNotification",{dumps(status)}]',
        "MeterValues": f'"MeterValues",{dumps(meter)}]',
        "Heartbeat": '"Heartbeat",{}]',
    }


class _Tally:
    def __init__(self) -> None:
        self.window: tuple[float, float] = (float("inf"), float("inf"))
        self.latencies: list[float] = []
        self.answered = 0
        self.errors = 0
        self.sent_in_window = 0
        self.timeouts = 0
        self.connect_failures = 0
        self.disconnects = 0
        self.stopping = False

    def record(self, started: float, finished: float, ok: bool) -> None:
        begin, end = self.window
        if begin <= started and finished <= end:
            self.answered += 1
            self.latencies.append(finished - started)
            if not ok:
                self.errors += 1


async def _charger(index: int, args: argparse.Namespace, tally: _Tally, ready: asyncio.Queue[int],
                   go: asyncio.Event, connect_gate: asyncio.Semaphore) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    frames = _frames(args.first + index, args.timestamp)
    charger_id = f"{args.prefix}{args.first + index:06d}"
    perf = time.perf_counter
    counter = 0
    try:
        async with connect_gate:
            ws = await connect(f"ws://127.0.0.1:{args.port}/ocpp/{charger_id}", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               compression=None, ping_interval=None, open_timeout=120, close_timeout=1,
                               max_queue=4)
    except Exception:
        tally.connect_failures += 1
        await ready.put(0)
        return

    async def call(action: str) -> bool:
        nonlocal counter
        counter += 1
        message_id = f"{index}-{counter}"
        started = perf()
        await ws.send(f'[2,"{message_id}",{frames[action]}')
        while True:
            async with asyncio.timeout(args.call_timeout):
                answer = await ws.recv()
            # [3,"<id>",... or [4,"<id>",...
            if isinstance(answer, str) and answer[4:4 + len(message_id) + 1] == f'{message_id}"':
                break
        tally.record(started, perf(), answer.startswith("[3"))
        return answer.startswith("[3")

    try:
        async with ws:
            booted = await call("BootNotification") and await call("StatusNotification")
            await ready.put(1 if booted else 0)
            await go.wait()
            loop = asyncio.get_running_loop()
            if args.mode == "saturate":
                while not tally.stopping:
                    await call("MeterValues")
            begin = loop.time()
            next_meter = begin + random.uniform(0, args.meter_every)
            next_heartbeat = begin + random.uniform(0, args.heartbeat)
            while not tally.stopping:
                due = min(next_meter, next_heartbeat)
                await asyncio.sleep(max(0.0, due - loop.time()))
                if next_meter <= next_heartbeat:
                    next_meter += args.meter_every
                    await call("MeterValues")
                else:
                    next_heartbeat += args.heartbeat
                    await call("Heartbeat")
    except TimeoutError:
        tally.timeouts += 1
    except (ConnectionClosed, OSError):
        tally.disconnects += 1


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    tally = _Tally()
    ready: asyncio.Queue[int] = asyncio.Queue()
    go = asyncio.Event()
    gate = asyncio.Semaphore(args.connect_concurrency)
    started = time.perf_counter()
    tasks = [asyncio.create_task(_charger(i, args, tally, ready, go, gate)) for i in range(args.chargers)]
    booted = 0
    for _ in range(args.chargers):
        booted += await ready.get()
    connect_seconds = time.perf_counter() - started
    # The generator's own garbage collection would show up as server latency: its 10,000
    # connections are long-lived, so keep them out of the collector's way.
    gc.collect()
    gc.freeze()
    print(json.dumps({"event": "connected", "booted": booted, "seconds": connect_seconds}), flush=True)
    go.set()
    now = time.perf_counter()
    tally.window = (now + args.warmup, now + args.warmup + args.duration)
    await asyncio.sleep(args.warmup + args.duration)
    # Calls still in flight at the window's end are not counted; give a late answer no credit.
    window_end = time.perf_counter()
    tally.stopping = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    measured = max(1e-9, min(window_end, tally.window[1]) - tally.window[0])
    latencies = sorted(tally.latencies)

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else None

    return {"event": "done", "chargers": args.chargers, "booted": booted, "connect_seconds": connect_seconds,
            "answered": tally.answered, "errors": tally.errors, "per_second": tally.answered / measured,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000 if latencies else None,
            "timeouts": tally.timeouts, "connect_failures": tally.connect_failures,
            "disconnects": tally.disconnects}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    edge = sub.add_parser("serve-edge")
    edge.add_argument("--site-id", required=True)
    edge.add_argument("--data-dir", required=True)
    edge.add_argument("--topic-root", required=True)
    edge.add_argument("--mqtt-port", type=int, default=1883)
    edge.add_argument("--heartbeat", type=int, default=30)
    bare = sub.add_parser("serve-bare")
    bare.add_argument("--heartbeat", type=int, default=30)
    load = sub.add_parser("load")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--chargers", type=int, required=True)
    load.add_argument("--first", type=int, default=0)
    load.add_argument("--prefix", default="BENCH")
    load.add_argument("--mode", choices=("periodic", "saturate"), default="periodic")
    load.add_argument("--meter-every", type=float, default=10.0)
    load.add_argument("--heartbeat", type=float, default=30.0)
    load.add_argument("--warmup", type=float, default=5.0)
    load.add_argument("--duration", type=float, default=20.0)
    load.add_argument("--call-timeout", type=float, default=30.0)
    load.add_argument("--connect-concurrency", type=int, default=100)
    load.add_argument("--timestamp", default=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"))
    args = parser.parse_args()
    raise_fd_limit()
    if args.command == "serve-edge":
        asyncio.run(_serve_edge(args))
    elif args.command == "serve-bare":
        asyncio.run(_serve_bare(args))
    else:
        print(json.dumps(asyncio.run(_load(args))), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
