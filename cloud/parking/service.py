"""Parking use cases: keep each site's bays as their sensors and chargers report them, answer
availability, and carry an operator's power limit to the site.

Every read and request of the REST API takes the caller (:class:`Principal`) and asks the domain
whether they may (``domain.check_may_*``) before it reads anything: a driver sees availability
only; a site's details are for its operators and technicians and for admins; its power limit is
changed by its operators and admins. The sites' own messages (MQTT) need no caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Protocol

import structlog

from cloud.contracts.identity import Principal
from cloud.parking import domain, events
from cloud.parking.domain import Bay, Site
from cloud.parking.repository import ParkingRepository
from cloud.parking.views import AvailabilityOut, BaysOut, ChargerStationsOut, PowerLimitOut, SiteListed, SiteOut
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.ports import Cache
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from mqtt import (
    BayOccupancy,
    BayUsage,
    Command,
    CommandResult,
    Envelope,
    OutboxDropped,
    SetPowerLimit,
    SiteHello,
    SiteInventory,
    parse_body,
)
from mqtt.link import LinkStatus

log = structlog.get_logger(__name__)

AVAILABILITY_TTL_SECONDS = 10.0

Work = UnitOfWork[ParkingRepository]


class CommandSender(Protocol):
    """Port: sends a command to a site. Raises NotConnected when it cannot right now."""

    async def send_command(self, command: Command) -> None: ...


class ParkingService:
    def __init__(self, uow: UnitOfWorkFactory[ParkingRepository], cache: Cache) -> None:
        self._uow = uow
        self._cache = cache
        self.power_sync_wanted = asyncio.Event()
        """Set when a power-limit command may be due; wakes :meth:`run_power_limit_sync`."""

    # --- messages of the sites' edges ------------------------------------------------------

    async def record_site_message(self, uow: Work, envelope: Envelope) -> None:
        """A message of a site's edge (already deduplicated by the inbox), in the link's unit of work."""
        await self._record_site(uow, envelope, parse_body(envelope.type, envelope.body))
        await self._cache.delete(_availability_key(envelope.site_id))

    async def record_site_messages(self, uow: Work, envelopes: Sequence[Envelope],
                                   then: Callable[[Envelope], Awaitable[None]] | None = None) -> None:
        """The new envelopes of one MQTT batch: the rules of :meth:`record_site_message` on each in turn (and
        ``then``, e.g. the bookings' part, right after each), with the batch's sites locked and its bays read by
        one query each first (``uow.repo.preload``) and the availability cache of its sites dropped with one
        call at the end."""
        parsed = [(envelope, parse_body(envelope.type, envelope.body)) for envelope in envelopes]
        await uow.repo.preload([envelope.site_id for envelope in envelopes],
                               [(envelope.site_id, body.bay_id) for envelope, body in parsed
                                if isinstance(body, BayOccupancy | BayUsage)])
        for envelope, body in parsed:
            await self._record_site(uow, envelope, body)
            if then is not None:
                await then(envelope)
        await self._cache.delete_many(sorted({_availability_key(envelope.site_id) for envelope in envelopes}))

    async def _record_site(self, uow: Work, envelope: Envelope, body: object) -> None:
        now = datetime.now(UTC)
        site = await uow.repo.lock_site(envelope.site_id) or Site(site_id=envelope.site_id)
        site.seen(now)
        if isinstance(body, BayOccupancy):
            await self._record_occupancy(uow, envelope.site_id, body)
        elif isinstance(body, BayUsage):
            await self._record_usage(uow, envelope, body, now)
        elif isinstance(body, SiteInventory):
            await self._mirror_inventory(uow, site, envelope, body, now)
        elif isinstance(body, OutboxDropped):
            site.record_drop(body)
            log.warning("site uplink dropped messages", site_id=site.site_id, dropped=body.dropped,
                        policy=body.policy, by_type=body.by_type)
        elif isinstance(body, SiteHello):
            if site.reconnected(now):
                uow.repo.after_commit(self.power_sync_wanted.set)
            self._link_changed(uow, site, site.said_hello(now))
        elif isinstance(body, CommandResult) and body.command_type == SetPowerLimit.TYPE:
            self._settle_power_limit(uow, site, body, envelope.ts, now)
        await uow.repo.save_site(site)

    async def record_link_status(self, uow: Work, site_id: str, status: LinkStatus) -> None:
        """The site's retained link status or its last will (idempotent: a copy changes nothing)."""
        now = datetime.now(UTC)
        site = await uow.repo.lock_site(site_id) or Site(site_id=site_id)
        self._link_changed(uow, site, site.report_link(status, now))
        await uow.repo.save_site(site)

    def _link_changed(self, uow: Work, site: Site, change: domain.LinkChange | None) -> None:
        if change is None:
            return
        log.info("site link changed", site_id=site.site_id, state=change.state, reason=change.reason)
        uow.emit(events.link_changed(site, change))

    async def _mirror_inventory(self, uow: Work, site: Site, envelope: Envelope, inventory: SiteInventory,
                                now: datetime) -> None:
        mirrored = domain.mirror_inventory(site, await uow.repo.bays_of(site.site_id),
                                           await uow.repo.stations_of(site.site_id), inventory, envelope.ts, now)
        if mirrored is None:
            return
        for bay in mirrored.bays:
            await uow.repo.save_bay(bay)
        for station in mirrored.stations:
            await uow.repo.save_station(station)
        uow.emit(events.inventory_changed(site, mirrored))

    async def _record_occupancy(self, uow: Work, site_id: str, report: BayOccupancy) -> None:
        now = datetime.now(UTC)
        bay = await uow.repo.get_bay(site_id, report.bay_id)
        if bay is None:
            bay = Bay.sensed(site_id, report, now)
            changed = True
        else:
            changed = domain.apply_occupancy(bay, report, now)
        await uow.repo.save_bay(bay)
        if changed:
            uow.emit(events.bay_changed(bay))

    async def _record_usage(self, uow: Work, envelope: Envelope, report: BayUsage, now: datetime) -> None:
        # usage may come before the inventory or the sensor named the bay
        bay = await uow.repo.get_bay(envelope.site_id, report.bay_id) or Bay.unreported(
            envelope.site_id, report.bay_id, now)
        change = domain.apply_usage(bay, report, envelope.ts, now)
        if change is None:
            log.info("stale bay usage ignored", site_id=envelope.site_id, bay_id=report.bay_id, id=str(envelope.id))
            return
        await uow.repo.save_bay(bay)
        if change.ended is not None:
            uow.emit(events.usage_ended(bay, change.ended))
        if change.started is not None:
            uow.emit(events.usage_started(bay, change.started))

    def _settle_power_limit(self, uow: Work, site: Site, result: CommandResult, reported_at: datetime,
                            now: datetime) -> None:
        status = site.settle_power_limit(result, reported_at, now)
        if status == domain.PENDING:  # the command expired before the edge could apply it: a fresh one is due
            uow.repo.after_commit(self.power_sync_wanted.set)
        elif status is not None:
            log.info("power limit settled", site_id=site.site_id, status=status, detail=result.detail)

    # --- reads -------------------------------------------------------------------------------

    async def bays(self, user: Principal, site_id: str, usage: Collection[str] | None = None) -> BaysOut:
        """Bays in service; with ``usage``, only those whose last usage report is one of them."""
        domain.check_may_see_site(user, site_id, hidden=domain.no_bays(site_id))
        return BaysOut.of(site_id, [bay for bay in await self._bays_of(site_id)
                                    if bay.in_service and (not usage or bay.usage in usage)])

    async def chargers(self, user: Principal, site_id: str) -> ChargerStationsOut:
        """The site's charger stations in service."""
        domain.check_may_see_site(user, site_id, hidden=domain.no_chargers(site_id))
        async with self._uow() as uow:
            stations = [station for station in await uow.repo.stations_of(site_id) if station.in_service]
        if not stations:
            raise domain.no_chargers(site_id)
        return ChargerStationsOut.of(site_id, stations)

    async def availability(self, user: Principal, site_id: str) -> AvailabilityOut:
        """How many bays in service are free, occupied or unknown (cached for a few seconds)."""
        domain.check_may_see_availability(user)
        cached = await self._cache.get(_availability_key(site_id))
        if cached is not None:
            return AvailabilityOut.model_validate_json(cached)
        result = AvailabilityOut.of(site_id, domain.Availability.of(await self._bays_of(site_id)))
        await self._cache.set(_availability_key(site_id), result.model_dump_json().encode(), AVAILABILITY_TTL_SECONDS)
        return result

    async def site(self, user: Principal, site_id: str) -> SiteOut:
        """The site: its inventory in numbers, its power limit, and what its uplink dropped."""
        domain.check_may_see_site(user, site_id, hidden=domain.unknown_site(site_id))
        async with self._uow() as uow:
            site = await uow.repo.get_site(site_id)
            if site is None:
                raise domain.unknown_site(site_id)
            bays, chargers = await uow.repo.in_service_counts(site_id)
        return SiteOut.of(site, bays, chargers)

    async def _bays_of(self, site_id: str) -> list[Bay]:
        async with self._uow() as uow:
            bays = await uow.repo.bays_of(site_id)
        if not bays:
            raise domain.no_bays(site_id)
        return bays

    # --- the list of sites (operator tools: `evpark sites`) ------------------------------------

    async def register_site(self, site_id: str, provision: Callable[[str], Awaitable[None]]) -> None:
        """Register ``site_id`` and run ``provision(site_id)`` (its broker credentials) in the same
        unit of work: if provisioning fails, nothing is registered. A site known from its messages
        is registered once like a new one; a registered one is :class:`domain.SiteExists`."""
        domain.check_new_site_id(site_id)
        async with self._uow() as uow:
            site = await uow.repo.lock_site(site_id) or Site(site_id=site_id)
            site.register(datetime.now(UTC))
            await uow.repo.save_site(site)
            await provision(site_id)

    async def list_sites(self) -> list[SiteListed]:
        async with self._uow() as uow:
            return [SiteListed.of(site) for site in await uow.repo.all_sites()]

    async def remove_site(self, site_id: str, deprovision: Callable[[str], Awaitable[None]]) -> None:
        """Forget the site and run ``deprovision(site_id)`` (remove its broker credentials) in the same
        unit of work. Its bays and chargers stay; a message it still sends makes it known again."""
        async with self._uow() as uow:
            if await uow.repo.lock_site(site_id) is None:
                raise domain.unknown_site(site_id)
            await uow.repo.delete_site(site_id)
            await deprovision(site_id)

    # --- the site's power limit ----------------------------------------------------------------

    async def power_limit(self, user: Principal, site_id: str) -> PowerLimitOut:
        """The limit last requested for the site, its status, and the limit the site applies."""
        domain.check_may_see_site(user, site_id, hidden=domain.unknown_site(site_id))
        async with self._uow() as uow:
            site = await uow.repo.get_site(site_id)
        if site is None:
            raise domain.unknown_site(site_id)
        return PowerLimitOut.of(site)

    def check_may_change_power_limit(self, user: Principal, site_id: str) -> None:
        """Refuse a caller who may not change the site's power limit (before their request is read)."""
        domain.check_may_change_power_limit(user, site_id)

    async def request_power_limit(self, user: Principal, site_id: str, *, limit_a: float | None,
                                  limit_w: float | None) -> PowerLimitOut:
        """Store the limit as pending and let the sync loop send it to the site (at once when the
        MQTT link is up, otherwise as soon as it is). The same limit asked again while it is
        pending is the same request: nothing new is sent. The caller is checked before the limit."""
        domain.check_may_change_power_limit(user, site_id)
        domain.check_power_limit(limit_a, limit_w)
        now = datetime.now(UTC)
        async with self._uow() as uow:
            site = await uow.repo.lock_site(site_id)
            if site is None:
                raise domain.unknown_site(site_id)
            command = site.request_power_limit(limit_a, limit_w, now)
            await uow.repo.save_site(site)
        if command is not None:
            log.info("power limit requested", site_id=site_id, limit_a=limit_a, limit_w=limit_w,
                     command_id=str(command.id))
        self.power_sync_wanted.set()
        return PowerLimitOut.of(site)

    async def send_due_power_limits(self, sender: CommandSender) -> tuple[int, bool]:
        """Send every due site.set_power_limit command; returns (sent, stopped because not connected)."""
        now = datetime.now(UTC)
        async with self._uow() as uow:
            due = await uow.repo.sites_with_power_due(now)
        sent = 0
        for site_id in due:
            command = await self._command_to_send(site_id, now)
            if command is None:
                continue
            try:
                await sender.send_command(command)
            except NotConnected:
                return sent, True
            await self._mark_sent(site_id, command, datetime.now(UTC))
            sent += 1
        return sent, False

    async def _command_to_send(self, site_id: str, now: datetime) -> Command | None:
        async with self._uow() as uow:
            site = await uow.repo.lock_site(site_id)
            if site is None:
                return None
            command = site.power_command_due(now)
            await uow.repo.save_site(site)
        return command

    async def _mark_sent(self, site_id: str, command: Command, now: datetime) -> None:
        async with self._uow() as uow:
            site = await uow.repo.lock_site(site_id)
            if site is None or not site.power_command_sent(str(command.id), now):
                return  # a newer request replaced it meanwhile
            await uow.repo.save_site(site)
        log.info("power limit command sent", site_id=site_id, command_id=str(command.id), body=command.body)

    async def run_power_limit_sync(self, sender: CommandSender, *, interval: float = 5.0,
                                   retry: float = 1.0) -> None:
        """Send due power-limit commands whenever woken, and every ``interval`` seconds (every
        ``retry`` seconds while the MQTT link is down and a command waits)."""
        while True:
            self.power_sync_wanted.clear()
            wait = interval
            try:
                _, blocked = await self.send_due_power_limits(sender)
                if blocked:
                    wait = retry
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: try again next round
                log.warning("power limit sync failed; will retry", error=repr(exc))
            with suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                    await self.power_sync_wanted.wait()


def _availability_key(site_id: str) -> str:
    return f"parking:availability:{site_id}"
