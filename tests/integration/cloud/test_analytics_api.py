"""The analytics API: ranges and granularity checked with problems naming the field, every report for
the caller's sites only (another's is a 404), CSV on ``Accept: text/csv``, vehicle types by type, make
and battery band as the vehicle events say, and ``GET /metrics/health`` through the gateway while
``/metrics`` stays the Prometheus page. Both run modes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.contracts import Event
from cloud.contracts.charging import ChargerFaulted, ChargerOffline
from cloud.contracts.parking import Arrived, InventoryChanged, Released, SiteOffline
from cloud.contracts.payments import InvoiceIssued
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.gateway.app import build_app as build_gateway
from cloud.platform.cache import MemoryCache
from cloud.platform.settings import CloudSettings
from evpark.analytics_cli import rebuild
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


def registered(vehicle_id: str, kind: str = "electric", make: str | None = None,
               battery: str | None = None) -> Event:
    body = VehicleRegistered(vehicle_id=vehicle_id, plate=vehicle_id.upper(), id_tags=[], owner_id="acc-driver-a",
                             type=kind, make=make, battery_kwh=None if battery is None else Decimal(battery))
    return Event.of(body, source="vehicles", occurred_at=at("07:00"))


REGISTERED = [
    registered("v-zoe", make="Renault", battery="52.0"),
    registered("v-kia1", make="Kia", battery="77.4"), registered("v-kia2", make="Kia", battery="77.4"),
    registered("v-kia3", make="kia ", battery="64.0"),  # one make with the Kias
    registered("v-phev", "plug_in_hybrid", "Mitsubishi", "13.8"),
    registered("v-tesla", make="Tesla", battery="100"),  # a band's lower bound is in it
    registered("v-bare"),  # neither make nor battery
    registered("v-ice", "combustion", "Fiat"),
    # from a registry before 1.3: no make, no battery
    Event(name="vehicle.registered", version="1.2", source="vehicles", occurred_at=at("07:00"),
          payload={"vehicle_id": "v-old", "plate": "OLD 1", "id_tags": [], "owner_id": "acc-driver-a",
                   "type": "hybrid"}),
]
VISITS = [
    Arrived(**stay("st-v1", "b1", "ev", "08:00", vehicle_id="v-zoe")),
    Arrived(**stay("st-v2", "b1", "ev", "14:00", vehicle_id="v-zoe")),  # twice: one vehicle
    Arrived(**stay("st-v3", "r1", "regular", "09:00", vehicle_id="v-ice")),
    Arrived(**stay("st-v4", "r2", "regular", "10:00", vehicle_id="v-stranger")),  # never registered
    Arrived(**{**stay("st-v5", "b9", "ev", "11:00", vehicle_id="v-tesla"), "site_id": "site-2"}),
    Arrived(**{**stay("st-v6", "b1", "ev", "08:00", vehicle_id="v-kia1"), "arrived_at": at("08:00", day=9)}),
]
CHANGES = [  # the Zoe becomes a Dacia Spring; the Fiat is deleted
    Event.of(VehicleUpdated(vehicle_id="v-zoe", plate="V-ZOE", id_tags=[], owner_id="acc-driver-a",
                            type="electric", version=2, make="Dacia", model="Spring", battery_kwh=Decimal("26.8")),
             source="vehicles", occurred_at=at("12:00")),
    Event.of(VehicleDeleted(vehicle_id="v-ice", plate="V-ICE", id_tags=[], owner_id="acc-driver-a",
                            type="combustion"), source="vehicles", occurred_at=at("12:30")),
]
BANDS_AT_0 = {"<30": 0, "30-50": 0, "50-75": 0, "75-100": 0, ">=100": 0}


async def test_vehicle_types_count_registered_and_visiting_vehicles_by_type_make_and_battery(
        analytics: Analytics) -> None:
    async def types(who: str = "admin") -> dict[str, Any]:
        answer = await ask(analytics, "/analytics/vehicle-types", who, **DAY)
        assert answer.status_code == 200, answer.text
        return {k: answer.json()[k] for k in ("registered", "visiting")}

    before = await analytics.logged()
    await analytics.send(REGISTERED)
    await analytics.publish(list(VISITS))
    await eventually(lambda: analytics.logged_is(before + len(REGISTERED) + len(VISITS)), what="vehicles logged")
    first = (await types())["registered"]
    assert first == {
        "vehicles": 9,
        "by_type": {"electric": 6, "combustion": 1, "hybrid": 1, "plug_in_hybrid": 1},
        "by_make": {"Kia": 3, "Fiat": 1, "Mitsubishi": 1, "Renault": 1, "Tesla": 1, "unknown": 2},
        "by_battery": {**BANDS_AT_0, "<30": 1, "50-75": 2, "75-100": 2, ">=100": 1, "none": 1, "unknown": 2}}
    assert list(first["by_make"]) == ["Kia", "Fiat", "Mitsubishi", "Renault", "Tesla", "unknown"]
    assert list(first["by_battery"]) == [*BANDS_AT_0, "none", "unknown"]

    await analytics.send(CHANGES)
    await eventually(lambda: analytics.logged_is(before + len(REGISTERED) + len(VISITS) + len(CHANGES)),
                     what="the update and the deletion logged")
    expected = {
        "registered": {
            "vehicles": 8,
            "by_type": {"electric": 6, "hybrid": 1, "plug_in_hybrid": 1},
            "by_make": {"Kia": 3, "Dacia": 1, "Mitsubishi": 1, "Tesla": 1, "unknown": 2},
            "by_battery": {**BANDS_AT_0, "<30": 2, "50-75": 1, "75-100": 2, ">=100": 1, "unknown": 2}},
        "visiting": {  # the Zoe (twice), the deleted Fiat, a stranger at site-1; the Tesla at site-2
            "vehicles": 4,
            "by_type": {"electric": 2, "combustion": 1, "unknown": 1},
            "by_make": {"Dacia": 1, "Fiat": 1, "Tesla": 1, "unknown": 1},
            "by_battery": {**BANDS_AT_0, "<30": 1, ">=100": 1, "none": 1, "unknown": 1}},
    }
    assert await types() == expected
    mine = await types("operator_1")  # site-1 only; registered vehicles are every site's
    assert mine == {"registered": expected["registered"], "visiting": {
        "vehicles": 3, "by_type": {"combustion": 1, "electric": 1, "unknown": 1},
        "by_make": {"Dacia": 1, "Fiat": 1, "unknown": 1},
        "by_battery": {**BANDS_AT_0, "<30": 1, "none": 1, "unknown": 1}}}

    assert await rebuild(analytics.url) == await analytics.logged()
    assert await types() == expected

    answer = await ask(analytics, "/analytics/vehicle-types", "operator_1", accept="text/csv", **DAY)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.strip().splitlines()
    assert lines[0] == "population,dimension,group,vehicles"
    assert {"registered,make,Kia,3", "registered,battery_kwh,<30,2", "registered,battery_kwh,30-50,0",
            "visiting,type,combustion,1", "visiting,make,unknown,1", "visiting,battery_kwh,none,1"} <= set(lines)
    assert len(lines) == 1 + (3 + 5 + 6) + (3 + 3 + 7)


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
