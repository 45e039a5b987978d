"""How much load ``cpsim load`` can drive, and what it costs per message.

    .venv/bin/python bench/bench_cpsim.py            # bounded default run, about a minute
    .venv/bin/python bench/bench_cpsim.py --full     # adds 10,000 chargers over 2 worker processes

The central system is a trivial echo written with bare ``websockets`` in its own process: it
answers BootNotification Accepted, StartTransaction with a transaction id, and everything else
(MeterValues included) with ``[3,id,{}]``, so what is measured is the generator. Loopback only.

Printed per run: chargers connected, steady-state messages/s answered, the generator's own CPU
microseconds per message (user + system CPU of the generator processes in the steady window
divided by the messages answered in it), latency percentiles (CALL → CALLRESULT over the whole
run, including the echo server's time on the shared cores) and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from chargepoint_sim.load import LoadOptions, LoadStats, run_load, run_load_processes

_BOOT = ',{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":300}]'
_START = ',{"transactionId":1,"idTagInfo":{"status":"Accepted"}}]'


async def _echo(connection: ServerConnection) -> None:
    async for frame in connection:
        text = frame if isinstance(frame, str) else frame.decode()
        # [2,"<id>","<Action>",{...}] split on quotes: '[2,', id, ',', action, rest
        parts = text.split('"', 4)
        if len(parts) < 4 or not parts[0].startswith("[2"):
            continue
        message_id, action = parts[1], parts[3]
        body = _BOOT if action == "BootNotification" else _START if action == "StartTransaction" else ",{}]"
        await connection.send(f'[3,"{message_id}"{body}')


def _serve_echo(port_holder: Any, ready: Any) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        async with serve(_echo, "127.0.0.1", 0, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                         ping_interval=None, compression=None, backlog=4096) as server:
            port_holder.value = next(iter(server.sockets)).getsockname()[1]
            ready.set()
            await asyncio.Future()

    asyncio.run(main())


@contextlib.contextmanager
def echo_central_system() -> Iterator[str]:
    context = multiprocessing.get_context("spawn")
    port = context.Value("i", 0)
    ready = context.Event()
    process = context.Process(target=_serve_echo, args=(port, ready), daemon=True, name="echo-central-system")
    process.start()
    if not ready.wait(20):
        process.terminate()
        raise RuntimeError("the echo central system did not start")
    try:
        yield f"ws://127.0.0.1:{port.value}/ocpp"
    finally:
        process.terminate()
        process.join(5)


class _Window:
    """Steady-state figures from the snapshots between the end of the ramp (plus settling) and the end."""

    def __init__(self, start_after_s: float, end_before_s: float) -> None:
        self.began = time.monotonic()
        self.start_after_s = start_after_s
        self.end_before_s = end_before_s
        self.points: list[tuple[float, float, int]] = []

    def __call__(self, stats: LoadStats) -> None:
        self.points.append((time.monotonic() - self.began, stats.cpu_s, stats.answered))

    def figures(self, elapsed_s: float) -> tuple[float, float | None]:
        inside = [p for p in self.points if self.start_after_s <= p[0] <= elapsed_s - self.end_before_s]
        if len(inside) < 2 or inside[-1][2] == inside[0][2]:
            return 0.0, None
        (t0, cpu0, n0), (t1, cpu1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0), (cpu1 - cpu0) * 1e6 / (n1 - n0)


def _row(name: str, stats: LoadStats, elapsed: float, window: _Window) -> dict[str, Any]:
    summary = stats.summary(elapsed)
    latency = summary["latency_ms"]
    rate, cpu_us = window.figures(elapsed)
    print(f"{name:<36} connected {stats.peak_connected:>6,}/{stats.chargers:<6,} "
          f"steady {rate:>7,.0f} msg/s  generator {cpu_us or 0:5.1f} µs CPU/msg  "
          f"p50 {latency['p50'] or 0:7.2f} ms  p99 {latency['p99'] or 0:8.2f} ms  errors {stats.errors}",
          flush=True)
    return {"name": name, **summary, "steady_messages_per_s": round(rate, 1),
            "steady_generator_cpu_us_per_message": None if cpu_us is None else round(cpu_us, 1)}


def bench(full: bool) -> list[dict[str, Any]]:
    results = []
    with echo_central_system() as url:
        print(f"echo central system at {url}; {os.cpu_count()} CPU cores shared by generator and echo", flush=True)
        runs: list[tuple[str, LoadOptions, int]] = [
            ("10,000 msg/s offered: 100 x 100/s", LoadOptions(url, 100, meter_interval=0.01, duration_s=10,
                                                              prefix="SAT-"), 1),
            ("2,000 chargers, 1 process, 1 s", LoadOptions(url, 2000, meter_interval=1.0, duration_s=20,
                                                           prefix="ONE-", ramp_s=4), 1),
            ("4,000 chargers, 2 processes, 2 s", LoadOptions(url, 4000, meter_interval=2.0, duration_s=20,
                                                             prefix="TWO-", ramp_s=6), 2),
        ]
        if full:
            runs.append(("10,000 chargers, 2 processes, 10 s", LoadOptions(
                url, 10_000, meter_interval=10.0, duration_s=45, prefix="TEN-", ramp_s=15), 2))
        for name, options, processes in runs:
            # Settle for two meter intervals after the ramp (and the workers' start); skip the last second.
            settle = options.ramp_s + max(2.0, 2 * options.meter_interval) + (2.0 if processes > 1 else 0.0)
            window = _Window(settle, 1.0)
            started = time.monotonic()
            if processes == 1:
                stats = asyncio.run(run_load(options, on_snapshot=window))
            else:
                stats = run_load_processes(options, processes, on_snapshot=window)
            results.append(_row(name, stats, time.monotonic() - started, window))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also run 10,000 chargers over 2 processes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    args = parser.parse_args()
    results = bench(args.full)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
