"""``GET /metrics/health``'s view of the services: each one's /health, /ready and /status asked at once, a
service down shown as not healthy with unknown figures (never an error), and each site's edge backlog
from what the services reading its uplink miss (per category the worst of them, not their sum)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx

from cloud.analytics.app import prober
from cloud.analytics.service import Probed, edge_links
from cloud.analytics.views import ServiceHealth
from cloud.platform.delivery import SiteUplink
from cloud.platform.settings import CloudSettings

SETTINGS = CloudSettings()
HEARD = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
LATER = datetime(2026, 3, 10, 11, 1, tzinfo=UTC)


def status(service: str, **figures: object) -> dict[str, object]:
    return {"service": service, "at": HEARD.isoformat(), "outbox_backlog": 0, "parked_messages": 0,
            "consumer_lag": 0, "queues": {}, "requests_5m": 0, "errors_5m": 0, "error_rate": None, "uplink": None,
            **figures}


def services(request: httpx.Request) -> httpx.Response:
    port, path = request.url.port, request.url.path
    if port == SETTINGS.port_of("parking"):
        raise httpx.ConnectError("connection refused", request=request)
    if port == SETTINGS.port_of("payments") and path == "/ready":
        return httpx.Response(503, json={"status": 503, "checks": {"database": False, "event_bus": True}},
                              headers={"content-type": "application/problem+json"})
    if port == SETTINGS.port_of("payments") and path == "/status":
        return httpx.Response(404, json={"status": 404})  # an older version without /status
    if path == "/status" and port == SETTINGS.port_of("charging"):
        uplink = {"site-1": {"missing": {"session": 3}, "heard_at": HEARD.isoformat()}}
        return httpx.Response(200, json=status("charging", parked_messages=2, consumer_lag=7, requests_5m=40,
                                               errors_5m=2, error_rate=0.05, uplink=uplink))
    if path == "/status":
        return httpx.Response(200, json=status("other"))
    return httpx.Response(200, json={"status": "ready", "checks": {"database": True}})


async def test_each_services_figures_come_from_its_status_and_a_service_down_is_not_healthy() -> None:
    probe = prober(SETTINGS, transport=httpx.MockTransport(services))
    found = {p.health.service: p for p in await asyncio.wait_for(probe(), 10)}
    assert set(found) == {"accounts", "vehicles", "charging", "parking", "payments", "analytics", "notifications"}
    charging = found["charging"]
    assert charging.health.model_dump(include={"healthy", "ready", "parked_messages", "consumer_lag", "error_rate",
                                               "requests_5m", "errors_5m"}) == {
        "healthy": True, "ready": True, "parked_messages": 2, "consumer_lag": 7, "error_rate": 0.05,
        "requests_5m": 40, "errors_5m": 2}
    assert charging.uplink == {"site-1": SiteUplink(missing={"session": 3}, heard_at=HEARD)}
    parking = found["parking"].health
    assert (parking.healthy, parking.ready, parking.outbox_backlog, parking.error_rate) == (False, False, None, None)
    payments = found["payments"].health
    assert (payments.healthy, payments.ready, payments.checks, payments.parked_messages) == (
        True, False, {"database": False, "event_bus": True}, None)



async def test_callers_within_a_moment_share_one_round_of_probes() -> None:
    asked: list[str] = []

    def counting(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return services(request)

    probe = prober(SETTINGS, transport=httpx.MockTransport(counting), cache_s=60)
    together = await asyncio.gather(probe(), probe())  # the second waits for the first's round
    assert together[0] == together[1] and await probe() == together[0]
    assert len(asked) == 7 * 3, "one /health, /ready and /status per service"
    fresh = prober(SETTINGS, transport=httpx.MockTransport(counting), cache_s=0)
    await fresh()
    await fresh()
    assert len(asked) == 7 * 3 * 3

def probed(service: str, uplink: dict[str, SiteUplink] | None) -> Probed:
    return Probed(ServiceHealth(service=service, healthy=True, ready=True), uplink)


def test_a_sites_backlog_is_per_category_the_most_one_service_misses_summed() -> None:
    links = edge_links([
        probed("charging", {"site-1": SiteUplink({"session": 3, "site": 1}, HEARD),
                            "site-2": SiteUplink({"session": 0}, None)}),
        probed("parking", {"site-1": SiteUplink({"bay": 2, "site": 1}, LATER)}),  # the same site envelope missing
        probed("vehicles", {"site-1": SiteUplink({"site": 0}, None)}),
        probed("accounts", None),  # reads no MQTT
    ])
    assert links == {"site-1": (6, LATER), "site-2": (0, None)}
    assert edge_links([probed("accounts", None)]) == {}, "no stream of the site anywhere: unknown"
