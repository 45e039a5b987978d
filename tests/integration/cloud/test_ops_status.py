"""Every service's ``GET /status`` (for the cluster: the gateway does not route it) and what analytics'
``GET /metrics/health`` shows of it: an event a consumer parked, a route answering 500, the messages
waiting at RabbitMQ while the consumer is stalled, each site's edge backlog. The real analytics service,
in both run modes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Response

from cloud.analytics.app import build_app
from cloud.contracts import Event
from cloud.contracts.parking import InventoryChanged
from cloud.gateway.app import build_app as build_gateway
from cloud.platform.app import problem
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.settings import CloudSettings
from tests.integration.cloud.test_analytics_day import Analytics, running
from tests.support import services
from tests.support.identity import headers, trust_test_tokens, verifier
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "production"])
async def analytics(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Analytics]:
    production = request.param == "production"
    if production:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
    async with running(tmp_path, production) as started:
        yield started


async def status(analytics: Analytics) -> dict[str, Any]:
    answer = await analytics.client.get("/status")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_a_parked_event_and_a_500_show_in_the_status_and_in_metrics_health(analytics: Analytics) -> None:
    poison = Event.of(InventoryChanged(site_id="site-1", bays=2, chargers=1), source="test")
    await analytics.send([poison.model_copy(update={"version": "9.0"})])  # a major version analytics cannot read

    async def parked_one() -> bool:
        return (await status(analytics))["parked_messages"] == 1

    await eventually(parked_one, what="the event parked")

    async def broken() -> Response:
        return problem(500, "Internal Server Error")

    analytics.app.add_api_route("/analytics/broken", broken)
    assert (await analytics.client.get("/analytics/broken")).status_code == 500
    assert (await analytics.client.get("/analytics/usage", headers=headers("admin"))).status_code == 200

    figures = await status(analytics)
    assert {k: figures[k] for k in ("service", "outbox_backlog", "parked_messages", "requests_5m", "errors_5m",
                                    "error_rate")} == {"service": "analytics", "outbox_backlog": 0,
                                                       "parked_messages": 1, "requests_5m": 2, "errors_5m": 1,
                                                       "error_rate": 0.5}
    assert list(figures["queues"]) == ["analytics.events"] and figures["uplink"] is None

    health = await analytics.client.get("/metrics/health", headers=headers("admin"))
    assert health.status_code == 200, health.text
    shown = {s["service"]: s for s in health.json()["services"]}
    assert {k: shown["analytics"][k] for k in ("healthy", "ready", "parked_messages", "errors_5m")} == {
        "healthy": True, "ready": True, "parked_messages": 1, "errors_5m": 1}
    assert set(shown) == {"accounts", "vehicles", "charging", "parking", "payments", "analytics", "notifications"}
    operator = await analytics.client.get("/metrics/health", headers=headers("operator_1"))
    assert operator.status_code == 200 and operator.json()["services"] == []


async def test_the_status_is_not_reachable_through_the_gateway(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path, database_url="", amqp_url="")
    asked: list[str] = []
    async with running(tmp_path, production=False) as analytics:  # routing is the same in both run modes

        class ToAnalytics(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                asked.append(request.url.path)
                return await httpx.ASGITransport(app=analytics.app).handle_async_request(request)

        gateway = build_gateway(settings, cache=MemoryCache(), verifier=verifier(), transport=ToAnalytics())
        async with gateway.router.lifespan_context(gateway), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
            for path in ("/status", "/metrics/status", "/analytics/../status"):
                answer = await client.get(path, headers=headers("admin"))
                assert answer.status_code == 404, (path, answer.text)
            assert (await client.get("/metrics/health", headers=headers("admin"))).status_code == 200
    assert "/status" not in asked and "/metrics/health" in asked


async def test_events_waiting_for_a_stalled_consumer_are_its_lag(tmp_path: Path) -> None:
    services.require("PostgreSQL", services.POSTGRES)
    services.require("RabbitMQ", services.RABBITMQ)
    async with running(tmp_path, production=True) as analytics:
        database = analytics.url.replace("postgresql+asyncpg", "postgresql")
        lock = await asyncpg.connect(database)
        try:
            stalled = lock.transaction()
            await stalled.start()
            await lock.execute("LOCK TABLE event_logs IN ACCESS EXCLUSIVE MODE")  # its handler waits for it
            await analytics.publish([InventoryChanged(site_id=f"site-{n}", bays=1, chargers=0) for n in range(40)])

            async def lagging() -> bool:
                return (await status(analytics))["consumer_lag"] > 0  # type: ignore[no-any-return]

            await eventually(lagging, within=10, what="events waiting at RabbitMQ")
            figures = await status(analytics)
            assert figures["queues"]["analytics.events"] == figures["consumer_lag"] > 0
            await stalled.rollback()
        finally:
            await lock.close()

        async def caught_up() -> bool:
            return (await status(analytics))["consumer_lag"] == 0 and await analytics.logged() == 40

        await eventually(caught_up, within=20, what="the consumer caught up")


def uplink_of(site_id: str, missing: dict[str, int]) -> dict[str, Any]:
    return {site_id: {"missing": missing, "heard_at": "2026-03-10T11:00:00Z"}}


def services_reading_mqtt(request: httpx.Request) -> httpx.Response:
    """Charging and parking, each missing some of site-1's envelopes; every other service down."""
    settings = CloudSettings()
    port = request.url.port
    uplink = {settings.port_of("charging"): uplink_of("site-1", {"session": 2, "site": 1}),
              settings.port_of("parking"): uplink_of("site-1", {"bay": 1, "site": 1})}.get(port or 0)
    if uplink is None:
        raise httpx.ConnectError("connection refused", request=request)
    if request.url.path != "/status":
        return httpx.Response(200, json={"status": "ok"})
    return httpx.Response(200, json={"service": "x", "at": datetime.now(UTC).isoformat(), "requests_5m": 0,
                                     "errors_5m": 0, "error_rate": None, "uplink": uplink})


async def test_a_sites_edge_backlog_is_what_the_services_reading_its_uplink_miss(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
                             amqp_url="")
    bus = InProcessBus()
    app: FastAPI = build_app(settings, bus=bus, cache=MemoryCache(),
                             probe_transport=httpx.MockTransport(services_reading_mqtt))
    async with app.router.lifespan_context(app):
        trust_test_tokens(app)
        await bus.publish(Event.of(InventoryChanged(site_id="site-1", bays=2, chargers=1), source="test"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
            answer = await asyncio.wait_for(client.get("/metrics/health", headers=headers("operator_1")), 10)
    assert answer.status_code == 200, answer.text
    (site,) = answer.json()["sites"]
    # session 2 + bay 1 + the site category's one envelope both services miss, counted once
    assert (site["site_id"], site["edge_backlog"], site["edge_heard_at"]) == ("site-1", 4, "2026-03-10T11:00:00Z")
