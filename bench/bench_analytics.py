"""Analytics over a year of a busy network: one million stays and one million charging sessions (with
their events in ``event_logs`` and their contributions in the rollups) in real PostgreSQL, then each
endpoint asked for a one-year range, by an operator of one site and by the admin (every site).

Loading: the events are generated in this process, their rollup contributions computed with the
service's own rules (``cloud.analytics.domain``, the same functions the consumer and the rebuild
use) and everything written with PostgreSQL ``COPY`` (asyncpg ``copy_records_to_table``), beside 50,000
registered vehicles (type, make, battery size), each visitor's first and last arrival per site
(``analytics_visitors``, and network-wide with each vehicle's type, make and battery:
``analytics_network_visitors``) and the sites' bays, chargers and maximum power; the local daily and peak
rollups (``usage_daily``, ``usage_peak``) are derived from the hourly rows with the service's own SQL
(``cloud.analytics.repository.derive_sql``), and every site's together (``usage_network``). Measured:
p50 / p95 of each endpoint over ``--requests`` calls through the service's ASGI app, beside the same
app's ``GET /health`` as a baseline in the same run, with the median CPU time of this process per
request (the app's Python, not PostgreSQL's) and the load average at the end: on a shared machine the
wall times follow the load. Target (issue 20): each under 200 ms p95.

    .venv/bin/python bench/bench_analytics.py                    # 1,000,000 stays and sessions
    .venv/bin/python bench/bench_analytics.py --stays 100000 --requests 20
    .venv/bin/python bench/bench_analytics.py --keep             # load once, then measure in about a minute

Without ``--keep`` every run loads a fresh database and drops it at the end. With ``--keep`` the
loaded database stays, named ``evpark_bench_kept_analytics``, with a fingerprint of what was loaded
(``--stays``, the seeds, sites, bays, vehicles and the generator's version, in its table
``bench_fingerprint``): a later ``--keep`` run whose fingerprint matches skips the load (about 9
minutes at one million stays), brings the schema to the newest migration (a new one fills its
tables from the data there, as on a real upgrade) and measures; one that does not match drops it
and loads again. ``--drop`` drops the kept database and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import httpx

from cloud.analytics import SPEC, domain
from cloud.analytics.app import build_app
from cloud.analytics.domain import RevenueDelta, SessionOutcome, UsageDelta
from cloud.analytics.repository import COUNT_VEHICLES_SQL, NETWORK_SQL, NETWORK_VISITORS_SQL, derive_sql
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.settings import CloudSettings
from tests.support import services
from tests.support.identity import headers, trust_test_tokens

YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
SITES = [f"site-{n}" for n in range(1, 21)]
BAYS_PER_SITE = 60
CHARGERS_PER_SITE = 20
CHARGER_POWER_W = 22_000
VEHICLES = 50_000
MAKES = ("Tesla", "Volkswagen", "BMW", "Renault", "Hyundai", "Kia", "Mercedes-Benz", "Audi", "Volvo", "Skoda",
         "Peugeot", "Fiat", "BYD", "Polestar", "Nissan", "Ford")
PG = "postgresql://postgres@127.0.0.1:5432"
KEPT = "evpark_bench_kept"
"""The kept database's name (``--keep``), before the service suffix."""
GENERATOR_VERSION = 1
"""Raise when :func:`generate` or :func:`vehicles` change what they load: a kept load no longer matches."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def vehicles(seed: int = 21) -> list[tuple]:  # type: ignore[type-arg]
    """The registered vehicles: electric and plug-in hybrid by turns, a make (as drivers spell it, in any
    case) and a battery size (a plug-in hybrid's small, an electric car's 40-110 kWh; some not given)."""
    rnd = random.Random(seed)
    out = []
    for n in range(VEHICLES):
        kind = ("electric", "plug_in_hybrid")[n % 2]
        make = rnd.choice(MAKES)
        make = make.upper() if n % 17 == 0 else make
        kwh = rnd.randrange(8, 25) if kind == "plug_in_hybrid" else rnd.randrange(40, 111)
        battery_wh = None if n % 23 == 0 else kwh * 1000
        out.append((f"veh-{n}", kind, make if n % 29 else None, battery_wh, True, YEAR_START))
    return out


def generate(stays: int, seed: int = 20) -> tuple[list[tuple], UsageDelta, RevenueDelta,  # type: ignore[type-arg]
                                                  dict[tuple[str, str], list[datetime]]]:
    """Event-log rows (arrived, released, charging.completed, invoice), the rollups they give, and each
    visitor's first and last arrival per site."""
    rnd = random.Random(seed)
    rows: list[tuple] = []  # type: ignore[type-arg]
    usage, revenue = UsageDelta(), RevenueDelta()
    visitors: dict[tuple[str, str], list[datetime]] = {}
    logged_at = datetime.now(UTC)
    year_s = 365 * 24 * 3600
    utc = domain.zone("UTC")
    for n in range(stays):
        site = SITES[n % len(SITES)]
        arrived = YEAR_START + timedelta(seconds=rnd.randrange(year_s - 86_400))
        departed = arrived + timedelta(seconds=rnd.randrange(600, 4 * 3600))
        started = arrived + timedelta(seconds=60)
        stopped = min(departed, started + timedelta(seconds=rnd.randrange(300, 3 * 3600)))
        wh = rnd.randrange(0, 40_000)
        stay_id, session_id, vehicle = f"st-{n}", f"ses-{n}", f"veh-{n % VEHICLES}"
        base = {"site_id": site, "bay_id": f"b{n % BAYS_PER_SITE}", "bay_type": "ev", "stay_id": stay_id,
                "slot_id": f"{site}:b{n % BAYS_PER_SITE}", "arrived_at": arrived.isoformat(), "vehicle_id": vehicle}
        completed = {"session_id": session_id, "site_id": site, "transaction_id": n, "charger_id": f"cp{n % 20}",
                     "started_at": started.isoformat(), "stopped_at": stopped.isoformat(), "energy_wh": wh,
                     "stop_reason": "Local"}
        duration = int((departed - arrived).total_seconds())
        released = {**base, "departed_at": departed.isoformat(), "duration_s": duration,
                    "session_ids": [session_id]}
        parking, energy = Decimal(rnd.randrange(100, 900)) / 100, (Decimal(wh) * Decimal("0.35") / 1000).quantize(
            Decimal("0.01"))
        net = parking + energy
        tax = (net * Decimal("0.19")).quantize(Decimal("0.01"))
        invoice = {"site_id": site, "account_id": "acc", "currency": "EUR", "number": f"{site}-{n}",
                   "issued_at": departed.isoformat(), "components": {"parking": str(parking), "energy": str(energy)},
                   "net": str(net), "tax": str(tax), "total": str(net + tax), "invoice_id": f"inv-{n}"}
        for name, at, subject, related, body in (
                ("parking.arrived", arrived, stay_id, vehicle, base),
                ("charging.completed", stopped, session_id, None, completed),
                ("parking.released", departed, stay_id, session_id, released),
                ("payment.invoice_issued", departed, f"inv-{n}", None, invoice)):
            rows.append((str(uuid.UUID(int=rnd.getrandbits(128))), name, "1.0", at, site, subject, related,
                         json.dumps(body, separators=(",", ":")), logged_at))
        seen = visitors.setdefault((site, vehicle), [arrived, arrived])
        seen[0], seen[1] = min(seen[0], arrived), max(seen[1], arrived)
        usage.add(site, "ev", arrived, stays=1)
        usage.spread(site, "ev", "occupied_s", arrived, departed)
        usage.add(site, "ev", started, sessions=1, energy_wh=wh)
        usage.spread(site, "ev", "charging_s", started, stopped)
        usage.absorb(domain.first_attempt(site, "ev", arrived, SessionOutcome(wh, "Local"), False))
        revenue.absorb(domain.document_revenue("invoice", site, "EUR", departed, utc,
                                               {"parking": parking, "energy": energy}, net, tax, net + tax))
    return rows, usage, revenue, visitors


async def load(url: str, stays: int) -> float:
    started = time.perf_counter()
    rows, usage, revenue, visitors = generate(stays)
    generated = time.perf_counter() - started
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("analytics_sites", records=[
            (site, "UTC", BAYS_PER_SITE, CHARGERS_PER_SITE, CHARGERS_PER_SITE * CHARGER_POWER_W,
             YEAR_START + timedelta(days=365)) for site in SITES],
            columns=["site_id", "time_zone", "bays", "chargers", "max_power_w", "last_event_at"])
        for chunk in range(0, len(rows), 200_000):
            await conn.copy_records_to_table("event_logs", records=rows[chunk:chunk + 200_000], columns=[
                "event_id", "name", "version", "occurred_at", "site_id", "subject", "related", "payload", "logged_at"])
        await conn.copy_records_to_table("usage_metrics", records=[
            (site, bay_type, hour, *(row[f] for f in domain.USAGE_FIELDS))
            for (site, bay_type, hour), row in usage.rows.items()],
            columns=["site_id", "bay_type", "hour", *domain.USAGE_FIELDS])
        for statement in derive_sql():  # usage_daily and usage_peak, as the service keeps them
            await conn.execute(statement)
        await conn.execute(NETWORK_SQL)  # usage_network, likewise
        await conn.copy_records_to_table("revenue_metrics", records=[
            (*key, int(amount * 10_000), revenue.documents.get(key, 0)) for key, amount in revenue.rows.items()],
            columns=["site_id", "currency", "day", "kind", "component", "amount_e4", "documents"])
        await conn.copy_records_to_table("analytics_vehicles", records=vehicles(), columns=[
            "vehicle_id", "type", "make", "battery_wh", "registered", "version_at"])
        await conn.execute(COUNT_VEHICLES_SQL)  # their registered counts, as the service keeps them
        await conn.copy_records_to_table("analytics_visitors", records=[
            (site, vehicle, first, last) for (site, vehicle), (first, last) in visitors.items()],
            columns=["site_id", "vehicle_id", "first_at", "last_at"])
        await conn.execute(NETWORK_VISITORS_SQL)  # each visitor once with its vehicle, as the service keeps them
        await conn.execute("VACUUM ANALYZE")  # as autovacuum would after a load: index-only scans
    finally:
        await conn.close()
    took = time.perf_counter() - started
    print(f"loaded {stays:,} stays and {stays:,} sessions ({len(rows):,} events, {len(usage.rows):,} usage rows, "
          f"{len(revenue.rows):,} revenue rows, {len(visitors):,} visitors of {VEHICLES:,} registered vehicles) "
          f"in {took:.1f} s (generating {generated:.1f} s)")
    return took


async def measure(url_template: str, data_dir: Path, requests: int) -> None:
    settings = CloudSettings(database_url=url_template, amqp_url="", data_dir=data_dir, migrate_on_start=False)
    app = build_app(settings, cache=MemoryCache())
    year = {"from": YEAR_START.isoformat(), "to": (YEAR_START + timedelta(days=365)).isoformat()}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://a", timeout=120) as client:
        trust_test_tokens(app)

        async def timed(path: str, who: str, query: dict[str, str]) -> tuple[float, float, float]:
            """p50 and p95 of the wall time, and p50 of this process's CPU time (the app and the client:
            what a busy machine does not inflate, PostgreSQL's own work aside), in ms."""
            auth = headers(who)
            answer = await client.get(path, params=query, headers=auth)  # warm up
            assert answer.status_code == 200, answer.text
            took, cpu = [], []
            for _ in range(requests):
                start, start_cpu = time.perf_counter(), time.process_time()
                answer = await client.get(path, params=query, headers=auth)
                took.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                assert answer.status_code == 200, answer.text
            return _percentile(took, 0.5) * 1000, _percentile(took, 0.95) * 1000, _percentile(cpu, 0.5) * 1000

        p50, p95, cpu = await timed("/health", "admin", {})
        print(f"{'GET /health (baseline)':<58} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  (cpu p50 {cpu:6.1f} ms)")
        for path, extra in (("/analytics/usage", {"granularity": "day"}), ("/analytics/usage", {"granularity": "hour"}),
                            ("/analytics/revenue", {"granularity": "month"}), ("/analytics/peak-hours", {}),
                            ("/analytics/vehicle-types", {}), ("/metrics/health", {})):
            for who, scope in (("operator_1", {"site_id": "site-1"}), ("admin", {})):
                query = {**(year if path != "/metrics/health" else {}), **extra, **scope}
                p50, p95, cpu = await timed(path, who, query)
                label = f"GET {path} {' '.join(f'{k}={v}' for k, v in extra.items())} ({who})"
                mark = "" if p95 < 200 else "  over the 200 ms target"
                print(f"{label:<58} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  (cpu p50 {cpu:6.1f} ms){mark}")
        print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())} (1, 5, 15 min) on {os.cpu_count()} cores")


def fingerprint(stays: int) -> str:
    """What a load holds: a kept database is reused only when this matches."""
    return json.dumps({"stays": stays, "generator": GENERATOR_VERSION, "seeds": [20, 21], "sites": len(SITES),
                       "bays": BAYS_PER_SITE, "chargers": CHARGERS_PER_SITE, "power_w": CHARGER_POWER_W,
                       "vehicles": VEHICLES, "year": YEAR_START.isoformat()}, sort_keys=True)


async def kept_fingerprint(name: str) -> str | None:
    """The fingerprint of the kept database ``name``; None when there is none (or no finished load)."""
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return None
    finally:
        await conn.close()
    conn = await asyncpg.connect(f"{PG}/{name}")
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_fingerprint') IS NOT NULL"):
            return None
        return await conn.fetchval("SELECT fingerprint FROM bench_fingerprint")  # type: ignore[no-any-return]
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main(stays: int, requests: int, keep: bool) -> None:
    services.require("PostgreSQL", services.POSTGRES)
    name = KEPT if keep else services.fresh_name("evpark_bench_")
    database = f"{name}_analytics"
    template = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}_{{service}}"
    wanted = fingerprint(stays)
    reuse = keep and await kept_fingerprint(database) == wanted
    if keep and not reuse:
        await drop_database(database)  # another load, or one that did not finish
    db = Database(template.replace("{service}", "analytics"))
    await db.connect()
    try:
        assert SPEC.migrations is not None
        await db.migrate(SPEC.migrations)  # on a kept load: only the migrations newer than it
        await db.close()
        if reuse:
            print(f"reusing the kept load in {database} ({stays:,} stays and sessions): load skipped")
            conn = await asyncpg.connect(f"{PG}/{database}")
            try:
                await conn.execute("ANALYZE")  # tables a newer migration filled
            finally:
                await conn.close()
        else:
            await load(f"{PG}/{database}", stays)
            if keep:
                conn = await asyncpg.connect(f"{PG}/{database}")
                try:
                    await conn.execute("CREATE TABLE bench_fingerprint (fingerprint text NOT NULL)")
                    await conn.execute("INSERT INTO bench_fingerprint VALUES ($1)", wanted)
                finally:
                    await conn.close()
                print(f"kept as {database} (--keep again to measure without loading)")
        with tempfile.TemporaryDirectory() as folder:
            await measure(template, Path(folder), requests)
    finally:
        await db.close()
        if not keep:
            await drop_database(database)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=1_000_000, help="stays, each with one charging session")
    parser.add_argument("--requests", type=int, default=30, help="requests per endpoint and caller")
    parser.add_argument("--keep", action="store_true", help=f"keep the loaded database ({KEPT}_analytics) and "
                        "reuse it when it holds the same load")
    parser.add_argument("--drop", action="store_true", help="drop the kept database and exit")
    args = parser.parse_args()
    if args.drop:
        asyncio.run(drop_database(f"{KEPT}_analytics"))
    else:
        asyncio.run(main(args.stays, args.requests, args.keep))
