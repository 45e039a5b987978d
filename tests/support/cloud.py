"""The whole cloud in a thread of the test process: every service on SQLite and the in-process bus,
and the gateway served by uvicorn on a free port, for tests that speak plain HTTP to it (schemathesis)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from cloud.accounts.bootstrap import ensure_admin
from cloud.gateway.app import build_app as build_gateway
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.http_server import uvicorn_options
from cloud.platform.identity import TokenVerifier
from cloud.platform.settings import CloudSettings
from cloud.registry import domain_services
from tests.support.services import free_port

PASSWORD = "a long passphrase"
CALLERS = {"driver": (["driver"], []), "operator": (["operator"], ["site-1"])}


class ToServices(httpx.AsyncBaseTransport):
    """The gateway's upstream calls, delivered to the services' apps in this process by port."""

    def __init__(self, by_port: dict[int, FastAPI]) -> None:
        self._by_port = {port: httpx.ASGITransport(app=app) for port, app in by_port.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._by_port[request.url.port or 80].handle_async_request(request)


class RunningCloud:
    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.settings = CloudSettings(data_dir=data_dir, database_url="", amqp_url="", **settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="running-cloud", daemon=True)

    def start(self, limit_s: float = 60) -> RunningCloud:
        self._thread.start()
        if not self._ready.wait(limit_s) or self._failure is not None:
            raise RuntimeError(f"the cloud did not start: {self._failure!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        settings = self.settings
        bus, cache = InProcessBus(), MemoryCache()
        await bus.start()
        apps = {spec.name: spec.build_app(settings, bus=bus, cache=cache) for spec in domain_services()}
        async with contextlib.AsyncExitStack() as stack:
            for app in apps.values():
                await stack.enter_async_context(app.router.lifespan_context(app))
            # On the way out the bus closes before any service does: no service delivers into one
            # that is shutting down (its outbox keeps what was not relayed).
            stack.push_async_callback(bus.close)
            accounts = await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=apps["accounts"]), base_url="http://accounts"))
            verifier = TokenVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                                     jwks=(await accounts.get("/.well-known/jwks.json")).json())
            for app in apps.values():
                app.state.verifier = app.state.platform.verifier = verifier
            gateway = build_gateway(settings, cache=cache, verifier=verifier,
                                    transport=ToServices({settings.port_of(n): a for n, a in apps.items()}))
            server = uvicorn.Server(uvicorn.Config(gateway, host="127.0.0.1", port=self.port, log_config=None,
                                                   access_log=False, lifespan="on",
                                                   **uvicorn_options(settings.header_timeout_seconds)))
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    await task
                await asyncio.sleep(0.02)
            await self._log_in_callers(settings)
            self._ready.set()
            await self._stop.wait()
            server.should_exit = True
            await task
        await bus.close()

    async def _log_in_callers(self, settings: CloudSettings) -> None:
        await ensure_admin(settings, "admin@cloud.test", password=PASSWORD)
        async with httpx.AsyncClient(base_url=self.url, timeout=20) as client:
            self.tokens["admin"] = await self._token(client, "admin@cloud.test")
            for who, (roles, sites) in CALLERS.items():
                made = await client.post("/accounts", headers={"Authorization": f"Bearer {self.tokens['admin']}"},
                                         json={"email": f"{who}@cloud.test", "name": who, "password": PASSWORD,
                                               "roles": roles, "sites": sites})
                assert made.status_code == 201, made.text
                self.tokens[who] = await self._token(client, f"{who}@cloud.test")

    @staticmethod
    async def _token(client: httpx.AsyncClient, email: str) -> str:
        answer = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])
