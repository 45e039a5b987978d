"""The parking service's two hot paths, through the gateway, on PostgreSQL and Redis:

* ``GET /parking/status?site_id=`` (the lot's status, cached in Redis per status version), and
* ``POST /parking/reserve`` by bay type (a per-site serialising lock, a row written, an event in
  the outbox: every request a new reservation),

each measured for three servers, processes of their own under uvicorn, one after the other in the
same run with the same load:

* **bare**: a FastAPI app answering both routes with a fixed body (the floor of the stack);
* **direct**: the parking service (PostgreSQL, Redis, in-process bus) reached directly;
* **gateway**: the same requests through the gateway (token verified, rate limit, breaker) to it.

``--connections`` keep-alive HTTP/1.1 connections send requests back to back for ``--seconds``,
from a minimal asyncio-streams client. Needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379.

    .venv/bin/python bench/bench_parking.py
    .venv/bin/python bench/bench_parking.py --seconds 5 --connections 16
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_gateway import free_port, percentile, wait_listening

VEHICLE, OWNER, SITE = "bench-vehicle-1", "acc-bench-driver", "bench-site"
BAYS = 50
PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
REDIS = "redis://127.0.0.1:6379/0"


async def serve(what: str, port: int, folder: Path, upstream_port: int, database: str) -> None:
    import uvicorn
    from fastapi import APIRouter, Response

    from cloud.contracts import Received
    from cloud.contracts.vehicles import VehicleRegistered
    from cloud.parking.domain import Bay, Site
    from cloud.parking.repository import SqlParkingRepository
    from cloud.platform.app import create_app
    from cloud.platform.cache import RedisCache
    from cloud.platform.events import InProcessBus
    from cloud.platform.http_server import uvicorn_options
    from cloud.platform.identity import TokenVerifier
    from cloud.platform.logging import configure_logging
    from cloud.platform.settings import CloudSettings
    from cloud.platform.unit_of_work import sql_units_of_work
    from cloud.registry import spec
    from mqtt import BayOccupancy

    configure_logging("ERROR")
    verifier = TokenVerifier(issuer="evpark", audience="evpark", jwks=json.loads((folder / "jwks.json").read_text()))
    settings = CloudSettings(data_dir=folder / what, urls={"parking": f"http://127.0.0.1:{upstream_port}"},
                             database_url=PG.format(name=database), redis_url=REDIS,
                             cache_prefix=f"bench-{database}:", mqtt_port=free_port(),  # no broker: the link retries
                             rate_limit_per_minute=10_000_000, rate_limit_writes_per_minute=10_000_000)
    if what == "bare":
        router = APIRouter()
        status_body = (folder / "status.json").read_text()
        reserve_body = (folder / "reserve.json").read_text()

        @router.get("/parking/status")
        async def status(site_id: str) -> Response:
            return Response(status_body, media_type="application/json")

        @router.post("/parking/reserve", status_code=201)
        async def reserve() -> Response:
            return Response(reserve_body, status_code=201, media_type="application/json")

        app = create_app("bare", routers=[router])
    elif what == "direct":
        app = spec("parking").build_app(settings, bus=InProcessBus(), cache=RedisCache(REDIS, f"bench-{database}:"))
    else:
        from cloud.gateway.app import build_app

        app = build_app(settings, cache=RedisCache(REDIS, f"bench-gw-{database}:"), verifier=verifier)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="off", **uvicorn_options(10.0)))
    async with app.router.lifespan_context(app):
        if what == "direct":
            app.state.verifier = app.state.platform.verifier = verifier
            now = datetime.now(UTC)
            units = sql_units_of_work(app.state.platform.outbox, SqlParkingRepository)
            async with units() as uow:
                await uow.repo.save_site(Site(site_id=SITE, last_seen_at=now))
                for n in range(1, BAYS + 1):
                    bay = Bay.sensed(SITE, BayOccupancy(bay_id=f"R-{n:03d}", state="free", changed_at=now), now)
                    bay.type = "regular"
                    await uow.repo.save_bay(bay)
            registered = VehicleRegistered(vehicle_id=VEHICLE, plate="BENCH 1", id_tags=["BENCHTAG1"], owner_id=OWNER,
                                           type="electric")
            await app.state.booking.on_vehicle_registered(Received(
                id=uuid.uuid4(), name=registered.NAME, version=registered.VERSION, occurred_at=now, source="vehicles",
                body=registered))
        await server.serve()


def reserve_request(port: int, token: str, n: int, base: datetime) -> bytes:
    start = base + timedelta(hours=n // BAYS)  # each hour's window fills the lot's bays once
    body = json.dumps({"vehicle_id": VEHICLE, "site_id": SITE, "bay_type": "regular",
                       "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()}).encode()
    return (f"POST /parking/reserve HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def load(port: int, token: str, kind: str, connections: int, seconds: float,
               counter: list[int]) -> tuple[int, list[float]]:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    status = (f"GET /parking/status?site_id={SITE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
              f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one_connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                if kind == "status":
                    request = status
                else:
                    counter[0] += 1
                    request = reserve_request(port, token, counter[0], base)
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                code = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if code not in (200, 201):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return errors, latencies


async def drop_database(name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="load per server and route")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--serve", choices=["bare", "direct", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--database", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port, args.folder, args.upstream_port, args.database))
        return

    from cloud.contracts.identity import DRIVER, Principal
    from cloud.platform.identity import KeyRing, access_claims

    database = f"evpark_bench_parking_{uuid.uuid4().hex[:8]}"
    results: dict[tuple[str, str], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="evpark-bench-parking-") as tmp:
        folder = Path(tmp)
        ring = KeyRing.create(folder / "keys", "bench")
        (folder / "jwks.json").write_text(json.dumps(ring.jwks()))
        principal = Principal(subject=OWNER, roles=frozenset({DRIVER}), email_verified=True)
        token = ring.sign(access_claims(principal, issuer="evpark", audience="evpark", lifetime=timedelta(hours=1)))
        ports = {name: free_port() for name in ("direct", "gateway", "bare")}
        children: list[subprocess.Popen[bytes]] = []
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'bench'}"}

        def start(name: str) -> None:
            child = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(ports[name]),
                                      "--upstream-port", str(ports["direct"]), "--folder", str(folder),
                                      "--database", database], env=env)
            children.append(child)
            wait_listening(ports[name], child)

        try:
            start("direct")
            start("gateway")
            import httpx

            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(200):  # the seeded lot answers; its bodies are what bare answers
                answer = httpx.get(f"http://127.0.0.1:{ports['direct']}/parking/status", params={"site_id": SITE},
                                   headers=headers)
                if answer.status_code == 200:
                    break
                time.sleep(0.05)
            (folder / "status.json").write_text(answer.text)
            (folder / "reserve.json").write_text(json.dumps({
                "reservation_id": str(uuid.uuid4()), "slot_id": "x", "site_id": SITE, "bay_id": "R-001",
                "bay_type": "regular", "vehicle_id": VEHICLE, "starts_at": "2030-01-01T00:00:00Z",
                "ends_at": "2030-01-01T01:00:00Z", "status": "reserved"}))
            start("bare")
            counter = [0]
            for kind in ("status", "reserve"):
                for name in ("bare", "direct", "gateway"):
                    windows = [0] if name == "bare" else counter  # direct and gateway share the lot: new windows
                    asyncio.run(load(ports[name], token, kind, args.connections, 0.5, windows))  # warm up
                    errors, latencies = asyncio.run(load(ports[name], token, kind, args.connections, args.seconds,
                                                         windows))
                    if errors or not latencies:
                        raise RuntimeError(f"{name} {kind}: {errors} answers were not 200/201")
                    results[(kind, name)] = (len(latencies) / args.seconds, percentile(latencies, 0.5),
                                             percentile(latencies, 0.99))
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
            asyncio.run(drop_database(database))
    print(f"parking on PostgreSQL + Redis, {args.connections} keep-alive connections, {args.seconds:.0f} s each "
          f"({os.cpu_count()} cores shared by client and servers); {counter[0]} reservations made in all")
    for kind, label in (("status", f"GET /parking/status?site_id={SITE} (cached)"),
                        ("reserve", "POST /parking/reserve by bay type (a new reservation each)")):
        print(f"  {label}")
        for name in ("bare", "direct", "gateway"):
            rps, p50, p99 = results[(kind, name)]
            print(f"    {name:8} {rps:8,.0f} req/s   p50 {p50 * 1000:6.2f} ms   p99 {p99 * 1000:6.2f} ms")
        bare, direct, gateway = (results[(kind, n)][0] for n in ("bare", "direct", "gateway"))
        print(f"    ratios: gateway/bare {gateway / bare:.2f}, direct/bare {direct / bare:.2f}, "
              f"gateway/direct {gateway / direct:.2f}")


if __name__ == "__main__":
    main()
