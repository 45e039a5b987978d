"""What the gateway adds: latency (p50/p99) and throughput of an authenticated, cached GET.

Three servers, each a process of its own under uvicorn as ``evpark serve`` runs them (with the
platform's HTTP protocol), measured one after the other in the same run with the same load:

* **bare**: a FastAPI app with one route answering a fixed JSON body — the floor of the stack;
* **direct**: the charging service (embedded defaults: SQLite, in-process bus and cache) answering
  ``GET /charging/status/{vehicle_id}`` for the vehicle's owner from its status cache;
* **gateway**: the same request through the gateway (token verified, rate limit counted in
  memory, breaker, confined path) to that charging service.

The load is ``--connections`` keep-alive HTTP/1.1 connections sending requests back to back for
``--seconds`` (throughput, and latency under that load), then one connection for half as long
(the latency of one request at a time: what the gateway adds to each), from a minimal client
written on asyncio streams (httpx would be the bottleneck).
Target (issue 11): the gateway path at >= 0.5 x the direct path's throughput.

    .venv/bin/python bench/bench_gateway.py
    .venv/bin/python bench/bench_gateway.py --seconds 5 --connections 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path

TARGET_RATIO = 0.5
VEHICLE, OWNER = "bench-vehicle-1", "acc-bench-driver"


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the servers (run in child processes: `bench_gateway.py --serve <what> ...`) --------------

async def serve(what: str, port: int, folder: Path, upstream_port: int) -> None:
    import httpx
    import uvicorn
    from fastapi import APIRouter

    from cloud.contracts.base import Event
    from cloud.contracts.vehicles import VehicleRegistered
    from cloud.platform.app import create_app
    from cloud.platform.cache import MemoryCache
    from cloud.platform.events import InProcessBus
    from cloud.platform.http_server import uvicorn_options
    from cloud.platform.identity import TokenVerifier
    from cloud.platform.logging import configure_logging
    from cloud.platform.settings import CloudSettings
    from cloud.registry import spec

    configure_logging("ERROR")
    verifier = TokenVerifier(issuer="evpark", audience="evpark", jwks=json.loads((folder / "jwks.json").read_text()))
    settings = CloudSettings(data_dir=folder / what, urls={"charging": f"http://127.0.0.1:{upstream_port}"},
                             mqtt_port=free_port(),  # no broker: the charging service's MQTT link just retries
                             rate_limit_per_minute=10_000_000)
    token = (folder / "token").read_text()
    if what == "bare":
        router = APIRouter()
        body = json.loads((folder / "body.json").read_text())

        @router.get("/charging/status/{vehicle_id}")
        async def status(vehicle_id: str) -> dict[str, object]:
            return body  # type: ignore[no-any-return]

        app = create_app("bare", routers=[router])
    elif what == "direct":
        bus = InProcessBus()
        await bus.start()
        app = spec("charging").build_app(settings, bus=bus, cache=MemoryCache())
    else:
        from cloud.gateway.app import build_app

        app = build_app(settings, cache=MemoryCache(), verifier=verifier)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="off", **uvicorn_options(10.0)))
    async with app.router.lifespan_context(app):
        if what == "direct":
            app.state.verifier = app.state.platform.verifier = verifier
            await bus.publish(Event.of(VehicleRegistered(vehicle_id=VEHICLE, plate="BENCH 1", id_tags=["BENCHTAG1"],
                                                         owner_id=OWNER), source="vehicles"))
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as client:
                for _ in range(200):
                    answer = await client.get(f"/charging/status/{VEHICLE}", headers={
                        "Authorization": f"Bearer {token}"})
                    if answer.status_code == 200:
                        (folder / "body.json").write_text(answer.text)
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise RuntimeError(f"the charging service did not learn the vehicle: {answer.text}")
        await server.serve()


# --- the load -----------------------------------------------------------------------------------

async def load(port: int, path: str, token: str, connections: int, seconds: float) -> tuple[int, list[float]]:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one_connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if status != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return errors, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_listening(port: int, child: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"a server exited with {child.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("a server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="load per server")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", choices=["bare", "direct", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.folder, args.upstream_port))
        return

    from cloud.contracts.identity import DRIVER, Principal
    from cloud.platform.identity import KeyRing, access_claims

    with tempfile.TemporaryDirectory(prefix="evpark-bench-gw-") as tmp:
        folder = Path(tmp)
        ring = KeyRing.create(folder / "keys", "bench")
        (folder / "jwks.json").write_text(json.dumps(ring.jwks()))
        principal = Principal(subject=OWNER, roles=frozenset({DRIVER}), email_verified=True)
        token = ring.sign(access_claims(principal, issuer="evpark", audience="evpark", lifetime=timedelta(hours=1)))
        (folder / "token").write_text(token)
        ports = {name: free_port() for name in ("direct", "gateway", "bare")}
        children: list[subprocess.Popen[bytes]] = []
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        try:
            for name in ("direct", "gateway", "bare"):  # bare reads the body the service answers
                child = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(ports[name]),
                                          "--upstream-port", str(ports["direct"]), "--folder", str(folder)], env=env)
                children.append(child)
                wait_listening(ports[name], child)
            path = f"/charging/status/{VEHICLE}"
            results = {}
            for name in ("bare", "direct", "gateway"):
                asyncio.run(load(ports[name], path, token, args.connections, 1.0))  # warm up
                errors, latencies = asyncio.run(load(ports[name], path, token, args.connections, args.seconds))
                lone_errors, alone = asyncio.run(load(ports[name], path, token, 1, args.seconds / 2))
                if errors or lone_errors or not latencies or not alone:
                    raise RuntimeError(f"{name}: {errors + lone_errors} answers were not 200")
                results[name] = (len(latencies) / args.seconds, percentile(latencies, 0.5), percentile(latencies, 0.99),
                                 percentile(alone, 0.5), percentile(alone, 0.99), statistics.fmean(alone))
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
    print(f"authenticated cached GET {path}, {args.connections} keep-alive connections, {args.seconds:.0f} s each "
          f"({os.cpu_count()} cores shared by client and servers)")
    print("             throughput      under that load         one request at a time")
    for name, (rps, p50, p99, a50, a99, _mean) in results.items():
        print(f"  {name:8} {rps:8,.0f} req/s   p50 {p50 * 1000:6.2f} p99 {p99 * 1000:6.2f} ms   "
              f"p50 {a50 * 1000:5.2f} p99 {a99 * 1000:5.2f} ms")
    direct, gateway, bare = results["direct"], results["gateway"], results["bare"]
    ratio = gateway[0] / direct[0]
    print(f"  gateway added, one request at a time: p50 {(gateway[3] - direct[3]) * 1000:+.2f} ms, "
          f"p99 {(gateway[4] - direct[4]) * 1000:+.2f} ms; under load: p50 {(gateway[1] - direct[1]) * 1000:+.2f} ms, "
          f"p99 {(gateway[2] - direct[2]) * 1000:+.2f} ms")
    print(f"  throughput ratios: gateway/direct {ratio:.2f} (target >= {TARGET_RATIO}: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT MET'}), direct/bare {direct[0] / bare[0]:.2f}, "
          f"gateway/bare {gateway[0] / bare[0]:.2f}")


if __name__ == "__main__":
    main()
