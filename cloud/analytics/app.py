"""Composition root of the analytics service."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from cloud.analytics import SPEC
from cloud.analytics.api import router
from cloud.analytics.repository import SqlAnalyticsRepository
from cloud.analytics.service import QUEUE, AnalyticsService, Probed, Prober
from cloud.analytics.views import ServiceHealth
from cloud.platform.ops import STATUS_PATH, OpsStatus
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work
from cloud.registry import domain_services

PROBE_TIMEOUT_S = 1.5
PROBE_CACHE_S = 2.0
"""How long one round of probes answers ``/metrics/health`` (callers within it share the round)."""


def prober(settings: CloudSettings, *, itself: Callable[[], FastAPI] | None = None,
           transport: httpx.AsyncBaseTransport | None = None, cache_s: float = PROBE_CACHE_S) -> Prober:
    """Every service's /health, /ready and /status, all asked at once (1.5 s each at most); analytics'
    own through its app in this process (``itself``): the same answers, without the network. A service
    that does not answer is shown not healthy, with its figures unknown. A round's answers are reused
    for ``cache_s`` seconds, and callers arriving while a round runs wait for it (one round at a time)."""
    tls = httpx.create_ssl_context()  # loaded once: a client's own costs more than the probes
    last: list[tuple[float, list[Probed]]] = []
    one_round = asyncio.Lock()

    async def shared() -> list[Probed]:
        async with one_round:
            if last and time.monotonic() - last[0][0] < cache_s:
                return last[0][1]
            found = await probe()
            last[:] = [(time.monotonic(), found)]
            return found

    async def probe() -> list[Probed]:
        async with contextlib.AsyncExitStack() as stack:
            network = await stack.enter_async_context(httpx.AsyncClient(timeout=PROBE_TIMEOUT_S, transport=transport,
                                                                        verify=tls))
            own = None if itself is None else await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=itself()), base_url=f"http://{SPEC.name}"))

            async def ask(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
                try:
                    return await asyncio.wait_for(client.get(url), PROBE_TIMEOUT_S)
                except (httpx.HTTPError, TimeoutError):
                    return None

            async def one(name: str) -> Probed:
                client, base = (own, "") if own is not None and name == SPEC.name else (network,
                                                                                       settings.upstream_url(name))
                alive, ready, status = await asyncio.gather(
                    *(ask(client, f"{base}{path}") for path in ("/health", "/ready", STATUS_PATH)))
                figures = _status(status)
                return Probed(ServiceHealth(
                    service=name, healthy=alive is not None and alive.status_code == 200,
                    ready=ready is not None and ready.status_code == 200, checks=_checks(ready),
                    **({} if figures is None else figures.model_dump(include=SHOWN))),
                    uplink=None if figures is None else figures.uplink)

            return list(await asyncio.gather(*(one(spec.name) for spec in domain_services())))

    return shared


SHOWN = {"outbox_backlog", "parked_messages", "consumer_lag", "error_rate", "requests_5m", "errors_5m"}
"""What /metrics/health shows of a service's /status (the uplink goes into its sites' rows)."""


def _checks(ready: httpx.Response | None) -> dict[str, bool]:
    """What a /ready answered, ready or not (a 503 is a problem document carrying the same checks)."""
    if ready is None or "json" not in ready.headers.get("content-type", ""):
        return {}
    try:
        checks = ready.json().get("checks", {})
    except (ValueError, AttributeError):
        return {}
    return {str(k): bool(v) for k, v in checks.items()} if isinstance(checks, dict) else {}


def _status(status: httpx.Response | None) -> OpsStatus | None:
    if status is None or status.status_code != 200:
        return None
    try:
        return OpsStatus.model_validate_json(status.content)
    except ValueError:
        return None


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None,
              probe_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """``probe_transport``: how the prober reaches the other services (tests); default the network."""
    async def wire(platform: Platform) -> tuple[object, None]:
        service = AnalyticsService(sql_units_of_work(platform.outbox, SqlAnalyticsRepository),
                                   probe=prober(settings, itself=lambda: app, transport=probe_transport))
        await platform.consume(QUEUE, dict.fromkeys(SPEC.consumes, service.on_event))
        return service, None  # no MQTT link: analytics learns everything from events

    app = service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
    return app
