"""Analytics facts ⇄ its tables: the event log, rollup upserts (added to, never overwritten) and the
report queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Date,
    Integer,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from cloud.analytics import domain
from cloud.analytics.domain import (
    PEAK_FIELDS,
    USAGE_FIELDS,
    RevenueDelta,
    SessionOutcome,
    UsageDelta,
    VehicleGroup,
)
from cloud.analytics.models import (
    analytics_network_visitors,
    analytics_sites,
    analytics_vehicle_counts,
    analytics_vehicles,
    analytics_visitors,
    event_logs,
    revenue_metrics,
    system_health,
    usage_daily,
    usage_metrics,
    usage_network,
    usage_peak,
)
from cloud.platform.outbox import Transaction

E4 = Decimal(10_000)


class LoggedEvent(Protocol):
    event_id: str
    name: str
    occurred_at: datetime
    payload: dict[str, Any]


class Logged:
    __slots__ = ("event_id", "name", "occurred_at", "payload")

    def __init__(self, event_id: str, name: str, occurred_at: datetime, payload: dict[str, Any]) -> None:
        self.event_id, self.name, self.occurred_at, self.payload = event_id, name, occurred_at, payload


def _sum(name: str) -> Any:
    """The sum of a usage figure over rows, summed as 4-byte integers: PostgreSQL sums ``bigint`` into
    ``numeric`` (several times slower over a year of every site by hour, and decoded as Decimal), ``int``
    into ``bigint``. One row is one site's bay type in one hour, far below 2^31 in every figure (seconds:
    at most bays x 3,600; Wh: 2 GWh in an hour), so the cast never overflows; the sum is 64-bit."""
    return func.sum(cast(usage_metrics.c[name], Integer)).label(name)


def derive_sql(where: str = "") -> list[str]:
    """PostgreSQL statements filling ``usage_daily`` and ``usage_peak`` from ``usage_metrics`` in each
    site's time zone (``where``: a condition on ``u``, the usage rows; the tables' rows it covers must
    be deleted first). The same sums :func:`cloud.analytics.domain.local_rollups` gives."""
    local = "(u.hour AT TIME ZONE COALESCE(s.time_zone, 'UTC'))"
    source = f"FROM usage_metrics u LEFT JOIN analytics_sites s ON s.site_id = u.site_id {where}"
    return [
        f"INSERT INTO usage_daily (site_id, bay_type, day, {', '.join(USAGE_FIELDS)}) "
        f"SELECT u.site_id, u.bay_type, {local}::date, {', '.join(f'sum(u.{n})' for n in USAGE_FIELDS)} "
        f"{source} GROUP BY 1, 2, 3",
        f"INSERT INTO usage_peak (site_id, month, weekday, local_hour, {', '.join(PEAK_FIELDS)}) "
        f"SELECT u.site_id, date_trunc('month', {local})::date, extract(isodow FROM {local})::int, "
        f"extract(hour FROM {local})::int, {', '.join(f'sum(u.{n})' for n in PEAK_FIELDS)} {source} "
        f"GROUP BY 1, 2, 3, 4"]


def _hour_label(hour: Any, tz: str) -> Any:
    """An hour's label in ``tz`` as PostgreSQL writes it: ``2026-03-30T00:00+02:00``, as Python's
    ``isoformat(timespec="minutes")`` of the local time (a year by hour: 8,760 labels not made in Python)."""
    local = func.timezone(tz, hour)
    minutes = cast(func.extract("epoch", local - func.timezone("UTC", hour)) / 60, Integer)
    sign = case((minutes < 0, "-"), else_="+")
    return func.concat(func.to_char(local, 'YYYY-MM-DD"T"HH24:MI'), sign, _two(func.abs(minutes) // 60), ":",
                       _two(func.abs(minutes) % 60))


def _two(value: Any) -> Any:
    return func.lpad(cast(value, String), 2, "0")



COUNT_VEHICLES_SQL = (
    "INSERT INTO analytics_vehicle_counts (type, make, battery_wh, vehicles) "
    "SELECT type, COALESCE(make, ''), COALESCE(battery_wh, -1), count(*) FROM analytics_vehicles "
    "WHERE registered GROUP BY 1, 2, 3")
"""``analytics_vehicle_counts`` from ``analytics_vehicles`` (into an empty table): migration 0006's fill."""

NETWORK_SQL = (
    f"INSERT INTO usage_network (bay_type, hour, {', '.join(USAGE_FIELDS)}) SELECT bay_type, hour, "
    f"{', '.join(f'sum({n})' for n in USAGE_FIELDS)} FROM usage_metrics "
    f"WHERE site_id IN (SELECT site_id FROM analytics_sites) GROUP BY bay_type, hour")
"""``usage_network`` from ``usage_metrics`` (into an empty table): migration 0008's fill. The sites are
those analytics knows (an admin's): as events arrive, each site is known before its usage is added."""


NETWORK_VISITORS_SQL = (
    "INSERT INTO analytics_network_visitors (vehicle_id, first_at, last_at, type, make, battery_wh) "
    "SELECT s.vehicle_id, s.first_at, s.last_at, v.type, v.make, v.battery_wh FROM ("
    "SELECT vehicle_id, min(first_at) AS first_at, max(last_at) AS last_at FROM analytics_visitors "
    "GROUP BY vehicle_id) AS s LEFT JOIN analytics_vehicles AS v ON v.vehicle_id = s.vehicle_id")
"""``analytics_network_visitors`` from ``analytics_visitors`` and ``analytics_vehicles`` (into an empty
table): migration 0009's fill, and the rebuild's."""


def network_rows(rows: Iterable[tuple[str, str, datetime, dict[str, int]]]) -> list[dict[str, Any]]:
    """Hourly usage rows (site, bay type, UTC hour, figures) summed over the sites per bay type and hour,
    as ``usage_network`` keeps them: every site with an id (events without one count at no site), in key
    order (concurrent upserts lock the rows they share in the same order)."""
    summed: dict[tuple[datetime, str], dict[str, int]] = {}
    for site, bay_type, hour, figures in rows:
        if not site:
            continue
        into = summed.setdefault((hour, bay_type), dict.fromkeys(USAGE_FIELDS, 0))
        for name in USAGE_FIELDS:
            into[name] += figures.get(name, 0)
    return [{"hour": hour, "bay_type": bay_type, **summed[hour, bay_type]} for hour, bay_type in sorted(summed)]


def _battery_band(wh: Any, *, unknown: Any) -> Any:
    """SQL: the index of :func:`domain.battery_band`'s band of ``wh`` in :data:`domain.BATTERY_BANDS`
    (-1 where ``unknown``): vehicles are counted per band, not per battery size."""
    bands = domain.BATTERY_BANDS
    return case((unknown, -1), *((wh < upper * 1000, index) for index, (_, upper) in enumerate(bands)
                                 if upper is not None), else_=len(bands) - 1)


def _total(column: Any) -> Any:
    """A sum over a derived rollup, as a Python int (few rows: PostgreSQL's numeric sum, cast back)."""
    return cast(func.sum(column), BigInteger).label(column.name)


WRITTEN_FIGURES = ("occupied_s", "energy_wh", "idle_s", "blocked_s", "no_shows", "kept", "visits",
                   "first_attempt_ok")
"""The figures of an hour the service rounds itself (Python's rounding, as the general path does)."""


def _written_sql(network: bool, by_bay_type: bool) -> str:
    """The statement of :meth:`SqlAnalyticsRepository.usage_by_hour_written` (asyncpg's placeholders: $1
    and $2 the range, then the sites unless ``network``, then the bay type if ``by_bay_type``), written
    once per shape instead of built and compiled per request. Each hour is labelled by ``to_char`` in the
    transaction's time zone (its TZH:TZM is isoformat's offset), the hours come in time order, which
    array_agg keeps from its subquery in practice (the service checks that they are in label order, as
    the periods are listed, and sorts them if not: where a zone's clocks go back, 02:00+01:00 follows
    02:00+02:00); its integers, label and kWh (``str(Decimal(wh) / 1000)``: exact, without
    trailing zeros) are written into the period's JSON, in the fields and order of
    :class:`~cloud.analytics.views.UsagePeriod`, up to its first rounded figure (the head) and between
    its minutes and its rates (the middle)."""
    table = "usage_network" if network else "usage_metrics"
    # sum(int) is a bigint (sum(bigint) a numeric, several times slower: _sum); every site's sums are
    # bigints summed once more
    sums = ", ".join(f"sum({n})::bigint AS {n}" if network else f"sum({n}::integer) AS {n}" for n in USAGE_FIELDS)
    where = ["hour >= $1", "hour < $2"]
    if not network:
        where.append(f"site_id = ANY(${len(where) + 1}::text[])")
    if by_bay_type:
        where.append(f"bay_type = ${len(where) + 1}")
    head = ("""'{"period":"' || label || '","stays":' || stays || ',"charging_sessions":' || sessions || """
            """',"energy_wh":' || energy_wh || ',"energy_kwh":"' || trim_scale(energy_wh::numeric / 1000) || """
            """'","occupied_hours":'""")
    middle = ("""'"reservations":' || reservations || ',"reservations_kept":' || kept || """
              """',"reservations_cancelled":' || cancelled || ',"no_shows":' || no_shows || ','""")
    label = """to_char(hour, 'YYYY-MM-DD"T"HH24:MITZH:TZM')"""
    return (f"SELECT array_agg({head}), array_agg({middle}), "
            f"{', '.join(f'array_agg({n})' for n in WRITTEN_FIGURES)}, "
            f"{', '.join(f'sum({n})::bigint' for n in USAGE_FIELDS)} "
            f"FROM (SELECT {label} AS label, {sums} FROM {table} "
            f"WHERE {' AND '.join(where)} GROUP BY hour ORDER BY hour) AS h")


WRITTEN_SQL = {(network, by_bay_type): _written_sql(network, by_bay_type)
               for network in (False, True) for by_bay_type in (False, True)}


@dataclass(frozen=True)
class WrittenHours:
    """:meth:`SqlAnalyticsRepository.usage_by_hour_written`: each hour's head and middle texts and its
    :data:`WRITTEN_FIGURES`, in no particular order (the same in each list), and the totals of the range."""

    heads: list[str]
    middles: list[str]
    figures: dict[str, list[int]]
    totals: dict[str, int]


class SqlAnalyticsRepository:
    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session
        self._dialect: Any = sqlite if tx.is_sqlite else postgresql

    def _insert(self, table: Table) -> Any:
        return self._dialect.insert(table)

    # --- the event log ---------------------------------------------------------------------------

    async def log(self, event_id: str, name: str, version: str, occurred_at: datetime, payload: dict[str, Any], *,
                  site_id: str | None, subject: str | None, related: str | None) -> bool:
        """Keep the event; False when it is logged already (a redelivery)."""
        statement = self._insert(event_logs).values(
            event_id=event_id, name=name, version=version, occurred_at=occurred_at, site_id=site_id,
            subject=subject, related=related, payload=json.dumps(payload, separators=(",", ":")),
            logged_at=datetime.now(UTC)).on_conflict_do_nothing()
        return bool((await self._session.execute(statement)).rowcount)  # type: ignore[attr-defined]

    async def logged(self, *, name: str, subject: str | None = None, related: str | None = None,
                     exclude: str | None = None) -> list[Logged]:
        query = select(event_logs.c.event_id, event_logs.c.name, event_logs.c.occurred_at,
                       event_logs.c.payload).where(event_logs.c.name == name)
        if subject is not None:
            query = query.where(event_logs.c.subject == subject)
        if related is not None:
            query = query.where(event_logs.c.related == related)
        if exclude is not None:
            query = query.where(event_logs.c.event_id != exclude)
        rows = (await self._session.execute(query.order_by(event_logs.c.occurred_at, event_logs.c.event_id))).all()
        return [Logged(r.event_id, r.name, r.occurred_at, json.loads(r.payload)) for r in rows]

    async def all_logged(self, batch: int = 5000) -> AsyncIterator[list[Logged]]:
        """Every logged event in event-time order, in batches (keyset pagination)."""
        after: tuple[datetime, str] | None = None
        while True:
            query = select(event_logs.c.event_id, event_logs.c.name, event_logs.c.occurred_at, event_logs.c.payload)
            if after is not None:
                query = query.where((event_logs.c.occurred_at > after[0]) | and_(
                    event_logs.c.occurred_at == after[0], event_logs.c.event_id > after[1]))
            rows = (await self._session.execute(
                query.order_by(event_logs.c.occurred_at, event_logs.c.event_id).limit(batch))).all()
            if not rows:
                return
            yield [Logged(r.event_id, r.name, r.occurred_at, json.loads(r.payload)) for r in rows]
            after = (rows[-1].occurred_at, rows[-1].event_id)

    async def session_outcome(self, session_id: str, *, exclude: str | None = None) -> tuple[SessionOutcome | None,
                                                                                             bool]:
        """The first logged ``charging.completed`` of a session, and whether a ``charging.failed`` is logged."""
        completed = await self.logged(name="charging.completed", subject=session_id, exclude=exclude)
        failed = await self.logged(name="charging.failed", subject=session_id, exclude=exclude)
        outcome = None
        if completed:
            body = completed[0].payload
            outcome = SessionOutcome(int(body.get("energy_wh") or 0), body.get("stop_reason"))
        return outcome, bool(failed)

    # --- rollups ---------------------------------------------------------------------------------

    async def add_usage(self, delta: UsageDelta, zones: dict[str, str] | None = None) -> None:
        """Add to the hourly rows, and to the daily and peak rows in each site's time zone (``zones``:
        the sites' zones when the caller has them; else looked up)."""
        rows = [(site, bay_type, hour, row) for (site, bay_type, hour), row in delta.rows.items()
                if any(row.values())]
        if not rows:
            return
        await self._add(usage_metrics, ["site_id", "hour", "bay_type"], USAGE_FIELDS,
                        [{"site_id": site, "bay_type": bay_type, "hour": hour, **row}
                         for site, bay_type, hour, row in rows])
        await self._add(usage_network, ["hour", "bay_type"], USAGE_FIELDS, network_rows(rows))
        known = zones if zones is not None else {}  # the caller's dict learns the zones looked up
        missing = sorted({site for site, *_ in rows} - set(known))
        if missing:
            found = await self.sites(missing)
            known.update({site: (found.get(site) or {}).get("time_zone") or domain.FALLBACK_TIME_ZONE
                          for site in missing})
        daily, peak = domain.local_rollups(rows, known)
        await self._add(usage_daily, ["site_id", "day", "bay_type"], USAGE_FIELDS,
                        [{"site_id": site, "bay_type": bay_type, "day": day, **row}
                         for (site, bay_type, day), row in daily.items()])
        await self._add(usage_peak, ["site_id", "month", "weekday", "local_hour"], PEAK_FIELDS,
                        [{"site_id": site, "month": month, "weekday": weekday, "local_hour": hour, **row}
                         for (site, month, weekday, hour), row in peak.items()])

    async def _add(self, table: Table, key: list[str], names: Sequence[str], values: list[dict[str, Any]]) -> None:
        """Upsert rows, adding their figures to what is there."""
        if not values:
            return
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=key, set_={name: table.c[name] + statement.excluded[name] for name in names})
        for chunk in range(0, len(values), 5000):
            await self._session.execute(statement, values[chunk:chunk + 5000])

    async def derive(self, sites: Sequence[str] | None = None) -> None:
        """``usage_daily`` and ``usage_peak`` of ``sites`` (None: all) again from ``usage_metrics``, in
        their time zones now (after a site's time zone changed)."""
        for table in (usage_daily, usage_peak):
            statement = delete(table)
            await self._session.execute(statement if sites is None else statement.where(
                table.c.site_id.in_(list(sites))))
        if self._dialect is postgresql:
            where = "" if sites is None else "WHERE u.site_id = ANY(:sites)"
            for sql in derive_sql(where):
                await self._session.execute(text(sql), {} if sites is None else {"sites": list(sites)})
            return
        query = select(usage_metrics)
        if sites is not None:
            query = query.where(usage_metrics.c.site_id.in_(list(sites)))
        rows = (await self._session.execute(query)).mappings().all()
        delta = UsageDelta()
        for row in rows:
            delta.rows[(row["site_id"], row["bay_type"], row["hour"])] = {n: int(row[n]) for n in USAGE_FIELDS}
        known = {site: meta["time_zone"] or domain.FALLBACK_TIME_ZONE for site, meta in (await self.sites()).items()}
        daily, peak = domain.local_rollups(((s, b, h, r) for (s, b, h), r in delta.rows.items()), known)
        await self._add(usage_daily, ["site_id", "day", "bay_type"], USAGE_FIELDS,
                        [{"site_id": site, "bay_type": bay_type, "day": day, **row}
                         for (site, bay_type, day), row in daily.items()])
        await self._add(usage_peak, ["site_id", "month", "weekday", "local_hour"], PEAK_FIELDS,
                        [{"site_id": site, "month": month, "weekday": weekday, "local_hour": hour, **row}
                         for (site, month, weekday, hour), row in peak.items()])

    async def add_revenue(self, delta: RevenueDelta) -> None:
        values = [{"site_id": key[0], "currency": key[1], "day": key[2], "kind": key[3], "component": key[4],
                   "amount_e4": int(amount * E4), "documents": delta.documents.get(key, 0)}
                  for key, amount in delta.rows.items()]
        if not values:
            return
        statement = self._insert(revenue_metrics)
        statement = statement.on_conflict_do_update(
            index_elements=["site_id", "day", "currency", "kind", "component"],
            set_={"amount_e4": revenue_metrics.c.amount_e4 + statement.excluded.amount_e4,
                  "documents": revenue_metrics.c.documents + statement.excluded.documents})
        await self._session.execute(statement, values)

    async def lock_log(self) -> None:
        """Hold new events back until this transaction ends (a rebuild counts each event once)."""
        if self._dialect is postgresql:
            await self._session.execute(text("LOCK TABLE event_logs IN SHARE MODE"))

    async def clear_rollups(self) -> None:
        for table in (usage_metrics, usage_network, usage_daily, usage_peak, revenue_metrics):
            await self._session.execute(delete(table))
        await self._session.execute(delete(analytics_visitors))
        await self._session.execute(delete(analytics_network_visitors))

    async def saw_visitor(self, site_id: str, vehicle_id: str, at: datetime) -> None:
        """A vehicle arrived at a site: its first and last arrival there widen to ``at`` (any order)."""
        statement = self._insert(analytics_visitors).values(site_id=site_id, vehicle_id=vehicle_id, first_at=at,
                                                            last_at=at)
        c, new = analytics_visitors.c, statement.excluded
        least, greatest = (func.min, func.max) if self._dialect is sqlite else (func.least, func.greatest)
        await self._session.execute(statement.on_conflict_do_update(
            index_elements=["site_id", "vehicle_id"],
            set_={"first_at": least(c.first_at, new.first_at), "last_at": greatest(c.last_at, new.last_at)}))
        # and anywhere: a new visitor takes the vehicle's type, make and battery as known now (later
        # changes are copied by _upsert_vehicle)
        v, n = analytics_vehicles.c, analytics_network_visitors.c

        def known(column: Any) -> Any:
            return select(column).where(v.vehicle_id == vehicle_id).scalar_subquery()

        network = self._insert(analytics_network_visitors).values(
            vehicle_id=vehicle_id, first_at=at, last_at=at, type=known(v.type), make=known(v.make),
            battery_wh=known(v.battery_wh))
        added = network.excluded
        await self._session.execute(network.on_conflict_do_update(
            index_elements=["vehicle_id"],
            set_={"first_at": least(n.first_at, added.first_at), "last_at": greatest(n.last_at, added.last_at)}))

    async def rebuild_visitors(self) -> None:
        """``analytics_visitors`` and ``analytics_network_visitors`` from the logged arrivals (after
        :meth:`clear_rollups`)."""
        e = event_logs.c
        await self._session.execute(analytics_visitors.insert().from_select(
            ["site_id", "vehicle_id", "first_at", "last_at"],
            select(e.site_id, e.related, func.min(e.occurred_at), func.max(e.occurred_at))
            .where(e.name == "parking.arrived", e.site_id.is_not(None), e.related.is_not(None))
            .group_by(e.site_id, e.related)))
        await self._session.execute(text(NETWORK_VISITORS_SQL))  # and each once, with what its vehicle is

    # --- sites, health, vehicles -----------------------------------------------------------------

    async def saw_site(self, site_id: str, at: datetime) -> None:
        statement = self._insert(analytics_sites).values(site_id=site_id, last_event_at=at)
        statement = statement.on_conflict_do_update(index_elements=["site_id"], set_={
            "last_event_at": func.coalesce(func.max(analytics_sites.c.last_event_at, statement.excluded.last_event_at)
                                           if self._dialect is sqlite else
                                           func.greatest(analytics_sites.c.last_event_at,
                                                         statement.excluded.last_event_at),
                                           statement.excluded.last_event_at)})
        await self._session.execute(statement)

    async def set_inventory(self, site_id: str, bays: int, chargers: int, max_power_w: int | None) -> None:
        await self._session.execute(update(analytics_sites).where(analytics_sites.c.site_id == site_id)
                                    .values(bays=bays, chargers=chargers, max_power_w=max_power_w))

    async def set_time_zone(self, site_id: str, time_zone: str) -> None:
        """The site's time zone; its daily and peak rows are derived again in it when it changed."""
        before = (await self.sites([site_id])).get(site_id, {}).get("time_zone")
        await self._session.execute(update(analytics_sites).where(analytics_sites.c.site_id == site_id)
                                    .values(time_zone=time_zone))
        if before is not None and before != time_zone:
            await self.derive([site_id])

    async def sites(self, only: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        query = select(analytics_sites)
        if only is not None:
            query = query.where(analytics_sites.c.site_id.in_(list(only)))
        rows = (await self._session.execute(query.order_by(analytics_sites.c.site_id))).mappings().all()
        return {row["site_id"]: dict(row) for row in rows}

    async def set_health(self, site_id: str, subject: str, status: str, since: datetime, detail: str,
                         event_at: datetime) -> None:
        """The latest event (by its time) about ``subject`` wins, whatever order they arrive in."""
        statement = self._insert(system_health).values(site_id=site_id, subject=subject, status=status, since=since,
                                                       detail=detail, event_at=event_at)
        newer = statement.excluded.event_at >= system_health.c.event_at
        statement = statement.on_conflict_do_update(
            index_elements=["site_id", "subject"],
            set_={"status": statement.excluded.status, "since": statement.excluded.since,
                  "detail": statement.excluded.detail, "event_at": statement.excluded.event_at},
            where=newer)
        await self._session.execute(statement)

    async def health(self, sites: Sequence[str]) -> list[dict[str, Any]]:
        rows = (await self._session.execute(select(system_health).where(system_health.c.site_id.in_(list(sites)))
                                            .order_by(system_health.c.site_id, system_health.c.subject))).mappings()
        return [dict(row) for row in rows.all()]

    async def set_vehicle(self, vehicle_id: str, type_: str, at: datetime, *, make: str | None,
                          battery_wh: int | None) -> None:
        """A vehicle registered or updated: its type, make and battery now."""
        await self._upsert_vehicle(vehicle_id=vehicle_id, type=type_, make=make, battery_wh=battery_wh,
                                   registered=True, version_at=at)

    async def vehicle_deleted(self, vehicle_id: str, type_: str, at: datetime) -> None:
        """No longer registered; its make and battery are kept (its past visits still count by them)."""
        await self._upsert_vehicle(vehicle_id=vehicle_id, type=type_, registered=False, version_at=at)

    async def _upsert_vehicle(self, **values: Any) -> None:
        """The latest event (by its time) about a vehicle wins, whatever order they arrive in; the
        registered counts move from its group before to its group after."""
        c = analytics_vehicles.c
        query = select(c.type, c.make, c.battery_wh, c.registered, c.version_at).where(
            c.vehicle_id == values["vehicle_id"])
        if self._dialect is postgresql:
            query = query.with_for_update()
        before = (await self._session.execute(query)).mappings().one_or_none()
        statement = self._insert(analytics_vehicles).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=["vehicle_id"],
            set_={name: statement.excluded[name] for name in values if name != "vehicle_id"},
            where=statement.excluded.version_at >= analytics_vehicles.c.version_at)
        await self._session.execute(statement)
        if before is not None and values["version_at"] < before["version_at"]:
            return  # an older event: nothing changed
        n = analytics_network_visitors.c

        def now(column: Any) -> Any:
            return select(column).where(c.vehicle_id == values["vehicle_id"]).scalar_subquery()

        await self._session.execute(  # a visitor of the network counts by what the vehicle is now
            update(analytics_network_visitors).where(n.vehicle_id == values["vehicle_id"])
            .values(type=now(c.type), make=now(c.make), battery_wh=now(c.battery_wh)))
        after = {"make": None, "battery_wh": None, **(dict(before) if before is not None else {}), **values}
        if before is not None and before["registered"]:
            await self._count_vehicle(before, -1)
        if after["registered"]:
            await self._count_vehicle(after, 1)

    async def _count_vehicle(self, vehicle: Any, change: int) -> None:
        statement = self._insert(analytics_vehicle_counts).values(
            type=vehicle["type"], make=vehicle["make"] or "",
            battery_wh=-1 if vehicle["battery_wh"] is None else vehicle["battery_wh"], vehicles=change)
        await self._session.execute(statement.on_conflict_do_update(
            index_elements=["type", "make", "battery_wh"],
            set_={"vehicles": analytics_vehicle_counts.c.vehicles + statement.excluded.vehicles}))

    # --- report queries --------------------------------------------------------------------------

    async def usage_by_hour(self, sites: Sequence[str], start: datetime, end: datetime,
                            bay_type: str | None = None, *, labelled_in: str | None = None) -> list[dict[str, Any]]:
        """The figures of ``sites`` together, per UTC hour (one row per hour: sites of one time zone
        bucket alike, so the caller asks once per time zone). On PostgreSQL with ``labelled_in`` (a
        time zone), each row has the hour's period ``label`` instead (:func:`domain.period_of`'s)."""
        key: Any = usage_metrics.c.hour
        if labelled_in is not None and self._dialect is postgresql:
            key = _hour_label(usage_metrics.c.hour, labelled_in).label("label")
        query = (select(key, *(_sum(n) for n in USAGE_FIELDS))
                 .where(usage_metrics.c.site_id.in_(list(sites)), usage_metrics.c.hour >= start,
                        usage_metrics.c.hour < end)
                 .group_by(usage_metrics.c.hour))
        if bay_type is not None:
            query = query.where(usage_metrics.c.bay_type == bay_type)
        return await self._dicts(query)

    async def usage_by_hour_written(self, sites: Sequence[str] | None, start: datetime, end: datetime,
                                    bay_type: str | None, tz: str) -> WrittenHours | None:
        """PostgreSQL only (else None): :meth:`usage_by_hour` labelled in ``tz``, each hour's figures that
        need no rounding already written as its JSON text by PostgreSQL (:func:`_written_sql`), those that
        do as columns of integers (:data:`WRITTEN_FIGURES`), and the range's totals: one row of arrays, which
        asyncpg decodes into lists without a record and a dict per hour. ``sites`` None: every site, from
        ``usage_network``."""
        if self._dialect is not postgresql:
            return None
        args: list[Any] = [start, end]
        if sites is not None:
            args.append(list(sites))
        if bay_type is not None:
            args.append(bay_type)
        statement = WRITTEN_SQL[sites is None, bay_type is not None]
        zone = text("SELECT current_setting('TimeZone')")
        before = (await self._session.execute(zone)).scalar_one()
        local = text("SELECT set_config('TimeZone', :tz, true)")  # SET LOCAL: until the transaction ends
        await self._session.execute(local, {"tz": tz})
        try:
            connection = await self._session.connection()
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            row = list(await driver.fetchrow(statement, *args))
        finally:
            await self._session.execute(local, {"tz": before})
        heads, middles, *figures = (list(column or ()) for column in row[:2 + len(WRITTEN_FIGURES)])
        totals = {name: int(value or 0) for name, value in zip(USAGE_FIELDS, row[2 + len(WRITTEN_FIGURES):],
                                                                strict=True)}
        return WrittenHours(heads, middles, dict(zip(WRITTEN_FIGURES, figures, strict=True)), totals)

    async def _dicts(self, query: Any) -> list[dict[str, Any]]:
        """The rows as dicts (a year by hour is 8,760 of them). On PostgreSQL the statement, compiled by
        SQLAlchemy, is fetched by asyncpg itself in this transaction: its records become dicts at a
        fraction of the cost of SQLAlchemy's rows (the columns read here need no result processing:
        integers, text, dates, and timestamps asyncpg gives aware in UTC)."""
        if self._dialect is postgresql:
            connection = await self._session.connection()
            compiled = query.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            records = await driver.fetch(compiled.string, *(compiled.params[n] for n in compiled.positiontup or ()))
            return [dict(record) for record in records]
        result = await self._session.execute(query)
        keys = list(result.keys())
        return [dict(zip(keys, row, strict=True)) for row in result.all()]

    async def usage_by_local(self, sites: Sequence[str], start: datetime, end: datetime, bay_type: str | None,
                             tz: str, unit: str) -> list[dict[str, Any]]:
        """Like :meth:`usage_by_hour`; on PostgreSQL summed per local day, ISO week or month
        (``unit``) in the database, each row with ``local`` (the period's first local day) instead of
        ``hour``. SQLite, and ``unit == "hour"``, answer per UTC hour."""
        if self._dialect is not postgresql or unit == "hour":
            return await self.usage_by_hour(sites, start, end, bay_type)
        local = func.date_trunc(unit, func.timezone(tz, usage_metrics.c.hour)).label("local")
        query = (select(local, *(_sum(n) for n in USAGE_FIELDS))
                 .where(usage_metrics.c.site_id.in_(list(sites)), usage_metrics.c.hour >= start,
                        usage_metrics.c.hour < end)
                 .group_by(local))
        if bay_type is not None:
            query = query.where(usage_metrics.c.bay_type == bay_type)
        return await self._dicts(query)

    async def usage_by_day(self, sites: Sequence[str], first: date, end: date, bay_type: str | None,
                           unit: str) -> list[dict[str, Any]]:
        """The figures of ``sites`` together from ``usage_daily``, local days ``first`` up to ``end``
        (exclusive), per day or, with ``unit`` week or month, per period; each row's ``local`` is the
        period's first day (SQLite: the day; the caller labels it)."""
        c = usage_daily.c
        local: Any = c.day
        if self._dialect is postgresql and unit in ("week", "month"):
            local = cast(func.date_trunc(unit, cast(c.day, TIMESTAMP)), Date)
        query = (select(local.label("local"), *(_total(c[n]) for n in USAGE_FIELDS))
                 .where(c.site_id.in_(list(sites)), c.day >= first, c.day < end).group_by(local))
        if bay_type is not None:
            query = query.where(c.bay_type == bay_type)
        return await self._dicts(query)

    async def peak_by_month(self, sites: Sequence[str], first: date, end: date) -> list[dict[str, Any]]:
        """The peak figures of ``sites`` from ``usage_peak``, local months ``first`` up to ``end``
        (exclusive), per (ISO weekday, local hour)."""
        c = usage_peak.c
        query = (select(c.weekday, c.local_hour, *(_total(c[n]) for n in PEAK_FIELDS))
                 .where(c.site_id.in_(list(sites)), c.month >= first, c.month < end)
                 .group_by(c.weekday, c.local_hour))
        return await self._dicts(query)

    async def peak_cells(self, sites: Sequence[str], start: datetime, end: datetime,
                         tz: str) -> list[dict[str, Any]] | None:
        """Occupied seconds, sessions, Wh and charging seconds per (ISO weekday, local hour), summed by
        PostgreSQL; None on SQLite (the caller sums :meth:`usage_by_hour`)."""
        if self._dialect is not postgresql:
            return None
        local = func.timezone(tz, usage_metrics.c.hour)
        weekday = func.extract("isodow", local).label("weekday")
        hour = func.extract("hour", local).label("local_hour")
        names = ("occupied_s", "sessions", "energy_wh", "charging_s")
        query = (select(weekday, hour, *(_sum(n) for n in names))
                 .where(usage_metrics.c.site_id.in_(list(sites)), usage_metrics.c.hour >= start,
                        usage_metrics.c.hour < end)
                 .group_by(weekday, hour))
        return await self._dicts(query)

    async def revenue_by_period(self, sites: Sequence[str], first: date, last: date,
                                unit: str) -> list[dict[str, Any]]:
        """Revenue rows of ``sites`` from ``first`` to ``last`` (local dates, inclusive), summed per
        site, currency, kind, component and ``day``: the local day or, on PostgreSQL with ``unit``
        week or month, the period's first day."""
        day: Any = revenue_metrics.c.day
        if self._dialect is postgresql and unit in ("week", "month"):
            # truncated as a timestamp without time zone: a date's period needs none (as a timestamptz,
            # each of a year's rows would be converted in the session's zone and back)
            day = func.date_trunc(unit, cast(revenue_metrics.c.day, TIMESTAMP)).label("day")
        query = (select(revenue_metrics.c.site_id, revenue_metrics.c.currency, day,
                        revenue_metrics.c.kind, revenue_metrics.c.component,
                        func.sum(revenue_metrics.c.amount_e4).label("amount_e4"),
                        func.sum(revenue_metrics.c.documents).label("documents"))
                 .where(revenue_metrics.c.site_id.in_(list(sites)), revenue_metrics.c.day >= first,
                        revenue_metrics.c.day <= last)
                 .group_by(revenue_metrics.c.site_id, revenue_metrics.c.currency, day,
                           revenue_metrics.c.kind, revenue_metrics.c.component))
        return await self._dicts(query)

    async def registered_vehicles(self) -> list[VehicleGroup]:
        """Registered vehicles (every site's) grouped by type, make and battery band (the kept counts; a
        group's ``battery_wh`` is its smallest, in the band of all of them)."""
        c = analytics_vehicle_counts.c
        band = _battery_band(c.battery_wh, unknown=c.battery_wh == -1)
        query = (select(c.type, c.make, func.min(c.battery_wh), func.sum(c.vehicles)).where(c.vehicles > 0)
                 .group_by(c.type, c.make, band))
        return [VehicleGroup(r[0], r[1] or None, None if r[2] == -1 else r[2], int(r[3]))
                for r in (await self._session.execute(query)).all()]

    async def visiting_vehicles(self, sites: Sequence[str] | None, start: datetime,
                                end: datetime) -> list[VehicleGroup]:
        """The distinct attributed vehicles that arrived at ``sites`` (None: at any site) in the range,
        grouped by type, make and battery band (all None: a vehicle analytics never heard of;
        ``battery_wh`` as in :meth:`registered_vehicles`)."""
        if sites is None:
            return await self._network_visiting(start, end)
        # From each visitor's first and last arrival per site (not every arrival): one whose first or last
        # lies in the range came; one whose arrivals all lie before or after did not; only one that came
        # before and again after the range is looked up in the log (an index seek on its arrivals there).
        # The two are disjoint, and one site's visitors distinct: the UNION removes a vehicle counted at
        # two sites, so one site's need none (UNION ALL).
        v, e = analytics_visitors.c, event_logs.c
        mine = v.site_id.in_(list(sites))
        first_or_last = select(v.vehicle_id).where(mine, or_(and_(v.first_at >= start, v.first_at < end),
                                                             and_(v.last_at >= start, v.last_at < end)))
        arrived_within = exists().where(e.related == v.vehicle_id, e.site_id == v.site_id,
                                        e.name == "parking.arrived", e.occurred_at >= start, e.occurred_at < end)
        around = select(v.vehicle_id).where(mine, v.first_at < start, v.last_at >= end, arrived_within)
        visitors = (union_all if len(sites) == 1 else union)(first_or_last, around).subquery()
        c = analytics_vehicles.c
        query = (select(c.type, c.make, func.min(c.battery_wh), func.count()).select_from(
            visitors.outerjoin(analytics_vehicles, c.vehicle_id == visitors.c.vehicle_id))
            .group_by(c.type, c.make, _battery_band(c.battery_wh, unknown=c.battery_wh.is_(None))))
        return [VehicleGroup(r[0], r[1], r[2], int(r[3])) for r in (await self._session.execute(query)).all()]

    async def _network_visiting(self, start: datetime, end: datetime) -> list[VehicleGroup]:
        """:meth:`visiting_vehicles` of every site, from ``analytics_network_visitors`` (one row per
        vehicle, with what it is): no join, and no duplicates to remove."""
        n, e = analytics_network_visitors.c, event_logs.c
        columns = (n.type, n.make, n.battery_wh)
        first_or_last = select(*columns).where(or_(and_(n.first_at >= start, n.first_at < end),
                                                   and_(n.last_at >= start, n.last_at < end)))
        arrived_within = exists().where(e.related == n.vehicle_id, e.name == "parking.arrived",
                                        e.site_id.is_not(None), e.occurred_at >= start, e.occurred_at < end)
        # apart, so that the log is looked up only for those that came before and again after the range
        # (in one WHERE, the planner costs the lookup for every row)
        around = select(*columns).where(n.first_at < start, n.last_at >= end, arrived_within)
        came = union_all(first_or_last, around).subquery()
        c = came.c
        query = (select(c.type, c.make, func.min(c.battery_wh), func.count())
                 .group_by(c.type, c.make, _battery_band(c.battery_wh, unknown=c.battery_wh.is_(None))))
        return [VehicleGroup(r[0], r[1], r[2], int(r[3])) for r in (await self._session.execute(query)).all()]

    async def anomalies_since(self, sites: Sequence[str], since: datetime) -> dict[str, int]:
        query = (select(event_logs.c.site_id, func.count()).where(
            event_logs.c.name == "charging.anomaly", event_logs.c.site_id.in_(list(sites)),
            event_logs.c.occurred_at >= since).group_by(event_logs.c.site_id))
        return {row[0]: int(row[1]) for row in (await self._session.execute(query)).all()}
