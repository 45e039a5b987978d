"""The rollups on SQLite and PostgreSQL: the same events in any order, some delivered twice, give the
rollups a rebuild from the event log gives; revenue is dated in the site's time zone."""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from cloud.analytics.repository import SqlAnalyticsRepository
from cloud.analytics.service import AnalyticsService
from cloud.contracts import EventBody, Received
from cloud.contracts.charging import ChargingFailed
from cloud.contracts.parking import Arrived, LotConfigured
from cloud.contracts.payments import InvoiceIssued
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.db import Database
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import sql_units_of_work
from tests.integration.cloud.conftest import migrations_of
from tests.integration.cloud.test_analytics_day import DAY_OF_EVENTS, Analytics, at, document, stay
from tests.support.identity import PRINCIPALS

ADMIN = PRINCIPALS["admin"]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.connect()
    await database.migrate(migrations_of("analytics"))
    try:
        yield database
    finally:
        await database.close()


def service(db: Database) -> AnalyticsService:
    return AnalyticsService(sql_units_of_work(Outbox(db, source="analytics", publishes=()), SqlAnalyticsRepository),
                            now=lambda: datetime(2026, 3, 12, tzinfo=UTC))


def envelope(body: EventBody) -> Received[EventBody]:
    return Received(id=uuid.uuid4(), name=body.NAME, version=body.VERSION, occurred_at=Analytics.when(body),
                    source="test", body=body)


def lot(time_zone: str) -> LotConfigured:
    return LotConfigured(site_id="site-1", time_zone=time_zone, arrival_grace_minutes=15, max_stay_minutes=1440,
                         configured_at=datetime(2026, 3, 1, tzinfo=UTC))


async def rollups(db: Database) -> tuple[list[Any], list[Any]]:
    async with db.engine.connect() as conn:
        usage = list((await conn.execute(text("SELECT * FROM usage_metrics ORDER BY site_id, hour, bay_type"))).all())
        usage += (await conn.execute(text("SELECT * FROM usage_network ORDER BY hour, bay_type"))).all()
        revenue = (await conn.execute(text(
            "SELECT * FROM revenue_metrics ORDER BY site_id, day, currency, kind, component"))).all()
        usage += (await conn.execute(text("SELECT * FROM usage_daily ORDER BY site_id, day, bay_type"))).all()
        usage += (await conn.execute(text(
            "SELECT * FROM usage_peak ORDER BY site_id, month, weekday, local_hour"))).all()
    return [tuple(r) for r in usage], [tuple(r) for r in revenue]


async def test_any_order_and_redelivery_give_what_a_rebuild_gives(db: Database) -> None:
    analytics = service(db)
    events = [envelope(body) for body in DAY_OF_EVENTS]
    shuffled = random.Random(7).sample(events, len(events)) + random.Random(8).sample(events, 10)
    for event in shuffled:
        await analytics.on_event(event)
    incremental = await rollups(db)
    assert incremental[0] and incremental[1]
    assert await analytics.rebuild() == len(events)
    assert await rollups(db) == incremental
    usage = await analytics.usage(ADMIN, at("00:00"), at("00:00", day=11), None, "site-1", None)
    assert (usage.total.visits_with_charging, usage.total.first_attempt_success) == (2, 0.5)


async def test_a_fault_reported_after_the_visit_turns_its_first_attempt_into_a_failure(db: Database) -> None:
    analytics = service(db)
    for body in DAY_OF_EVENTS:
        await analytics.on_event(envelope(body))
    await analytics.on_event(envelope(ChargingFailed(site_id="site-1", charger_id="cp-1", reason="charger_faulted",
                                                     session_id="ses-1", failed_at=at("09:00"))))
    usage = await analytics.usage(ADMIN, at("00:00"), at("00:00", day=11), None, "site-1", None)
    assert (usage.total.visits_with_charging, usage.total.first_attempt_success) == (2, 0.0)
    before = await rollups(db)
    await analytics.rebuild()
    assert await rollups(db) == before


async def test_revenue_is_dated_by_the_invoice_date_in_the_site_time_zone(db: Database) -> None:
    analytics = service(db)
    await analytics.on_event(envelope(DAY_OF_EVENTS[0]))  # site-1 becomes known
    await analytics.on_event(envelope(lot("Europe/Berlin")))  # the operator configured the lot
    late = InvoiceIssued(**document("S1-0009", "23:30", "EUR", {"parking": "2.00"}, "0.38", day=9),
                         invoice_id="inv-9")
    await analytics.on_event(envelope(late))
    berlin = [datetime(2026, 3, day, tzinfo=ZoneInfo("Europe/Berlin")) for day in (9, 10, 11)]
    tenth = await analytics.revenue(ADMIN, berlin[1], berlin[2], None, "site-1")
    assert [(p.period, str(p.total)) for p in tenth.periods] == [("2026-03-10", "2.38")]
    ninth = await analytics.revenue(ADMIN, berlin[0], berlin[1], None, "site-1")
    assert ninth.periods == []
    in_utc = await analytics.revenue(ADMIN, at("00:00", day=9), at("00:00"), None, "site-1")
    # Berlin's 10th starts at 23:00 UTC on the 9th, inside this range; its 9th starts before it: a day counts
    # whole, in the range its local start falls in
    assert [p.period for p in in_utc.periods] == ["2026-03-10"]
    await analytics.rebuild()
    again = await analytics.revenue(ADMIN, berlin[1], berlin[2], None, "site-1")
    assert again == tenth


async def test_usage_and_peak_hours_are_bucketed_in_the_site_time_zone(db: Database) -> None:
    analytics = service(db)
    for body in DAY_OF_EVENTS:
        await analytics.on_event(envelope(body))
    await analytics.on_event(envelope(lot("Asia/Tokyo")))  # UTC+9: 16:05 UTC is 01:05 on the 11th
    tokyo = [datetime(2026, 3, day, tzinfo=ZoneInfo("Asia/Tokyo")) for day in (10, 11, 12)]
    by_day = await analytics.usage(ADMIN, tokyo[0], tokyo[2], "day", "site-1", None)
    assert {p.period: p.energy_wh for p in by_day.periods} == {"2026-03-10": 12_500, "2026-03-11": 50}
    assert [p.time_utilisation is not None for p in by_day.periods] == [True, True]
    by_week = await analytics.usage(ADMIN, tokyo[0], tokyo[2], "week", "site-1", None)
    assert [(p.period, p.stays) for p in by_week.periods] == [("2026-W11", 4)]
    peaks = await analytics.peak_hours(ADMIN, tokyo[0], tokyo[2], "site-1")
    energy = {(c.weekday, c.hour): c.energy_kwh for c in peaks.cells if c.energy_kwh}
    assert energy == {(2, 17): 12.5, (3, 1): 0.05}  # Tuesday 17:10 and Wednesday 01:05 in Tokyo


def arrival(vehicle_id: str, hhmm: str, day: int, site_id: str = "site-1") -> Arrived:
    return Arrived(**{**stay(f"st-{vehicle_id}-{day}-{hhmm}-{site_id}", "b1", "ev", hhmm, vehicle_id=vehicle_id),
                      "arrived_at": at(hhmm, day=day), "site_id": site_id})


VISITS = [
    arrival("v-around", "09:00", 8), arrival("v-around", "09:00", 12),  # before and after the 10th only
    arrival("v-both", "09:00", 8), arrival("v-both", "12:00", 10), arrival("v-both", "09:00", 12),
    arrival("v-two-sites", "10:00", 10), arrival("v-two-sites", "11:00", 10, site_id="site-2"),
    arrival("v-midnight", "00:00", 10),  # the range's first instant: in
    arrival("v-next-day", "00:00", 11),  # the range's end: out
    arrival("v-before", "23:59", 9),
]


async def visitors_table(db: Database, table: str = "analytics_visitors") -> list[Any]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))).all()
    return [tuple(r) for r in rows]


async def test_visitors_of_a_range_are_the_vehicles_that_arrived_in_it_whatever_came_before_or_after(
        db: Database) -> None:
    analytics = service(db)
    # v-both and v-two-sites are registered, v-two-sites then changed: whichever comes first, the
    # network's visitors count by what each vehicle is now
    vehicles = [
        Received(id=uuid.uuid4(), name=body.NAME, version=body.VERSION, source="vehicles", body=body,
                 occurred_at=datetime(2026, 3, 1, minute, tzinfo=UTC)) for minute, body in enumerate([
                     VehicleRegistered(vehicle_id="v-both", plate="B 1", id_tags=[], type="electric", make="Kia",
                                       battery_kwh=Decimal("64")),
                     VehicleRegistered(vehicle_id="v-two-sites", plate="T 2", id_tags=[], type="combustion"),
                     VehicleUpdated(vehicle_id="v-two-sites", plate="T 2", id_tags=[], type="hybrid", version=2,
                                    make="Toyota")])]
    events = [envelope(body) for body in VISITS]
    for event in random.Random(3).sample([*events, *vehicles], len(events) + 3) + events[:3]:  # any order, some twice
        await analytics.on_event(event)
    answer = await analytics.vehicle_types(ADMIN, at("00:00"), at("00:00", day=11), None)
    assert answer.visiting.vehicles == 3  # v-both, v-two-sites (once), v-midnight
    assert (answer.visiting.by_type, answer.visiting.by_make) == (
        {"electric": 1, "hybrid": 1, "unknown": 1}, {"Kia": 1, "Toyota": 1, "unknown": 1})
    by_site = await analytics.vehicle_types(ADMIN, at("00:00"), at("00:00", day=11), "site-1")
    assert by_site.visiting == answer.visiting, "every site's visitors as one site's: site-2's are site-1's too"
    mine = await analytics.vehicle_types(ADMIN, at("00:00"), at("00:00", day=11), "site-2")
    assert mine.visiting.vehicles == 1
    wider = await analytics.vehicle_types(ADMIN, at("00:00", day=8), at("00:00", day=13), None)
    assert wider.visiting.vehicles == 6
    around = await analytics.vehicle_types(ADMIN, at("00:00", day=9), at("00:00", day=10), None)
    assert around.visiting.vehicles == 1  # v-before (v-around and v-both came before and after only)
    incremental = await visitors_table(db)
    assert len(incremental) == 7
    network = await visitors_table(db, "analytics_network_visitors")
    assert len(network) == 6

    assert await analytics.rebuild() == len(events) + len(vehicles)
    assert await visitors_table(db) == incremental
    assert await visitors_table(db, "analytics_network_visitors") == network
    assert await analytics.vehicle_types(ADMIN, at("00:00"), at("00:00", day=11), None) == answer


@pytest.mark.parametrize("time_zone", ["Asia/Tokyo", "Asia/Kolkata"])  # UTC+9; +5:30, its days start on :30
async def test_days_weeks_months_and_peak_hours_sum_the_same_hours_whatever_the_range(db: Database,
                                                                                       time_zone: str) -> None:
    # Whole local days and months come from usage_daily / usage_peak, the hours before and after them
    # from usage_metrics: every range gives the sums of its hours, as the report by hour shows them.
    analytics = service(db)
    await analytics.on_event(envelope(lot(time_zone)))
    for body in DAY_OF_EVENTS:
        await analytics.on_event(envelope(body))
    tz = ZoneInfo(time_zone)
    ranges = [(datetime(2026, 3, 10, tzinfo=tz), datetime(2026, 3, 12, tzinfo=tz)),  # whole local days
              (at("08:30"), at("16:00")), (at("09:00"), datetime(2026, 3, 11, 1, 30, tzinfo=tz)),  # within a day
              (datetime(2026, 2, 15, 13, tzinfo=UTC), datetime(2026, 4, 2, 5, tzinfo=UTC)),  # a whole month inside
              (datetime(2026, 3, 1, tzinfo=tz), datetime(2026, 4, 1, tzinfo=tz))]  # the local month exactly
    names = ("stays", "charging_sessions", "energy_wh", "reservations", "no_shows", "visits_with_charging")
    for start, end in ranges:
        hourly = await analytics.usage(ADMIN, start, end, "hour", "site-1", None)
        assert hourly.total.energy_wh > 0, (start, end)
        for granularity, label in (("day", lambda p: p[:10]),
                                   ("week", lambda p: "{}-W{:02d}".format(*datetime.fromisoformat(p).isocalendar())),
                                   ("month", lambda p: p[:7])):
            expected: dict[str, dict[str, int]] = {}
            for period in hourly.periods:
                into = expected.setdefault(label(period.period), dict.fromkeys(names, 0))
                for name in names:
                    into[name] += getattr(period, name)
            report = await analytics.usage(ADMIN, start, end, granularity, "site-1", None)
            got = {p.period: {n: getattr(p, n) for n in names} for p in report.periods}
            assert got == {k: v for k, v in expected.items() if any(v.values())}, (start, end, granularity)
        cells: dict[tuple[int, int], list[int]] = {}
        for period in hourly.periods:
            local = datetime.fromisoformat(period.period)
            cell = cells.setdefault((local.isoweekday(), local.hour), [0, 0])
            cell[0] += period.charging_sessions
            cell[1] += period.energy_wh
        peaks = await analytics.peak_hours(ADMIN, start, end, "site-1")
        assert {(c.weekday, c.hour): [c.sessions, round(c.energy_kwh * 1000)] for c in peaks.cells
                if c.sessions or c.energy_kwh} == {k: v for k, v in cells.items() if any(v)}, (start, end)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite's hours are labelled in Python
@pytest.mark.parametrize("time_zone", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"])
async def test_postgresql_labels_each_hour_as_the_report_by_hour_does(db: Database, time_zone: str) -> None:
    hours = [datetime(2026, 3, 28, tzinfo=UTC) + n * (datetime(2026, 1, 1, 1) - datetime(2026, 1, 1))
             for n in range(24 * 3)] + [datetime(2026, 10, 25, h, tzinfo=UTC) for h in range(24)]  # both DST switches
    async with db.engine.begin() as conn:
        for n, hour in enumerate(hours):
            await conn.execute(text("INSERT INTO usage_metrics (site_id, bay_type, hour, stays) "
                                    "VALUES ('site-1', 'ev', :hour, :n)"), {"hour": hour, "n": n + 1})
    async with service(db)._units() as uow:
        rows = await uow.repo.usage_by_hour(["site-1"], hours[0], datetime(2026, 11, 1, tzinfo=UTC),
                                            labelled_in=time_zone)
        written = await uow.repo.usage_by_hour_written(["site-1"], hours[0], datetime(2026, 11, 1, tzinfo=UTC),
                                                       None, time_zone)
    tz = ZoneInfo(time_zone)
    expected = {hour.astimezone(tz).isoformat(timespec="minutes"): n + 1 for n, hour in enumerate(hours)}
    assert {row["label"]: row["stays"] for row in rows} == expected
    assert written is not None
    heads = [json.loads(f"{head}0}}") for head in written.heads]  # each the start of a period's JSON
    assert {head["period"]: head["stays"] for head in heads} == expected


async def test_a_usage_report_is_written_out_as_its_validated_model_would_be(db: Database) -> None:
    analytics = service(db)
    for body in [*DAY_OF_EVENTS, lot("Europe/Berlin")]:
        await analytics.on_event(envelope(body))
    for granularity in ("hour", "day", "month"):
        report = await analytics.usage(ADMIN, at("00:00"), at("00:00", day=12), granularity, None, None)
        assert report.periods and report.model_dump_json() == report.model.model_dump_json(), granularity


async def test_the_registered_counts_follow_the_vehicles_whatever_order_their_events_come_in(db: Database) -> None:
    def sent(body: EventBody, minute: int) -> Received[EventBody]:
        return Received(id=uuid.uuid4(), name=body.NAME, version=body.VERSION, source="test", body=body,
                        occurred_at=datetime(2026, 3, 10, 8, minute, tzinfo=UTC))

    events = [
        sent(VehicleRegistered(vehicle_id="v-1", plate="A 1", id_tags=[], type="electric", make="Kia",
                               battery_kwh=Decimal("64")), 0),
        sent(VehicleUpdated(vehicle_id="v-1", plate="A 1", id_tags=[], type="electric", version=2, make="KIA",
                            battery_kwh=Decimal("77.4")), 5),
        sent(VehicleRegistered(vehicle_id="v-2", plate="B 2", id_tags=[], type="combustion"), 1),
        sent(VehicleDeleted(vehicle_id="v-2", plate="B 2", id_tags=[], type="combustion"), 9),
        sent(VehicleRegistered(vehicle_id="v-3", plate="C 3", id_tags=[], type="hybrid", make="Kia"), 2),
    ]
    for order in (events, [events[3], events[1], events[4], events[0], events[2]]):  # a delete first, then older
        async with db.engine.begin() as conn:
            for table in ("analytics_vehicles", "analytics_vehicle_counts", "inbox", "event_logs"):
                await conn.execute(text(f"DELETE FROM {table}"))
        analytics = service(db)
        for event in order:
            await analytics.on_event(event)
        async with analytics._units() as uow:
            groups = sorted((g.kind, g.make, g.battery_wh, g.vehicles) for g in await uow.repo.registered_vehicles())
        assert groups == [("electric", "KIA", 77_400, 1), ("hybrid", "Kia", None, 1)], order


@pytest.mark.parametrize("time_zone", ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/St_Johns"])
async def test_a_report_by_hour_is_written_as_the_python_periods_whichever_rows_it_reads(
        db: Database, time_zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # On PostgreSQL, with one time zone, the periods are written from PostgreSQL's columns (an admin's
    # from usage_network, every site's sums): the same JSON as the periods computed one by one in Python.
    analytics = service(db)
    await analytics.on_event(envelope(lot(time_zone)))
    for body in [*DAY_OF_EVENTS, *VISITS]:
        await analytics.on_event(envelope(body))
    ranges = [(at("00:00", day=8), at("00:00", day=13)), (at("08:30"), at("16:01")),
              (datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))]  # Europe's and America's DST
    asked = [(who, site, bay_type, start, end) for who, site in (("admin", None), ("admin", "site-1"),
                                                                 ("operator_1", None))
             for bay_type in (None, "ev", "regular") for start, end in ranges]
    reports = [await analytics.usage(PRINCIPALS[who], start, end, "hour", site, bay_type)
               for who, site, bay_type, start, end in asked]
    written = [report.model_dump_json() for report in reports]
    assert any('"time_utilisation":0.' in report for report in written)
    assert any('"energy_utilisation":0.' in report for report in written)
    assert any(re.search(r'"energy_kwh":"\d+\.\d+"', report) for report in written), "a kWh with a fraction"
    assert any(re.search(r'"idle_minutes":[1-9]', report) for report in written)
    if db.engine.dialect.name == "postgresql":  # the operator's, and every site's in one time zone (UTC)
        assert all(r._periods_json is not None for r, (who, *_) in zip(reports, asked, strict=True)
                   if who == "operator_1" or time_zone == "UTC")

    async def not_written(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(SqlAnalyticsRepository, "usage_by_hour_written", not_written)
    computed = [(await analytics.usage(PRINCIPALS[who], start, end, "hour", site, bay_type)).model_dump_json()
                for who, site, bay_type, start, end in asked]
    for query, mine, theirs in zip(asked, written, computed, strict=True):
        assert mine == theirs, query


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite's reports are computed in Python
@pytest.mark.parametrize("time_zone", ["Europe/Berlin", "America/St_Johns"])
async def test_the_hours_of_a_night_whose_clocks_go_back_are_listed_as_the_python_periods_are(
        db: Database, time_zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # PostgreSQL gives the hours in time order; the periods are listed in label order, in which the hour
    # after the clocks went back (02:00+01:00, 01:30-03:30) comes before the one it repeats
    analytics = service(db)
    await analytics.on_event(envelope(lot(time_zone)))
    hours = [datetime(2026, 10, 24, 20, tzinfo=UTC) + timedelta(hours=n) for n in range(12)]
    hours += [datetime(2026, 10, 31, 20, tzinfo=UTC) + timedelta(hours=n) for n in range(12)]
    async with db.engine.begin() as conn:
        for n, hour in enumerate(hours):
            for table, site in (("usage_metrics", "'site-1', "), ("usage_network", "")):
                await conn.execute(text(f"INSERT INTO {table} ({'site_id, ' if site else ''}bay_type, hour, stays, "
                                        f"occupied_s, energy_wh) VALUES ({site}'ev', :hour, :n, :s, :wh)"),
                                   {"hour": hour, "n": n + 1, "s": 600 * n + 7, "wh": 1_234 * n})
    span = (hours[0], hours[-1] + timedelta(hours=1))
    asked = [("operator_1", None), ("admin", "site-1"), ("admin", None)]
    written = []
    for who, site in asked:
        report = await analytics.usage(PRINCIPALS[who], *span, "hour", site, None)
        assert report._periods_json is not None
        written.append(report.model_dump_json())
    labels = [period["period"] for period in json.loads(written[0])["periods"]]
    assert len(labels) == len(hours) and labels == sorted(labels)

    async def not_written(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(SqlAnalyticsRepository, "usage_by_hour_written", not_written)
    for (who, site), mine in zip(asked, written, strict=True):
        assert mine == (await analytics.usage(PRINCIPALS[who], *span, "hour", site, None)).model_dump_json(), who
