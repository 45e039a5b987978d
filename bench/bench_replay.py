"""How long the edge takes to replay an outage's backlog, and the disk it needs to hold it.

Fills a fresh edge store with N buffered events (MeterValues, the bulk of any backlog) as if
the site had been offline, then starts the edge against a real Mosquitto (by default a private
one with the queue settings of ``mqtt/mosquitto.conf``), with a subscriber that has a persistent
session (as the cloud has), and measures:

* the time from the edge's start until its outbox is empty (every event acknowledged by the
  broker and deleted), and until the subscriber has received all N;
* the store's size per 1,000 buffered events.

Target (issue 4): 100,000 events replayed in under 60 s on this machine.

The broker must queue a backlog for a slower subscriber: Mosquitto's default
``max_queued_messages`` is 1,000 per client, and past it a broker drops QoS 1 messages for
that client. ``mqtt/mosquitto.conf`` sets 1,000,000; so does the private broker here. With
``--broker`` pointing at a broker on its defaults, the subscriber misses events (the edge
cannot see that: the broker acknowledged them).

    .venv/bin/python bench/bench_replay.py            # 100,000 events
    .venv/bin/python bench/bench_replay.py --events 20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from edge import Edge, EdgeSettings
from edge.store import Store
from mqtt import SessionMeter, Topics

TARGET_S = 60.0


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def fill(path: Path, events: int) -> float:
    store = await Store.open(path)
    started = time.perf_counter()
    try:
        batch = 1_000
        for first in range(0, events, batch):
            async with store.transaction() as tx:
                for n in range(first, min(first + batch, events)):
                    await tx.emit(SessionMeter(charger_id=f"CP-{n % 50}", connector_id=1, transaction_id=1 + n % 50,
                                               energy_register_wh=n, power_w=11_000.0,
                                               sampled_at=datetime.now(UTC)))
    finally:
        await store.close()
    return time.perf_counter() - started


@contextlib.contextmanager
def private_broker() -> Iterator[tuple[str, int]]:
    """A Mosquitto of our own on a free port, with the production queue settings."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        sys.exit("mosquitto not found: `make services` installs it")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="evpark-bench-mosq-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(("user root\n" if os.geteuid() == 0 else "") +
                        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        "max_queued_messages 1000000\nmax_queued_bytes 0\nmax_inflight_messages 100\n"
                        "set_tcp_nodelay true\n")
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit("the private mosquitto did not start")
                    time.sleep(0.05)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(10)


async def replay(events: int, broker: tuple[str, int]) -> None:
    root = f"evpark-bench-{uuid.uuid4().hex[:8]}"
    site = "bench-site"
    folder = Path(tempfile.mkdtemp(prefix="evpark-replay-"))
    sub_binary = shutil.which("mosquitto_sub")
    if sub_binary is None:
        sys.exit("mosquitto_sub not found: apt-get install mosquitto-clients")
    subscriber: asyncio.subprocess.Process | None = None
    try:
        settings = EdgeSettings(site_id=site, data_dir=folder / "edge", ocpp_port=0, admin_enabled=False,
                                mqtt_host=broker[0], mqtt_port=broker[1], mqtt_username=site, mqtt_topic_root=root)
        fill_s = await fill(settings.database_path, events)
        disk = folder_size(folder / "edge")
        print(f"buffered {events:,} events in {fill_s:.1f} s; store {disk / 1e6:.1f} MB "
              f"= {disk / events * 1000 / 1024:.0f} KiB per 1,000 events")

        topic = Topics(root).up(site, "session")
        # The cloud: a persistent-session subscriber that exits once it has every event.
        subscriber = await asyncio.create_subprocess_exec(
            sub_binary, "-h", broker[0], "-p", str(broker[1]), "-q", "1", "-c", "-i", f"bench-{root}", "-u", "cloud",
            "-t", topic, "-C", str(events), stdout=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        async with Edge(settings) as edge:
            while edge.store.outbox_backlog > 0:  # noqa: ASYNC110 - sampling a counter, as a dashboard would
                await asyncio.sleep(0.05)
            drained_s = time.perf_counter() - started
            received_s: float | None = None
            try:
                await asyncio.wait_for(subscriber.wait(), 300 - (time.perf_counter() - started))
                received_s = time.perf_counter() - started
            except TimeoutError:
                subscriber.kill()
        verdict = "met" if received_s is not None and received_s < TARGET_S else "NOT MET"
        print(f"outbox drained (all acknowledged by the broker) after {drained_s:.1f} s "
              f"= {events / drained_s:,.0f} events/s")
        print(f"subscriber had all {events:,} after "
              f"{'never' if received_s is None else f'{received_s:.1f} s'} (target < {TARGET_S:.0f} s for 100,000: "
              f"{verdict})")
    finally:
        if subscriber is not None and subscriber.returncode is None:
            subscriber.kill()  # never leave the subscriber behind, whatever failed
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--broker", default=None,
                        help="host:port of a Mosquitto with a large max_queued_messages (default: a private one)")
    args = parser.parse_args()
    if args.broker is not None:
        host, port = args.broker.rsplit(":", 1)
        asyncio.run(replay(args.events, (host, int(port))))
        return
    with private_broker() as broker:
        print(f"private Mosquitto on {broker[0]}:{broker[1]} (max_queued_messages 1000000, as mqtt/mosquitto.conf)")
        asyncio.run(replay(args.events, broker))


if __name__ == "__main__":
    main()
