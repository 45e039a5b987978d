"""Analytics use cases: take in every event (log it once, add its contributions to the rollups),
rebuild the rollups from the log, and answer the reports for the caller's sites."""

from __future__ import annotations

import gc
import operator
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any

from cloud.analytics import domain
from cloud.analytics.domain import RevenueDelta, SessionOutcome, UsageDelta
from cloud.analytics.repository import Logged, SqlAnalyticsRepository, WrittenHours
from cloud.analytics.views import (
    HealthOut,
    PeakCell,
    PeakHoursOut,
    RevenueOut,
    RevenuePeriod,
    ServiceHealth,
    SiteHealth,
    UsageReport,
    VehicleDistribution,
    VehicleTypesOut,
)
from cloud.contracts import EventBody, Received
from cloud.contracts.identity import ADMIN, OPERATOR, Forbidden, Principal
from cloud.platform.delivery import SiteUplink
from cloud.platform.unit_of_work import UnitOfWorkFactory

QUEUE = "analytics.events"
E4 = Decimal(10_000)
SUBJECT_KEYS = ("session_id", "stay_id", "reservation_id", "credit_note_id", "invoice_id", "refund_id", "payment_id",
                "notification_id", "anomaly_id", "vehicle_id", "charger_id", "account_id")
HEALTH_EVENTS = {"parking.site_online", "parking.site_offline", "charging.charger_offline",
                 "charging.charger_online", "charging.charger_faulted", "charging.started"}


@dataclass(frozen=True)
class Probed:
    """One service as the prober found it: its row of ``/metrics/health``, and what it knows of each
    site's uplink (None: it reads no MQTT, or did not answer)."""

    health: ServiceHealth
    uplink: dict[str, SiteUplink] | None = None


Prober = Callable[[], Awaitable[list[Probed]]]


def _dt(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value  # type: ignore[no-any-return]


def _related(name: str, body: dict[str, Any]) -> str | None:
    if name == "parking.released":
        return (body.get("session_ids") or [None])[0]
    if name == "parking.arrived":
        return body.get("vehicle_id")
    return None


def _subject(body: dict[str, Any]) -> str | None:
    return next((str(body[k]) for k in SUBJECT_KEYS if body.get(k)), None)


def may_read(user: Principal) -> None:
    if not (user.is_admin or OPERATOR in user.roles):
        raise Forbidden(f"analytics is for {OPERATOR}s (their sites) and {ADMIN}s")


class AnalyticsService:
    def __init__(self, units: UnitOfWorkFactory[SqlAnalyticsRepository], *, probe: Prober | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._units = units
        self._probe = probe
        self._now = now

    # --- taking events in ------------------------------------------------------------------------

    async def on_event(self, event: Received[EventBody]) -> None:
        """Log the event once (by id) and add what it contributes; a redelivery changes nothing."""
        body = event.body.model_dump(mode="json")
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE):
                return
            repo = uow.repo
            site_id = body.get("site_id")
            if not await repo.log(str(event.id), event.name, event.version, event.occurred_at, body,
                                  site_id=site_id, subject=_subject(body), related=_related(event.name, body)):
                return
            if site_id:
                await repo.saw_site(site_id, event.occurred_at)
            logged = Logged(str(event.id), event.name, event.occurred_at, body)
            await self._state(repo, logged)
            zones: dict[str, str] = {}
            usage, revenue = await self._contribution(repo, logged, zones)
            await repo.add_usage(usage, zones)
            await repo.add_revenue(revenue)
            await repo.add_usage(await self._visit_change(repo, logged), zones)

    async def _state(self, repo: SqlAnalyticsRepository, e: Logged) -> None:
        """Sites, chargers and vehicles as they are now (the latest event by its time wins)."""
        b, name, at = e.payload, e.name, e.occurred_at
        if name == "parking.lot_configured":
            await repo.set_time_zone(b["site_id"], b["time_zone"])
        elif name == "parking.inventory_changed":
            await repo.set_inventory(b["site_id"], b["bays"], b["chargers"], b.get("max_power_w"))
        elif name in ("parking.site_online", "parking.site_offline"):
            status = "connected" if name.endswith("online") else "offline"
            await repo.set_health(b["site_id"], "edge", status, _dt(b["since"]), b.get("reason", ""), at)
        elif name in HEALTH_EVENTS and b.get("charger_id"):
            status = {"charging.charger_offline": "offline", "charging.charger_faulted": "faulted"}.get(name, "online")
            since = _dt(b.get("since") or b.get("faulted_at") or b.get("started_at") or at.isoformat())
            detail = b.get("error_code") or ""
            await repo.set_health(b["site_id"], f"charger:{b['charger_id']}", status, since, detail, at)
        elif name in ("vehicle.registered", "vehicle.updated"):  # registered before 1.2 has no type: electric
            await repo.set_vehicle(b["vehicle_id"], b.get("type") or "electric", at,
                                   make=domain.clean_make(b.get("make")),
                                   battery_wh=domain.battery_wh(b.get("battery_kwh")))
        elif name == "vehicle.deleted":
            await repo.vehicle_deleted(b["vehicle_id"], b.get("type") or "electric", at)
        elif name == "parking.arrived" and b.get("site_id") and b.get("vehicle_id") is not None:
            await repo.saw_visitor(b["site_id"], b["vehicle_id"], at)

    async def _contribution(self, repo: SqlAnalyticsRepository, e: Logged,
                            zones: dict[str, str]) -> tuple[UsageDelta, RevenueDelta]:
        """What one event adds to the usage and revenue rollups (a pure function of the event)."""
        b, name = e.payload, e.name
        usage, revenue = UsageDelta(), RevenueDelta()
        site = b.get("site_id") or ""
        bay_type = b.get("bay_type") or ("ev" if b.get("charger_id") else "regular")
        if name == "parking.arrived":
            usage.add(site, bay_type, _dt(b["arrived_at"]), stays=1, kept=int(bool(b.get("reservation_id"))))
        elif name == "parking.released":
            usage.spread(site, bay_type, "occupied_s", _dt(b["arrived_at"]), _dt(b["departed_at"]))
        elif name == "parking.reserved":
            usage.add(site, bay_type, _dt(b["starts_at"]), reservations=1)
        elif name == "parking.cancelled":
            usage.add(site, bay_type, _dt(b["cancelled_at"]), cancelled=1)
        elif name == "parking.no_show":
            usage.add(site, bay_type, _dt(b["grace_ended_at"]), no_shows=1)
        elif name == "parking.bay_idle_ended":  # a car on a charger's bay that never plugged in: blocked
            usage.spread(site, "ev", "blocked_s", _dt(b["started_at"]), _dt(b["ended_at"]))
        elif name == "parking.bay_overstay_ended":  # still there after its session ended: idle
            usage.spread(site, "ev", "idle_s", _dt(b["started_at"]), _dt(b["ended_at"]))
        elif name == "charging.completed":
            started = _dt(b.get("started_at") or b.get("stopped_at") or e.occurred_at.isoformat())
            usage.add(site, "ev", started, sessions=1, energy_wh=int(b.get("energy_wh") or 0))
            if b.get("started_at") and b.get("stopped_at"):
                stopped = _dt(b["stopped_at"])
                usage.spread(site, "ev", "charging_s", started, _dt(b.get("energy_finished_at") or stopped))
                if b.get("energy_finished_at"):
                    usage.spread(site, "ev", "idle_s", _dt(b["energy_finished_at"]), stopped)
        elif name in ("payment.invoice_issued", "payment.credit_note_issued"):
            if site not in zones:
                zones[site] = (await repo.sites([site])).get(site, {}).get("time_zone") or domain.FALLBACK_TIME_ZONE
            revenue = domain.document_revenue(
                "invoice" if name == "payment.invoice_issued" else "credit_note", site, b["currency"],
                _dt(b["issued_at"]), domain.zone(zones[site]),
                {k: Decimal(v) for k, v in b["components"].items()}, Decimal(b["net"]), Decimal(b["tax"]),
                Decimal(b["total"]))
        return usage, revenue

    async def _visit_change(self, repo: SqlAnalyticsRepository, e: Logged) -> UsageDelta:
        """First-attempt figures of the visit the event belongs to: (with it) - (without it)."""
        if e.name == "parking.released":
            releases, session_id = [e], _related(e.name, e.payload)
        elif e.name in ("charging.completed", "charging.failed") and e.payload.get("session_id"):
            session_id = e.payload["session_id"]
            releases = await repo.logged(name="parking.released", related=session_id)
        else:
            return UsageDelta()
        if session_id is None or not releases:
            return UsageDelta()
        stay = releases[0].payload
        with_it, failed = await repo.session_outcome(session_id)
        without, failed_before = await repo.session_outcome(session_id, exclude=e.event_id)
        args = (stay["site_id"], stay.get("bay_type") or "ev", _dt(stay["arrived_at"]))
        after = domain.first_attempt(*args, with_it, failed)
        before = UsageDelta() if e.name == "parking.released" else domain.first_attempt(*args, without, failed_before)
        return after.merged(before.negated())

    async def rebuild(self) -> int:
        """Throw the rollups away and compute them again from ``event_logs``; the number of events read."""
        async with self._units() as uow:
            repo = uow.repo
            await repo.lock_log()
            await repo.clear_rollups()
            usage, revenue = UsageDelta(), RevenueDelta()
            zones: dict[str, str] = {}
            releases: list[dict[str, Any]] = []
            outcomes: dict[str, SessionOutcome] = {}
            failed: set[str] = set()
            count = 0
            async for batch in repo.all_logged():
                for e in batch:
                    count += 1
                    more, money = await self._contribution(repo, e, zones)
                    usage.absorb(more)
                    revenue.absorb(money)
                    if e.name == "parking.released" and e.payload.get("session_ids"):
                        releases.append(e.payload)
                    elif e.name == "charging.completed" and e.payload["session_id"] not in outcomes:
                        outcomes[e.payload["session_id"]] = SessionOutcome(int(e.payload.get("energy_wh") or 0),
                                                                           e.payload.get("stop_reason"))
                    elif e.name == "charging.failed" and e.payload.get("session_id"):
                        failed.add(e.payload["session_id"])
            for stay in releases:
                first = stay["session_ids"][0]
                usage.absorb(domain.first_attempt(stay["site_id"], stay.get("bay_type") or "ev",
                                                          _dt(stay["arrived_at"]), outcomes.get(first),
                                                          first in failed))
            await repo.add_usage(usage)
            await repo.add_revenue(revenue)
            await repo.rebuild_visitors()
            return count

    # --- reports -----------------------------------------------------------------------------------

    async def _scope(self, repo: SqlAnalyticsRepository, user: Principal,
                     site_id: str | None) -> dict[str, dict[str, Any]]:
        may_read(user)
        if site_id is not None:
            found = await repo.sites([site_id])
            if not found or not user.manages(site_id):
                raise domain.UnknownSite(site_id)
            return found
        return await repo.sites(None if user.is_admin else sorted(user.sites))

    async def usage(self, user: Principal, start: datetime | None, end: datetime | None, granularity: str | None,
                    site_id: str | None, bay_type: str | None) -> UsageReport:
        span = domain.report_range(start, end, granularity, now=self._now())
        if bay_type is not None and bay_type not in ("ev", "regular", "accessible"):
            raise domain.InvalidField("bay_type", f"{bay_type!r} is not one of ev, regular, accessible")
        async with self._units() as uow:
            sites = await self._scope(uow.repo, user, site_id)
            zones = _by_zone(sites)
            if span.granularity == "hour" and len(zones) == 1:
                every = user.is_admin and site_id is None  # every site there is: their sums are kept
                written = await self._usage_written(uow.repo, span, sites, zones, bay_type, every)
                if written is not None:
                    return written
            hourly: dict[str, list[dict[str, Any]]] = {}
            for zone_name, members in zones.items():
                if span.granularity == "hour":
                    hourly[zone_name] = await uow.repo.usage_by_hour(members, domain.hour_of(span.start), span.end,
                                                                     bay_type, labelled_in=zone_name)
                    continue
                # whole local days from usage_daily, the hours before and after them by the hour
                split = domain.split_range(span, domain.zone(zone_name), "day")
                found = [] if split.first is None or split.end is None else await uow.repo.usage_by_day(
                    members, split.first, split.end, bay_type, span.granularity)
                for a, b in split.edges:
                    found += await uow.repo.usage_by_local(members, a, b, bay_type, zone_name, span.granularity)
                hourly[zone_name] = found
        with _gc_paused():  # a year by hour: tens of thousands of objects made and kept until written out
            return _usage_report(span, sites, zones, hourly, bay_type)

    @staticmethod
    async def _usage_written(repo: SqlAnalyticsRepository, span: domain.Range, sites: dict[str, dict[str, Any]],
                             zones: dict[str, list[str]], bay_type: str | None, every: bool) -> UsageReport | None:
        """The report by hour of sites in one time zone, its periods written out as JSON text from
        PostgreSQL's columns (:func:`_periods_json`: what :func:`_usage_periods` and pydantic write, a
        year's 8,760 periods without a record, a dict and a model each); None on SQLite. ``every``: the
        sites are every site there is, summed in ``usage_network`` already."""
        ((zone_name, members),) = zones.items()
        hours_written = await repo.usage_by_hour_written(None if every else members, domain.hour_of(span.start),
                                                         span.end, bay_type, zone_name)
        if hours_written is None:
            return None
        bays = sum(sites[s]["bays"] or 0 for s in members)
        power_known = all(site["max_power_w"] is not None for site in sites.values())
        power_w = sum(sites[s]["max_power_w"] for s in members) if power_known else 0
        capacity_wh = power_w if power_known and bay_type in (None, "ev") else None
        with _gc_paused():
            periods = _periods_json(hours_written, bays * 3600 if bay_type is None else None, capacity_wh)
        hours = domain.hours_in(span)
        total = _usage_period("total", hours_written.totals, bays * hours * 3600 if bay_type is None else None,
                              power_w * hours if capacity_wh is not None and hours_written.heads else None)
        return UsageReport({"sites": sorted(sites), "start": span.start, "end": span.end,
                            "granularity": span.granularity, "bay_type": bay_type, "periods": [], "total": total},
                           periods_json=periods)

    async def revenue(self, user: Principal, start: datetime | None, end: datetime | None, granularity: str | None,
                      site_id: str | None) -> RevenueOut:
        span = domain.report_range(start, end, granularity, now=self._now())
        async with self._units() as uow:
            sites = await self._scope(uow.repo, user, site_id)
            rows = []
            for tz_name, members in _by_zone(sites).items():
                first, last = domain.local_days(span, domain.zone(tz_name))
                rows += await uow.repo.revenue_by_period(members, first, last, span.granularity)
        periods: dict[tuple[str, str, str], RevenuePeriod] = {}
        labels: dict[date, str] = {}
        sums: dict[tuple[str, str, str, str, str], list[int]] = {}
        for row in rows:  # integer sums first: a year of every site by day is tens of thousands of rows
            day = row["day"].date() if isinstance(row["day"], datetime) else row["day"]
            label = labels.get(day) or labels.setdefault(day, domain.period_of_date(day, span.granularity))
            into = sums.setdefault((row["site_id"], row["currency"], label, row["kind"], row["component"]), [0, 0])
            into[0] += int(row["amount_e4"])
            into[1] += int(row["documents"] or 0)
        for (site_name, currency, label, kind, component), (amount_e4, documents) in sums.items():
            key = (site_name, currency, label)
            period = periods.get(key) or periods.setdefault(key, RevenuePeriod(site_id=site_name, currency=currency,
                                                                              period=label))
            period.add(kind, component, Decimal(amount_e4) / E4, documents)
        return RevenueOut(sites=sorted(sites), start=span.start, end=span.end, granularity=span.granularity,
                          periods=[periods[k].finished() for k in sorted(periods)])

    async def peak_hours(self, user: Principal, start: datetime | None, end: datetime | None,
                         site_id: str | None) -> PeakHoursOut:
        span = domain.report_range(start, end, None, now=self._now())
        async with self._units() as uow:
            sites = await self._scope(uow.repo, user, site_id)
            zones = _by_zone(sites)
            hourly: dict[str, list[dict[str, Any]]] = {}
            for zone_name, members in zones.items():
                # whole local months from usage_peak, the hours before and after them by the hour
                split = domain.split_range(span, domain.zone(zone_name), "month")
                found = [] if split.first is None or split.end is None else await uow.repo.peak_by_month(
                    members, split.first, split.end)
                for a, b in split.edges:
                    summed = await uow.repo.peak_cells(members, a, b, zone_name)
                    found += summed if summed is not None else await uow.repo.usage_by_hour(members, a, b)
                hourly[zone_name] = found
        cells: dict[tuple[int, int], dict[str, int]] = {}
        hours: dict[tuple[int, int], int] = {}
        for tz_name, rows in hourly.items():
            tz = domain.zone(tz_name)
            for row in rows:
                if "weekday" in row:
                    key = (int(row["weekday"]), int(row["local_hour"]))
                else:
                    local = row["hour"].astimezone(tz)
                    key = (local.isoweekday(), local.hour)
                cell = cells.setdefault(key, {"occupied_s": 0, "sessions": 0, "energy_wh": 0, "charging_s": 0})
                for name in cell:
                    cell[name] += int(row[name] or 0)
            bays = sum(sites[s]["bays"] or 0 for s in zones[tz_name])
            for key, count in domain.hours_per_weekday_hour(span, tz).items():
                hours[key] = hours.get(key, 0) + bays * count * 3600
        out = [PeakCell(weekday=d, hour=h, occupied_hours=round(c["occupied_s"] / 3600, 2),
                        occupancy=domain.rate(c["occupied_s"], hours.get((d, h), 0)), sessions=c["sessions"],
                        energy_kwh=round(c["energy_wh"] / 1000, 3), charging_hours=round(c["charging_s"] / 3600, 2))
               for (d, h), c in sorted(cells.items())]
        return PeakHoursOut(sites=sorted(sites), start=span.start, end=span.end, cells=out)

    async def vehicle_types(self, user: Principal, start: datetime | None, end: datetime | None,
                            site_id: str | None) -> VehicleTypesOut:
        span = domain.report_range(start, end, None, now=self._now())
        async with self._units() as uow:
            sites = await self._scope(uow.repo, user, site_id)
            registered = await uow.repo.registered_vehicles()
            every = user.is_admin and site_id is None  # every site: its visitors are kept network-wide
            visiting = await uow.repo.visiting_vehicles(None if every else sorted(sites), span.start, span.end)
        return VehicleTypesOut(sites=sorted(sites), start=span.start, end=span.end,
                               registered=_distribution(domain.vehicle_distribution(registered)),
                               visiting=_distribution(domain.vehicle_distribution(visiting)))

    async def health(self, user: Principal) -> HealthOut:
        may_read(user)
        now = self._now()
        async with self._units() as uow:
            sites = await uow.repo.sites(None if user.is_admin else sorted(user.sites))
            rows = await uow.repo.health(sorted(sites))
            anomalies = await uow.repo.anomalies_since(sorted(sites), now - timedelta(hours=24))
        probed = await self._probe() if self._probe is not None else []  # the sites' uplink: operators too
        links = edge_links(probed)
        out = []
        for site_id, site in sites.items():
            backlog, heard_at = links.get(site_id, (None, None))
            mine = [r for r in rows if r["site_id"] == site_id]
            edge = next((r for r in mine if r["subject"] == "edge"), None)
            chargers = {r["subject"].split(":", 1)[1]: r["status"] for r in mine if r["subject"] != "edge"}
            out.append(SiteHealth(
                site_id=site_id, edge="unknown" if edge is None else edge["status"],
                edge_since=None if edge is None else edge["since"], last_event_at=site["last_event_at"],
                edge_heard_at=heard_at, edge_backlog=backlog,
                chargers_offline=sorted(c for c, s in chargers.items() if s == "offline"),
                chargers_faulted=sorted(c for c, s in chargers.items() if s == "faulted"),
                anomalies_24h=anomalies.get(site_id, 0)))
        return HealthOut(at=now, services=[p.health for p in probed] if user.is_admin else [], sites=out)


def _usage_report(span: domain.Range, sites: dict[str, dict[str, Any]], zones: dict[str, list[str]],
                  hourly: dict[str, list[dict[str, Any]]], bay_type: str | None) -> UsageReport:
    """The report from the rows each time zone's sites gave (:meth:`AnalyticsService.usage`)."""
    totals: dict[str, dict[str, int]] = {}
    available: dict[str, int] = {}
    capacity: dict[str, int] = {}  # Wh the chargers could have delivered at full power
    available_total = capacity_total = 0
    power_known = all(site["max_power_w"] is not None for site in sites.values())
    for tz_name, rows in hourly.items():
        tz = domain.zone(tz_name)
        # PostgreSQL labels the hours itself; with one time zone each label is one hour of the range
        one_each = span.granularity == "hour" and len(hourly) == 1 and all("label" in row for row in rows)
        labels = domain.hour_labels(span, tz) if span.granularity == "hour" and not one_each else {}
        for row in rows:
            if "label" in row:
                label = row["label"]
            elif "local" in row:
                local = row["local"]
                label = domain.period_of_date(local.date() if isinstance(local, datetime) else local,
                                              span.granularity)
            else:
                label = labels.get(row["hour"]) or domain.period_of(row["hour"], span.granularity, tz)
            into = totals.get(label)
            if into is None:  # the row itself (integer sums; its hour or local day key is not read)
                totals[label] = row
            else:
                for name in domain.USAGE_FIELDS:
                    into[name] += int(row[name] or 0)
        if one_each:
            per_period, hours_total = dict.fromkeys(totals, 1), domain.hours_in(span)
        else:
            per_period = domain.hours_per_period(span, tz, labels or None)
            hours_total = sum(per_period.values())
        if bay_type is None:  # bay counts are known per site (parking.inventory_changed), not per bay type
            bays = sum(sites[s]["bays"] or 0 for s in zones[tz_name])
            available_total += bays * hours_total * 3600
            if one_each:  # the only time zone: one hour per period
                available = dict.fromkeys(per_period, bays * 3600)
            else:
                for label, hours in per_period.items():
                    available[label] = available.get(label, 0) + bays * hours * 3600
        if power_known and bay_type in (None, "ev"):  # charging happens on EV bays only
            power_w = sum(sites[s]["max_power_w"] for s in zones[tz_name])
            capacity_total += power_w * hours_total
            if one_each:
                capacity = dict.fromkeys(per_period, power_w)
            else:
                for label, hours in per_period.items():
                    capacity[label] = capacity.get(label, 0) + power_w * hours
    periods = _usage_periods(totals, available, capacity)
    # Written out as computed, validated only when read in Python: a year by hour is 8,760 periods.
    return UsageReport({
        "sites": sorted(sites), "start": span.start, "end": span.end, "granularity": span.granularity,
        "bay_type": bay_type, "periods": periods,
        "total": _usage_period("total", {n: sum(map(itemgetter(n), totals.values())) for n in domain.USAGE_FIELDS},
                               available_total if bay_type is None else None,
                               capacity_total if capacity else None)})


def edge_links(probed: list[Probed]) -> dict[str, tuple[int, datetime | None]]:
    """Per site: (backlog, last heard) of its edge link over every service reading its uplink.

    Services reading the same category receive the same envelopes, so per category the most any one of
    them misses counts (not their sum); the categories are then summed. A site no service has a stream
    of is left out (unknown)."""
    worst: dict[str, dict[str, int]] = {}
    heard: dict[str, datetime | None] = {}
    for service in probed:
        for site_id, link in (service.uplink or {}).items():
            categories = worst.setdefault(site_id, {})
            for category, missing in link.missing.items():
                categories[category] = max(categories.get(category, 0), missing)
            last = heard.get(site_id)
            heard[site_id] = link.heard_at if last is None or (link.heard_at is not None and link.heard_at > last) \
                else last
    return {site_id: (sum(categories.values()), heard[site_id]) for site_id, categories in worst.items()}


def _by_zone(sites: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Site ids grouped by time zone (their hours fall into the same local periods)."""
    zones: dict[str, list[str]] = {}
    for name, site in sorted(sites.items()):
        zones.setdefault(site["time_zone"] or domain.FALLBACK_TIME_ZONE, []).append(name)
    return zones


def _distribution(counts: domain.VehicleDistribution) -> VehicleDistribution:
    return VehicleDistribution(vehicles=counts.vehicles, by_type=counts.by_type, by_make=counts.by_make,
                               by_battery=counts.by_battery)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No garbage collection in the block (code without an ``await``): building a year's report by hour
    makes tens of thousands of objects that all live until it is written out, and each collection
    they trigger would walk them, and the generations they fill, again (some 45 a request)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _usage_periods(totals: dict[str, dict[str, int]], available: dict[str, int],
                   capacity: dict[str, int]) -> list[dict[str, Any]]:
    """:func:`_usage_period` of each period, in label order: the same values, computed faster for the
    8,760 periods of a year by hour (the figures that repeat from one period to the next, minutes and
    rates of small counts, are rounded once each)."""
    minutes: dict[int, float] = {}
    shares: dict[tuple[int, int], float | None] = {}
    rate = domain.rate
    out = []
    for label in sorted(totals):
        f = totals[label]
        occupied_s, energy_wh, kept, no_shows, visits = (f["occupied_s"], f["energy_wh"], f["kept"], f["no_shows"],
                                                         f["visits"])
        idle_s, blocked_s, ok = f["idle_s"], f["blocked_s"], f["first_attempt_ok"]
        idle = minutes.get(idle_s)
        if idle is None:
            idle = minutes[idle_s] = round(idle_s / 60, 1)
        blocked = minutes.get(blocked_s)
        if blocked is None:
            blocked = minutes[blocked_s] = round(blocked_s / 60, 1)
        key = (no_shows, kept + no_shows)
        no_show_rate = shares[key] if key in shares else shares.setdefault(key, rate(*key))
        key = (ok, visits)
        success = shares[key] if key in shares else shares.setdefault(key, rate(*key))
        available_s, capacity_wh = available.get(label), capacity.get(label)
        out.append({
            "period": label, "stays": f["stays"], "charging_sessions": f["sessions"], "energy_wh": energy_wh,
            "energy_kwh": Decimal(energy_wh) / 1000, "occupied_hours": round(occupied_s / 3600, 3),
            "time_utilisation": round(occupied_s / available_s, 4) if available_s else None,
            "energy_utilisation": round(energy_wh / capacity_wh, 4) if capacity_wh else None,
            "idle_minutes": idle, "blocked_minutes": blocked, "reservations": f["reservations"],
            "reservations_kept": kept, "reservations_cancelled": f["cancelled"], "no_shows": no_shows,
            "no_show_rate": no_show_rate, "visits_with_charging": visits, "first_attempt_success": success})
    return out


def _periods_json(hours: WrittenHours, available_s: int | None, capacity_wh: int | None) -> str:
    """Periods of one hour each (``hours``: :meth:`SqlAnalyticsRepository.usage_by_hour_written`; the bay
    seconds and charger Wh of an hour) as the items of a JSON array, in label order: exactly the text
    pydantic writes for :func:`_usage_periods`' dicts. PostgreSQL wrote the integers, the labels (which
    need no escaping) and the kWh (as a Decimal's ``str``); here each rounded figure is written as
    ``repr(round(x, n))`` writes it (:func:`_rounded`, inlined below for the three figures of every hour,
    whose values are checked to lie in its range first), the ones that repeat from hour to hour once."""
    f = hours.figures
    occupied, energy = f["occupied_s"], f["energy_wh"]
    largest = 1e11 * min(3600, available_s or 3600, capacity_wh or 3600)
    if max(occupied, default=0) >= largest or max(energy, default=0) >= largest or min(
            occupied, default=0) < 0 or min(energy, default=0) < 0:  # never for a usage figure: repr writes them
        return _periods_json_by_repr(hours, available_s, capacity_wh)
    minutes: dict[int, str] = {}
    shares: dict[tuple[int, int], str] = {}
    rate = domain.rate
    out: list[str] = []
    append = out.append
    rows = zip(hours.heads, occupied, energy, f["idle_s"], f["blocked_s"], hours.middles, f["no_shows"], f["kept"],
               f["visits"], f["first_attempt_ok"], strict=True)
    heads = hours.heads
    in_order = all(map(operator.lt, heads, heads[1:]))  # PostgreSQL gives them in order, but need not
    for (head, occupied_s, energy_wh, idle_s, blocked_s, middle, no_shows, kept, visits, ok) in (
            rows if in_order else sorted(rows)):
        idle = minutes.get(idle_s)
        if idle is None:
            idle = minutes[idle_s] = _rounded(idle_s / 60, "%.1f")
        blocked = minutes.get(blocked_s)
        if blocked is None:
            blocked = minutes[blocked_s] = _rounded(blocked_s / 60, "%.1f")
        key = (no_shows, kept + no_shows)
        no_show_rate = shares.get(key)
        if no_show_rate is None:
            no_show_rate = shares[key] = _number(rate(*key))
        key = (ok, visits)
        success = shares.get(key)
        if success is None:
            success = shares[key] = _number(rate(*key))
        hours_text = ("%.3f" % (occupied_s / 3600)).rstrip("0")
        if hours_text[-1] == ".":
            hours_text += "0"
        if available_s:
            time_share = ("%.4f" % (occupied_s / available_s)).rstrip("0")
            if time_share[-1] == ".":
                time_share += "0"
        else:
            time_share = "null"
        if capacity_wh:
            energy_share = ("%.4f" % (energy_wh / capacity_wh)).rstrip("0")
            if energy_share[-1] == ".":
                energy_share += "0"
        else:
            energy_share = "null"
        append(f'{head}{hours_text},"time_utilisation":{time_share},"energy_utilisation":{energy_share},'
               f'"idle_minutes":{idle},"blocked_minutes":{blocked},{middle}"no_show_rate":{no_show_rate},'
               f'"visits_with_charging":{visits},"first_attempt_success":{success}}}')
    return ",".join(out)


def _periods_json_by_repr(hours: WrittenHours, available_s: int | None, capacity_wh: int | None) -> str:
    """:func:`_periods_json` for figures out of its range, each rounded figure written by ``repr``."""
    f = hours.figures
    out = []
    for (head, occupied_s, energy_wh, idle_s, blocked_s, middle, no_shows, kept, visits, ok) in sorted(zip(
            hours.heads, f["occupied_s"], f["energy_wh"], f["idle_s"], f["blocked_s"], hours.middles, f["no_shows"],
            f["kept"], f["visits"], f["first_attempt_ok"], strict=True)):
        time_share = repr(round(occupied_s / available_s, 4)) if available_s else "null"
        energy_share = repr(round(energy_wh / capacity_wh, 4)) if capacity_wh else "null"
        out.append(f'{head}{round(occupied_s / 3600, 3)!r},"time_utilisation":{time_share},'
                   f'"energy_utilisation":{energy_share},"idle_minutes":{round(idle_s / 60, 1)!r},'
                   f'"blocked_minutes":{round(blocked_s / 60, 1)!r},{middle}'
                   f'"no_show_rate":{_number(domain.rate(no_shows, kept + no_shows))},"visits_with_charging":{visits},'
                   f'"first_attempt_success":{_number(domain.rate(ok, visits))}}}')
    return ",".join(out)


def _rounded(value: float, places: str) -> str:
    """``repr(round(value, n))`` for ``places`` ``"%.{n}f"`` (n from 1 to 4), at a third less cost: both
    round the float's exact value half to even, and while the floats there are closer together than
    10**-n (below 10**11), the shortest text of the rounded float is those digits without their trailing
    zeros. A usage figure is far below; a larger value is written by repr itself."""
    if not -1e11 < value < 1e11:
        return repr(round(value, int(places[2])))
    written = (places % value).rstrip("0")
    return written + "0" if written[-1] == "." else written


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


def _usage_period(label: str, f: dict[str, int], available_s: int | None, capacity_wh: int | None) -> dict[str, Any]:
    """A :class:`~cloud.analytics.views.UsagePeriod`'s fields, in its order and types (the report is
    written out from them as they are)."""
    rate = domain.rate
    kept, no_shows, visits, energy_wh = f["kept"], f["no_shows"], f["visits"], f["energy_wh"]
    return {
        "period": label, "stays": f["stays"], "charging_sessions": f["sessions"], "energy_wh": energy_wh,
        "energy_kwh": Decimal(energy_wh) / 1000,
        "occupied_hours": round(f["occupied_s"] / 3600, 3), "time_utilisation": rate(f["occupied_s"], available_s or 0),
        "energy_utilisation": rate(energy_wh, capacity_wh or 0), "idle_minutes": round(f["idle_s"] / 60, 1),
        "blocked_minutes": round(f["blocked_s"] / 60, 1), "reservations": f["reservations"],
        "reservations_kept": kept, "reservations_cancelled": f["cancelled"], "no_shows": no_shows,
        "no_show_rate": rate(no_shows, kept + no_shows), "visits_with_charging": visits,
        "first_attempt_success": rate(f["first_attempt_ok"], visits)}
