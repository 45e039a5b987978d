"""``GET /charging/status/{vehicle_id}`` through the gateway while 1,000 cpsim chargers send meter values.

The chain is the production one, each part a process of its own: cpsim's load mode (lean chargers:
boot, StartTransaction, a MeterValues every ``--meter-every`` seconds) → the edge (OCPP, SQLite
store, MQTT uplink) → Mosquitto (the shared broker, a fresh topic root) → the charging service
(embedded SQLite, in-process bus) recording every session message → the gateway → the load client.
One more cpsim charger plays the bench vehicle's own session (idTag ``BENCHTAG``): each of its
meter values drops the vehicle's cached status, so the cached read is refilled every few seconds,
as in production.

Measured in the same run, with the same meter-value load on the same database:

* **cached**: the charging service as it runs (its status cache, 5 s, dropped at every meter value
  of the vehicle), through its gateway;
* **uncached**: a second charging service process on the same database whose cache never hits
  (every read asks the database and prices the session again), through a gateway of its own.

Printed: requests/s and p50/p99 of each, the ratio cached/uncached, and the meter values the
charging service recorded per second meanwhile. Needs Mosquitto on 127.0.0.1:1883.

    .venv/bin/python bench/bench_charging_status.py
    .venv/bin/python bench/bench_charging_status.py --chargers 200 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_gateway import free_port, load, percentile, wait_listening

VEHICLE, OWNER, TAG = "bench-vehicle-1", "acc-bench-driver", "BENCHTAG"
SITE = "bench-site"


class NoCache:
    """A cache that never hits: the uncached read."""

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        return None

    async def delete(self, key: str) -> None:
        return None

    async def incr(self, key: str, ttl_seconds: float) -> int:
        return 1


async def serve(what: str, port: int, folder: Path, upstream_port: int, root: str) -> None:
    import uvicorn

    from cloud.contracts.base import Event
    from cloud.contracts.payments import TariffChanged
    from cloud.contracts.vehicles import VehicleRegistered
    from cloud.platform.cache import MemoryCache
    from cloud.platform.events import InProcessBus
    from cloud.platform.http_server import uvicorn_options
    from cloud.platform.identity import TokenVerifier
    from cloud.platform.logging import configure_logging
    from cloud.platform.settings import CloudSettings
    from cloud.registry import spec

    configure_logging("ERROR")
    verifier = TokenVerifier(issuer="evpark", audience="evpark", jwks=json.loads((folder / "jwks.json").read_text()))
    ingest = what == "cached"
    settings = CloudSettings(data_dir=folder / "cloud", database_url=f"sqlite+aiosqlite:///{folder / 'charging.db'}",
                             urls={"charging": f"http://127.0.0.1:{upstream_port}"},
                             mqtt_port=1883 if ingest else free_port(),  # the uncached copy reads, never ingests
                             mqtt_topic_root=root, mqtt_username="evpark-cloud", rate_limit_per_minute=10_000_000)
    if what in ("cached", "uncached"):
        bus = InProcessBus()
        await bus.start()
        app = spec("charging").build_app(settings, bus=bus, cache=MemoryCache() if ingest else NoCache())
    else:
        from cloud.gateway.app import build_app

        app = build_app(settings, cache=MemoryCache(), verifier=verifier)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="off", **uvicorn_options(10.0)))
    async with app.router.lifespan_context(app):
        if what in ("cached", "uncached"):
            app.state.verifier = app.state.platform.verifier = verifier
        if ingest:
            tariff = {"site_id": SITE, "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
                      "elements": [{"components": [{"type": "energy", "price": "0.40"},
                                                   {"type": "charging_time", "price": "0.02", "step_size": 60}]}]}
            await bus.publish(Event.of(VehicleRegistered(vehicle_id=VEHICLE, plate="BENCH 1", id_tags=[TAG],
                                                         owner_id=OWNER), source="vehicles"))
            await bus.publish(Event.of(TariffChanged(site_id=SITE, currency="EUR", version=1,
                                                     changed_at="2026-01-01T00:00:00Z", tariff=tariff),
                                       source="payments"))
        await server.serve()


def start_edge(folder: Path, root: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    edge = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_ocpp_load.py")), "serve-edge",
                             "--site-id", SITE, "--data-dir", str(folder / "edge"), "--topic-root", root,
                             "--heartbeat", "300"], env=env, stdout=subprocess.PIPE, text=True)
    assert edge.stdout is not None
    line = edge.stdout.readline()
    if not line.startswith("READY"):
        raise RuntimeError(f"the edge did not start: {line!r}")
    return edge, int(line.split()[1])


def chargers(port: int, count: int, id_tag: str, prefix: str, seconds: float, meter_every: float,
             env: dict[str, str]) -> subprocess.Popen[str]:
    code = ("import sys, json; from chargepoint_sim.load import LoadOptions, run_load_processes;"
            f"s = run_load_processes(LoadOptions(url='ws://127.0.0.1:{port}/ocpp', chargers={count},"
            f"meter_interval={meter_every}, duration_s={seconds}, prefix='{prefix}', id_tag='{id_tag}',"
            f"connect_concurrency=100), {2 if count > 100 else 1});"
            "print(json.dumps({'answered': s.answered, 'errors': s.errors}), flush=True)")
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


async def recorded(port: int, token: str) -> int:
    """Meter values and starts the charging service recorded so far (its inbox, as its metrics count them)."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("evpark_messages_consumed_total") and 'outcome="handled"' in line and "mqtt:" in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def until_charging(port: int, token: str, limit_s: float = 120) -> dict[str, object]:
    import httpx

    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            answer = await client.get(f"http://127.0.0.1:{port}/charging/status/{VEHICLE}",
                                      headers={"Authorization": f"Bearer {token}"})
            if answer.status_code == 200 and answer.json()["sessions"]:
                return answer.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.5)
    raise RuntimeError("the bench vehicle's session never reached the charging service")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=1000)
    parser.add_argument("--meter-every", type=float, default=10.0, help="seconds between a charger's meter values")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per path")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", choices=["cached", "uncached", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.folder, args.upstream_port, args.root))
        return

    from cloud.contracts.identity import DRIVER, Principal
    from cloud.platform.identity import KeyRing, access_claims

    root = f"evpark-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="evpark-bench-status-") as tmp:
        folder = Path(tmp)
        ring = KeyRing.create(folder / "keys", "bench")
        (folder / "jwks.json").write_text(json.dumps(ring.jwks()))
        principal = Principal(subject=OWNER, roles=frozenset({DRIVER}), email_verified=True)
        token = ring.sign(access_claims(principal, issuer="evpark", audience="evpark", lifetime=timedelta(hours=1)))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        ports = {name: free_port() for name in ("cached", "uncached", "gateway-cached", "gateway-uncached")}
        children: list[subprocess.Popen[bytes] | subprocess.Popen[str]] = []
        try:
            for name, upstream in (("cached", 0), ("uncached", 0), ("gateway-cached", ports["cached"]),
                                   ("gateway-uncached", ports["uncached"])):
                child = subprocess.Popen([sys.executable, __file__, "--serve", name.split("-")[0],
                                          "--port", str(ports[name]), "--upstream-port", str(upstream),
                                          "--folder", str(folder), "--root", root], env=env)
                children.append(child)
                wait_listening(ports[name], child)
                if name == "cached":
                    time.sleep(2)  # its migrations ran before the copy opens the same database
            edge, ocpp_port = start_edge(folder, root, env)
            children.append(edge)
            total_s = 2 * (args.seconds * 1.5 + 1) + 60
            loads = [chargers(ocpp_port, 1, TAG, "BENCH-OWN-", total_s, 2.0, env),
                     chargers(ocpp_port, args.chargers, "LOAD-TAG", "BENCH-", total_s, args.meter_every, env)]
            children.extend(loads)
            live = asyncio.run(until_charging(ports["gateway-cached"], token))
            time.sleep(max(5.0, args.meter_every))  # every charger connected and sending
            path = f"/charging/status/{VEHICLE}"
            results = {}
            for name in ("gateway-cached", "gateway-uncached"):
                asyncio.run(load(ports[name], path, token, args.connections, 1.0))  # warm up
                before, began = asyncio.run(recorded(ports["cached"], token)), time.monotonic()
                errors, latencies = asyncio.run(load(ports[name], path, token, args.connections, args.seconds))
                ingest = (asyncio.run(recorded(ports["cached"], token)) - before) / (time.monotonic() - began)
                if not latencies:
                    raise RuntimeError(f"{name}: no request answered 200 ({errors} errors)")
                results[name] = (len(latencies) / args.seconds, percentile(latencies, 0.5) * 1e3,
                                 percentile(latencies, 0.99) * 1e3, errors, ingest)
        finally:
            for child in reversed(children):
                child.terminate()
            for child in children:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()
    cost = live["sessions"][0].get("cost_so_far")  # type: ignore[index]
    print(f"GET /charging/status (the bench vehicle's running session, cost so far {cost} EUR) through the gateway, "
          f"{args.connections} connections, {args.seconds:g} s each, while {args.chargers} cpsim chargers send a meter "
          f"value every {args.meter_every:g} s:")
    for name, (rate, p50, p99, errors, ingest) in results.items():
        print(f"  {name.removeprefix('gateway-'):9} {rate:8.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:7.2f} ms   "
              f"non-200 {errors}   session messages recorded meanwhile {ingest:6.0f}/s")
    ratio = results["gateway-cached"][0] / results["gateway-uncached"][0]
    print(f"  cached / uncached throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
