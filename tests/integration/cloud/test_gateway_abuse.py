"""The gateway and the services under abuse, against real servers: a stopped service and the
breaker, rate limits shared in Redis, clients that never finish their headers, and the inputs
that once answered 5xx (racing registrations, NUL characters, huge integers) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import text

from cloud.accounts import SPEC as ACCOUNTS
from cloud.accounts.bootstrap import ensure_admin
from cloud.gateway.app import build_app as build_gateway
from cloud.platform.app import create_app
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.http_server import uvicorn_options
from cloud.platform.ports import Event
from cloud.platform.settings import CloudSettings
from tests.support import services
from tests.support.identity import RUN_LONG, headers, verifier
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
DRIVER = headers("driver_a", lifetime=RUN_LONG)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, port: int, *, header_timeout: float = 10.0,
                  keep_alive: float = 5.0) -> AsyncIterator[uvicorn.Server]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           lifespan="on", timeout_keep_alive=keep_alive,
                                           **uvicorn_options(header_timeout)))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.02)
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def vehicles_stand_in() -> FastAPI:
    """A service answering under /vehicles, served for real so that it can be stopped."""
    router = APIRouter()

    @router.get("/vehicles/{vehicle_id}")
    async def read(vehicle_id: str) -> dict[str, str]:
        return {"vehicle_id": vehicle_id}

    @router.post("/vehicles/register")
    async def register(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @router.get("/vehicles/{vehicle_id}/stream")
    async def stream(vehicle_id: str) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for n in range(3):
                yield f"part {n};".encode()

        return StreamingResponse(parts(), media_type="text/plain")  # chunked: no Content-Length

    return create_app("vehicles", routers=[router])


async def test_a_stopped_service_opens_its_breaker_and_a_restarted_one_closes_it(tmp_path: Path) -> None:
    port = services.free_port()
    settings = CloudSettings(data_dir=tmp_path, vehicles_url=f"http://127.0.0.1:{port}", breaker_reset_seconds=1.0)
    gateway = build_gateway(settings, cache=MemoryCache(), verifier=verifier())
    async with gateway.router.lifespan_context(gateway), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw",
                              headers=DRIVER) as client:
        async with serving(vehicles_stand_in(), port):
            assert (await client.get("/vehicles/v1")).json() == {"vehicle_id": "v1"}
        # stopped: five calls fail (502, each tried twice: a GET that could not be delivered is retried) ...
        assert [(await client.get("/vehicles/v1")).status_code for _ in range(5)] == [502] * 5
        started = time.monotonic()
        opened = await client.get("/vehicles/v1")
        assert opened.status_code == 503 and opened.headers["content-type"] == "application/problem+json"
        assert 1 <= int(opened.headers["retry-after"]) <= 2 and "vehicles" in opened.json()["detail"]
        assert time.monotonic() - started < 0.05, "an open breaker answers at once, without calling"
        async with serving(vehicles_stand_in(), port):
            assert (await client.get("/vehicles/v1")).status_code == 503, "still open until the reset time"
            await asyncio.sleep(1.1)
            assert (await client.get("/vehicles/v1")).status_code == 200, "half-open: one try, it works: closed"
            assert (await client.get("/vehicles/v2")).status_code == 200


async def test_rate_limits_live_in_redis_shared_by_every_gateway_replica(redis_url: str, tmp_path: Path) -> None:
    prefix = services.fresh_name("evpark-test-") + ":"
    settings = CloudSettings(data_dir=tmp_path, redis_url=redis_url, cache_prefix=prefix, rate_limit_per_minute=4)

    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    replicas = [build_gateway(settings, cache=MemoryCache(), verifier=verifier(),
                              transport=httpx.MockTransport(upstream)) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for app in replicas:
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=DRIVER)))
        statuses = [(await clients[i % 2].get("/vehicles/x")).status_code for i in range(6)]
        assert statuses == [200, 200, 200, 200, 429, 429], "four a minute in all, whichever replica is asked"
        limited = await clients[0].get("/vehicles/x")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        other = await clients[1].get("/vehicles/x", headers=headers("driver_b"))
        assert other.status_code == 200
    connection = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in connection.scan_iter(f"{prefix}ratelimit*")]
        assert keys, "the counters are in Redis, under the deployment's prefix"
        await connection.delete(*keys)
    finally:
        await connection.aclose()


async def test_with_redis_away_the_gateway_serves_rather_than_locks_everybody_out(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{services.free_port()}/0",
                             rate_limit_per_minute=1)
    gateway = build_gateway(settings, cache=MemoryCache(), verifier=verifier(),
                            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))
    async with gateway.router.lifespan_context(gateway), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw",
                              headers=DRIVER) as client:
        assert [(await client.get("/vehicles/x")).status_code for _ in range(3)] == [200] * 3


async def test_a_client_that_never_finishes_its_headers_is_disconnected() -> None:
    port = services.free_port()
    async with serving(vehicles_stand_in(), port, header_timeout=0.5):
        loop = asyncio.get_running_loop()

        def closed_after(payload: bytes) -> float:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                started = time.monotonic()
                if payload:
                    sock.sendall(payload)
                assert sock.recv(1024) == b"", "the server closes without answering"
                return time.monotonic() - started

        silent = await loop.run_in_executor(None, closed_after, b"")
        partial = await loop.run_in_executor(None, closed_after, b"GET /vehicles/v1 HTTP/1.1\r\nHost: x\r\n")
        assert 0.4 < silent < 2.0 and 0.4 < partial < 2.0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/vehicles/v1")).status_code == 200, "a client that sends in time is served"
            await asyncio.sleep(0.7)  # longer than the header timeout, while idle on a kept-alive connection
            assert (await client.get("/vehicles/v2")).status_code == 200


@pytest.fixture
async def accounts(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    settings = CloudSettings(data_dir=tmp_path, database_url=database_url)
    password = await ensure_admin(settings, "admin@abuse.test")
    assert password is not None
    bus = InProcessBus()
    await bus.start()
    app = ACCOUNTS.build_app(settings, bus=bus)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accounts") as client:
        login = await client.post("/auth/login", json={"email": "admin@abuse.test", "password": password})
        yield client, {"Authorization": f"Bearer {login.json()['access_token']}"}
    await bus.close()


async def test_racing_identical_registrations_answer_one_201_and_409s(
        accounts: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, _ = accounts
    body = {"email": "twin@abuse.test", "password": "a long passphrase", "name": "Twin"}
    answers = await asyncio.gather(*(client.post("/auth/register", json=body) for _ in range(6)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409, 409, 409], [a.text[:200] for a in answers]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers if a.status_code == 409)


async def test_huge_integers_and_nul_characters_are_422_problems(
        accounts: tuple[httpx.AsyncClient, dict[str, str]]) -> None:
    client, admin = accounts
    for query in ("offset=9223372036854775808", "offset=99999999999999999999999", "limit=9223372036854775808"):
        answer = await client.get(f"/accounts?{query}", headers=admin)
        assert answer.status_code == 422, (query, answer.text)
    nul = await client.post("/auth/register", content=b'{"email": "n@abuse.test", "password": "a long passphrase",'
                            b' "name": "N\\u0000ul"}', headers={"content-type": "application/json"})
    assert nul.status_code == 422 and nul.headers["content-type"] == "application/problem+json"
    for path in ("/accounts/%00", "/accounts?role=%00"):  # a service reached directly refuses it too
        answer = await client.get(path, headers=admin)
        assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json", path
    listed = await client.get("/accounts", headers=admin)
    assert listed.status_code == 200 and "N\x00ul" not in listed.text, "nothing was stored"


async def test_the_request_id_reaches_the_events_a_request_causes(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path)
    bus = InProcessBus()
    await bus.start()
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    await bus.subscribe("test.request-ids", ["account.*"], record)
    app = ACCOUNTS.build_app(settings, bus=bus)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accounts") as client:
        answer = await client.post("/auth/register", headers={"X-Request-ID": "req-0123456789abcdef"},
                                   json={"email": "traced@abuse.test", "password": "a long passphrase", "name": "T"})
        assert answer.status_code == 201 and answer.headers["x-request-id"] == "req-0123456789abcdef"
        await eventually(lambda: any(e.name == "account.registered" for e in seen), what="the event was published")
    assert {e.request_id for e in seen} == {"req-0123456789abcdef"}
    await bus.close()


async def test_a_race_a_service_did_not_foresee_is_a_409_not_a_500(database_url: str) -> None:
    """Any route that stores what a racing request stored meanwhile (an IntegrityError nobody caught,
    as ``POST /vehicles/register`` once did) answers 409; a value the database refuses, 422."""
    db = Database(database_url)
    await db.connect()
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE plates (plate VARCHAR(16) PRIMARY KEY, n BIGINT)"))
    router = APIRouter()

    @router.post("/plates/{plate}", status_code=201)
    async def store(plate: str, n: int = 0) -> dict[str, str]:
        async with db.session() as session, session.begin():
            await session.execute(text("INSERT INTO plates (plate, n) VALUES (:p, :n)"), {"p": plate, "n": n})
            await asyncio.sleep(0.05)  # both racers inside their transaction
        return {"plate": plate}

    app = create_app("plates", routers=[router])
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://plates") as client:
            answers = await asyncio.gather(*(client.post("/plates/AB-1") for _ in range(4)))
            assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
            assert {a.headers["content-type"] for a in answers if a.status_code == 409} == {"application/problem+json"}
            huge = await client.post("/plates/AB-2", params={"n": 2**63})
            assert huge.status_code == 422, huge.text
    finally:
        await db.close()


async def test_the_gateways_own_http_client_reuses_connections_the_service_may_have_closed(tmp_path: Path) -> None:
    port = services.free_port()
    settings = CloudSettings(data_dir=tmp_path, vehicles_url=f"http://127.0.0.1:{port}")
    gateway = build_gateway(settings, cache=MemoryCache(), verifier=verifier())  # the real upstream client
    async with serving(vehicles_stand_in(), port, keep_alive=0.2), gateway.router.lifespan_context(gateway), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw",
                              headers=DRIVER) as client:
        assert (await client.get("/vehicles/v1")).json() == {"vehicle_id": "v1"}
        await asyncio.sleep(0.5)  # the service closed the idle kept-alive connection meanwhile
        posted = await client.post("/vehicles/register", content=b"x" * 70_000)
        assert posted.status_code == 200 and posted.json() == {"received": 70_000}, "a POST is never lost to it"
        streamed = await client.get("/vehicles/v1/stream")
        assert streamed.status_code == 200 and streamed.text == "part 0;part 1;part 2;"
        answers = await asyncio.gather(*(client.get(f"/vehicles/v{n}") for n in range(20)))
        assert [a.json()["vehicle_id"] for a in answers] == [f"v{n}" for n in range(20)]


async def test_the_one_openapi_is_served_with_its_docs(tmp_path: Path) -> None:
    port = services.free_port()
    settings = CloudSettings(data_dir=tmp_path, vehicles_url=f"http://127.0.0.1:{port}")
    gateway = build_gateway(settings, cache=MemoryCache(), verifier=verifier())
    async with serving(vehicles_stand_in(), port), gateway.router.lifespan_context(gateway), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        document = (await client.get("/openapi.json")).json()
        assert "/vehicles/{vehicle_id}" in document["paths"], "the services' paths, without a token"
        assert "accounts" in document["info"]["x-unavailable"], "what is down is said, not silently left out"
        assert document["paths"]["/vehicles/{vehicle_id}"]["get"]["security"] == [{"bearer": []}]
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower() and "/openapi.json" in docs.text
