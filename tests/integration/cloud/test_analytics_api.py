"""The analytics API: ranges and granularity checked with problems naming the field, every report for
the caller's sites only (another's is a 404), CSV on ``Accept: text/csv``, and ``GET /metrics/health``
through the gateway while ``/metrics`` stays the Prometheus page. Both run modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from cloud.contracts.charging import ChargerFaulted, ChargerOffline
from cloud.contracts.parking import Arrived, InventoryChanged, Released, SiteOffline
from cloud.contracts.payments import InvoiceIssued
from cloud.gateway.app import build_app as build_gateway
from cloud.platform.cache import MemoryCache
from cloud.platform.settings import CloudSettings
from tests.integration.cloud.test_analytics_day import DAY, Analytics, at, document, running, stay
from tests.support import services
from tests.support.identity import headers, verifier
from tests.support.waiting import eventually

SITE_2_STAY = {**stay("st-9", "b9", "ev", "09:00"), "site_id": "site-2", "slot_id": "slot-b9"}


@pytest.fixture(params=["embedded", "production"])
async def analytics(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Analytics]:
    production = request.param == "production"
    if production:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
    async with running(tmp_path, production) as started:
        sent = await started.publish([
            InventoryChanged(site_id="site-1", bays=2, chargers=1),
            InventoryChanged(site_id="site-2", bays=1, chargers=1),
            Arrived(**stay("st-1", "b1", "ev", "08:00")),
            Released(**stay("st-1", "b1", "ev", "08:00"), departed_at=at("09:30"), duration_s=5400),
            Arrived(**SITE_2_STAY), Released(**SITE_2_STAY, departed_at=at("10:00"), duration_s=3600),
            InvoiceIssued(**document("S1-0001", "10:00", "EUR", {"parking": "2.50"}, "0.48"), invoice_id="i-1"),
            SiteOffline(site_id="site-2", since=at("11:00"), reason="lost"),
            ChargerOffline(site_id="site-1", charger_id="cp-1", since=at("11:00")),
            ChargerFaulted(site_id="site-1", charger_id="cp-2", connector_id=1, error_code="GroundFailure",
                           faulted_at=at("11:05")),
        ])

        async def all_logged() -> bool:
            return await started.logged() == len(sent)

        await eventually(all_logged, what="the events logged")
        yield started


async def ask(analytics: Analytics, path: str, who: str = "admin", accept: str = "application/json",
              **query: str) -> httpx.Response:
    return await analytics.client.get(path, params=query, headers={**headers(who), "accept": accept})


@pytest.mark.parametrize("query, field", [
    ({"from": "2026-03-11T00:00:00Z", "to": "2026-03-10T00:00:00Z"}, "from"),  # reversed
    ({"from": "2023-01-01T00:00:00Z", "to": "2026-03-10T00:00:00Z"}, "to"),  # longer than 2 years
    ({"from": "2020-01-01T00:00:00Z"}, "to"),  # unbounded: from years ago up to now
    ({"from": "2026-03-10T00:00:00"}, "from"),  # no time zone
    ({**DAY, "granularity": "fortnight"}, "granularity"),
    ({**DAY, "bay_type": "garage"}, "bay_type"),
])
async def test_a_bad_range_or_granularity_is_a_422_naming_the_field(analytics: Analytics, query: dict[str, str],
                                                                    field: str) -> None:
    answer = await ask(analytics, "/analytics/usage", **query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith(f"{field}:"), answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_an_unknown_site_is_a_404_naming_it(analytics: Analytics) -> None:
    for path in ("/analytics/usage", "/analytics/revenue", "/analytics/peak-hours", "/analytics/vehicle-types"):
        answer = await ask(analytics, path, site_id="no-such-site", **DAY)
        assert answer.status_code == 404, answer.text
        assert "site_id" in answer.json()["detail"]


async def test_operators_see_their_sites_only_and_admins_all(analytics: Analytics) -> None:
    other = await ask(analytics, "/analytics/usage", "operator_2", site_id="site-1", **DAY)
    assert other.status_code == 404  # site-1 exists, but not for this operator
    mine = await ask(analytics, "/analytics/usage", "operator_2", **DAY)
    assert mine.json()["sites"] == ["site-2"] and mine.json()["total"]["occupied_hours"] == 1.0
    everything = await ask(analytics, "/analytics/usage", "admin", **DAY)
    assert everything.json()["sites"] == ["site-1", "site-2"]
    assert everything.json()["total"]["occupied_hours"] == 2.5
    assert everything.json()["total"]["time_utilisation"] == round(2.5 / (3 * 24), 4)
    revenue = await ask(analytics, "/analytics/revenue", "operator_2", **DAY)
    assert revenue.json()["periods"] == []  # site-1's invoice is not theirs
    assert (await ask(analytics, "/analytics/usage", "driver_a", **DAY)).status_code == 403
    assert (await ask(analytics, "/analytics/usage", "technician_1", **DAY)).status_code == 403


async def test_the_default_range_is_the_last_30_days(analytics: Analytics) -> None:
    body = (await ask(analytics, "/analytics/usage")).json()
    start, end = datetime.fromisoformat(body["start"]), datetime.fromisoformat(body["end"])
    assert end - start == timedelta(days=30)
    assert abs(end - datetime.now(UTC)) < timedelta(minutes=1)


async def test_reports_come_as_csv_when_asked(analytics: Analytics) -> None:
    answer = await ask(analytics, "/analytics/revenue", "operator_1", accept="text/csv", **DAY)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    header, row = answer.text.strip().splitlines()
    assert header.split(",")[:4] == ["site_id", "currency", "period", "component_parking"]
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert (values["site_id"], values["currency"], values["period"]) == ("site-1", "EUR", "2026-03-10")
    assert Decimal(values["total"]) == Decimal("2.98")
    usage = await ask(analytics, "/analytics/usage", "admin", accept="text/csv", site_id="site-1", **DAY)
    lines = usage.text.strip().splitlines()
    assert lines[0].startswith("period,stays,") and lines[-1].startswith("total,1,")
    peaks = await ask(analytics, "/analytics/peak-hours", "admin", site_id="site-1", **DAY)
    assert [(c["weekday"], c["hour"], c["occupied_hours"]) for c in peaks.json()["cells"]] == [
        (2, 8, 1.0), (2, 9, 0.5)]  # 2026-03-10 is a Tuesday


async def test_health_goes_through_the_gateway_while_metrics_stays_prometheus(analytics: Analytics,
                                                                              tmp_path: Path) -> None:
    app = analytics.app
    settings = CloudSettings(data_dir=tmp_path, database_url="", amqp_url="")

    class ToAnalytics(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.port != settings.port_of("analytics"):
                raise httpx.ConnectError("only analytics runs here")
            return await httpx.ASGITransport(app=app).handle_async_request(request)

    gateway = build_gateway(settings, cache=MemoryCache(), verifier=verifier(), transport=ToAnalytics())
    async with gateway.router.lifespan_context(gateway), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="http://gw") as client:
        assert (await client.get("/metrics/health")).status_code == 401
        seen = await client.get("/metrics/health", headers=headers("operator_1"))
        assert seen.status_code == 200, seen.text
        sites = {s["site_id"]: s for s in seen.json()["sites"]}
        assert list(sites) == ["site-1"]  # only the operator's site
        assert (sites["site-1"]["chargers_offline"], sites["site-1"]["chargers_faulted"]) == (["cp-1"], ["cp-2"])
        admin = (await client.get("/metrics/health", headers=headers("admin"))).json()
        assert {s["site_id"]: s["edge"] for s in admin["sites"]} == {"site-1": "unknown", "site-2": "offline"}
        assert {s["service"] for s in admin["services"]} >= {"accounts", "charging", "parking", "payments"}
        prometheus = await client.get("/metrics")
        assert prometheus.status_code == 200 and "evpark_" in prometheus.text  # the gateway's own, no token
    own = await analytics.client.get("/metrics")
    assert own.status_code == 200 and "# TYPE" in own.text
