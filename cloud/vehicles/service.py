"""Vehicle registry use cases, and keeping every site's authorization list in sync."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from cloud.contracts import Received
from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.identity import Principal
from cloud.contracts.parking import BayChanged, BayUsagePeriod, BayUsagePeriodEnded
from cloud.platform.cache import MemoryCache
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.ports import Cache
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from cloud.vehicles import domain, events
from cloud.vehicles.repository import SearchFilters, VehicleRepository
from cloud.vehicles.views import SearchPage, VehicleStatusView, VehicleSummaryView, VehicleTypeView, VehicleView
from mqtt import AuthListUpdate, Command, CommandResult, Envelope, SiteHello, parse_body

log = structlog.get_logger(__name__)

COMMAND_TTL = timedelta(hours=1)

SEARCH_TTL_SECONDS = 60.0
"""How long a popular search's page is served from the cache (every change drops them all)."""
POPULAR_AFTER = 2
"""A search asked this often within :data:`POPULARITY_WINDOW_SECONDS` is cached."""
POPULARITY_WINDOW_SECONDS = 300.0
_GENERATION_KEY = "vehicles:search:generation"
_GENERATION_TTL_SECONDS = 7 * 24 * 3600.0


class CommandSender(Protocol):
    """Port: sends a command to a site. Raises NotConnected when it cannot right now."""

    async def send_command(self, command: Command) -> None: ...


class VehicleService:
    def __init__(self, units: UnitOfWorkFactory[VehicleRepository], *, cache: Cache | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._uow = units
        self._cache: Cache = cache if cache is not None else MemoryCache()
        self._clock = clock
        self.sync_wanted = asyncio.Event()

    # --- the registry ---------------------------------------------------------------------

    async def register(self, user: Principal, command: domain.RegisterVehicle) -> VehicleView:
        """Register a vehicle of the caller (a driver or an admin) with its idTags; every site's
        authorization list gains them."""
        owner_id = domain.check_may_register(user)
        now = self._clock()
        async with self._uow() as uow:
            entry = await self._catalogue_entry(uow.repo, command.vehicle_type_id)
            vehicle, changes = domain.register(command, owner_id=owner_id, vehicle_id=str(uuid.uuid4()), now=now,
                                               catalogue_entry=entry)
            domain.check_unclaimed(vehicle.plate, plate_holder=await uow.repo.find_by_plate(vehicle.plate),
                                   taken_id_tags=await uow.repo.taken_id_tags([t.id_tag for t in vehicle.id_tags]))
            await uow.repo.add(vehicle, changes)
            uow.emit(events.vehicle_registered(vehicle))
        await self._changed()
        log.info("vehicle registered", vehicle_id=vehicle.vehicle_id, id_tags=len(vehicle.id_tags))
        return await self.get(user, vehicle.vehicle_id)

    async def update(self, user: Principal, vehicle_id: str, command: domain.UpdateVehicle) -> VehicleView:
        """Replace what the vehicle is (PUT) over the version the caller read; idTags it no longer
        lists are withdrawn from every site, new ones added."""
        domain.check_may_change(user)
        now = self._clock()
        async with self._uow() as uow:
            vehicle = await uow.repo.get(vehicle_id)
            if vehicle is None or not domain.visible_to(user, vehicle):
                raise domain.unknown_vehicle(vehicle_id)
            entry = await self._catalogue_entry(uow.repo, command.vehicle_type_id)
            result = domain.update(vehicle, command, user, now=now, catalogue_entry=entry)
            holder = await uow.repo.find_by_plate(result.vehicle.plate)
            domain.check_unclaimed(result.vehicle.plate,
                                   plate_holder=holder if holder is not None and holder.vehicle_id != vehicle_id
                                   else None,
                                   taken_id_tags=await uow.repo.taken_id_tags(
                                       [t.id_tag for t in result.vehicle.id_tags], except_vehicle=vehicle_id))
            await uow.repo.save(result.vehicle, result.changes, expected_version=vehicle.version,
                                new_registration=result.new_registration)
            uow.emit(events.vehicle_updated(result.vehicle))
        await self._changed()
        log.info("vehicle updated", vehicle_id=vehicle_id, version=result.vehicle.version)
        return await self.get(user, vehicle_id)

    async def delete(self, user: Principal, vehicle_id: str) -> None:
        """Delete the caller's vehicle (an admin: any); its idTags are withdrawn from every site's
        authorization list (Invalid), its registration history is closed and kept."""
        domain.check_may_change(user)
        async with self._uow() as uow:
            vehicle = await uow.repo.get(vehicle_id)
            if vehicle is None or not domain.visible_to(user, vehicle):
                raise domain.unknown_vehicle(vehicle_id)
            vehicle.updated_at = self._clock()
            await uow.repo.delete(vehicle, domain.withdraw(vehicle, vehicle.updated_at))
            uow.emit(events.vehicle_deleted(vehicle))
        await self._changed()
        log.info("vehicle deleted", vehicle_id=vehicle_id, id_tags=len(vehicle.id_tags))

    async def get(self, user: Principal, vehicle_id: str) -> VehicleView:
        """A vehicle the caller may see, its idTags, and whether each site can authorize them offline;
        any other vehicle is not found, exactly as an unknown one."""
        async with self._uow() as uow:
            vehicle = await uow.repo.get(vehicle_id)
            if vehicle is None or not domain.visible_to(user, vehicle):
                raise domain.unknown_vehicle(vehicle_id)
            return await self._view(uow.repo, vehicle)

    async def find_by_plate(self, user: Principal, plate: str) -> list[VehicleView]:
        """The caller's vehicle with this plate (any vehicle for an admin), as a list (empty when
        none is registered, or when it is not the caller's)."""
        domain.check_may_search(user)
        normalised = domain.normalise_plate(plate)
        async with self._uow() as uow:
            vehicle = await uow.repo.find_by_plate(normalised)
            if vehicle is None or not domain.visible_to(user, vehicle):
                return []
            return [await self._view(uow.repo, vehicle)]

    async def search(self, user: Principal, filters: SearchFilters, *, limit: int, offset: int) -> SearchPage:
        """A page of the vehicles the caller may list that match ``filters``; a search asked often is
        served from the cache until the registry changes."""
        scope = domain.search_scope(user, by_owner=filters.owner_id is not None)
        for name in ("plate", "make", "model", "owner_id"):
            domain.check_text(name, getattr(filters, name))
        if filters.kind is not None:
            domain.check_kind(filters.kind)
        if scope.owner_id is not None:
            filters = replace(filters, owner_id=scope.owner_id)
        generation = await self._cache_get(_GENERATION_KEY)  # read first: a change meanwhile retires the page
        digest = hashlib.sha256(json.dumps([scope.key, filters.kind, filters.plate and domain.plate_key(filters.plate),
                                            filters.make and filters.make.lower(),
                                            filters.model and filters.model.lower(), filters.owner_id, limit, offset])
                                .encode()).hexdigest()[:32]
        key = f"vehicles:search:{(generation or b'0').decode()}:{digest}"
        cached = await self._cache_get(key)
        if cached is not None:
            return SearchPage.model_validate_json(cached)
        async with self._uow() as uow:
            vehicles, total = await uow.repo.search(filters, limit=limit, offset=offset)
        page = SearchPage(vehicles=[VehicleSummaryView.of(v, scope) for v in vehicles], total=total,
                          limit=limit, offset=offset)
        try:
            if await self._cache.incr(f"vehicles:search-hits:{digest}", POPULARITY_WINDOW_SECONDS) >= POPULAR_AFTER:
                await self._cache.set(key, page.model_dump_json().encode(), SEARCH_TTL_SECONDS)
        except Exception as exc:  # the cache is an optimisation: a search never fails for it
            log.warning("search cache unavailable", error=repr(exc))
        return page

    async def status(self, user: Principal, vehicle_id: str) -> VehicleStatusView:
        """Where the caller's vehicle (an admin: any) is parked, whether it charges, whether it is
        reserved; another's vehicle is a 404, exactly as an unknown one."""
        async with self._uow() as uow:
            vehicle = await uow.repo.get(vehicle_id)
            if vehicle is None or not domain.visible_to(user, vehicle):
                raise domain.unknown_vehicle(vehicle_id)
            return VehicleStatusView.of(vehicle_id, await uow.repo.get_status(vehicle_id))

    # --- the vehicle-type catalogue -------------------------------------------------------------

    async def types(self, user: Principal) -> list[VehicleTypeView]:
        domain.check_may_read_types(user)
        async with self._uow() as uow:
            return [VehicleTypeView.of(t) for t in await uow.repo.types()]

    async def get_type(self, user: Principal, type_id: str) -> VehicleTypeView:
        domain.check_may_read_types(user)
        async with self._uow() as uow:
            entry = await uow.repo.get_type(type_id)
        if entry is None:
            raise domain.unknown_type(type_id)
        return VehicleTypeView.of(entry)

    async def add_type(self, user: Principal, entry: domain.VehicleType) -> VehicleTypeView:
        domain.check_may_edit_types(user)
        checked = _checked_type(entry, type_id=entry.type_id or str(uuid.uuid4()), version=1)
        async with self._uow() as uow:
            await uow.repo.save_type(checked, new=True)
        return VehicleTypeView.of(checked)

    async def update_type(self, user: Principal, type_id: str, entry: domain.VehicleType) -> VehicleTypeView:
        """Replace an entry over the version the admin read (stale: 409)."""
        domain.check_may_edit_types(user)
        async with self._uow() as uow:
            current = await uow.repo.get_type(type_id)
            if current is None:
                raise domain.unknown_type(type_id)
            if entry.version != current.version:
                raise domain.Conflict(f"vehicle type {type_id!r} is at version {current.version}, not "
                                      f"{entry.version}", code="stale_version")
            checked = _checked_type(entry, type_id=type_id, version=current.version + 1)
            await uow.repo.save_type(checked, new=False)
        return VehicleTypeView.of(checked)

    # --- where vehicles are: parking.* and charging.* events ------------------------------------

    async def on_charging_started(self, event: Received[ChargingStarted]) -> None:
        body = event.body
        if body.vehicle_id is None:
            return
        async with self._uow() as uow:
            if not await uow.claim(str(event.id), events.STATUS_QUEUE) or await uow.repo.get(body.vehicle_id) is None:
                return
            status = await uow.repo.get_status(body.vehicle_id) or domain.VehicleStatus(vehicle_id=body.vehicle_id)
            if status.session_id == body.session_id and not status.charging:
                return  # its completion came first: the session is over
            bay = await uow.repo.bay_served_by(body.site_id, body.charger_id, body.connector_id)
            status.charging_started(session_id=body.session_id, site_id=body.site_id, charger_id=body.charger_id,
                                    connector_id=body.connector_id, started_at=body.started_at,
                                    energy_wh=body.energy_wh, bay=bay, now=self._clock())
            await uow.repo.save_status(status)

    async def on_charging_completed(self, event: Received[ChargingCompleted]) -> None:
        body = event.body
        if body.vehicle_id is None:
            return
        async with self._uow() as uow:
            if not await uow.claim(str(event.id), events.STATUS_QUEUE) or await uow.repo.get(body.vehicle_id) is None:
                return
            status = await uow.repo.get_status(body.vehicle_id)
            if status is None:  # its start never came: only the end is known
                status = domain.VehicleStatus(vehicle_id=body.vehicle_id, site_id=body.site_id,
                                              charger_id=body.charger_id, connector_id=body.connector_id)
            bay = await uow.repo.get_bay(status.site_id, status.bay_id) if status.site_id and status.bay_id else None
            status.charging_completed(session_id=body.session_id, energy_wh=body.energy_wh,
                                      bay_occupied=bay.occupied if bay is not None else None, now=self._clock())
            await uow.repo.save_status(status)

    async def on_bay_changed(self, event: Received[BayChanged]) -> None:
        body = event.body
        async with self._uow() as uow:
            if not await uow.claim(str(event.id), events.STATUS_QUEUE):
                return
            bay = await uow.repo.get_bay(body.site_id, body.bay_id) or domain.BayLink(body.site_id, body.bay_id)
            if bay.since is not None and body.changed_at < bay.since:
                return  # an older reading than the one we have
            bay.occupied = {"occupied": True, "free": False}.get(body.state)
            bay.since = body.changed_at
            await uow.repo.save_bay(bay)
            if body.state == "free":
                await self._bay_freed(uow.repo, bay, body.changed_at)

    async def on_bay_usage(self, event: Received[BayUsagePeriod]) -> None:
        """An idle or overstay period started or ended: it names the charger connector serving the bay."""
        body = event.body
        async with self._uow() as uow:
            if not await uow.claim(str(event.id), events.STATUS_QUEUE):
                return
            bay = await uow.repo.get_bay(body.site_id, body.bay_id) or domain.BayLink(body.site_id, body.bay_id)
            if body.charger_id is not None:
                bay.charger_id, bay.connector_id = body.charger_id, body.connector_id
                await uow.repo.save_bay(bay)
                now = self._clock()
                for status in await uow.repo.statuses_at(body.site_id, body.charger_id):
                    if domain.serves(bay, status):
                        status.in_bay(bay, now)
                        await uow.repo.save_status(status)
            if isinstance(body, BayUsagePeriodEnded) and body.next_state == "free":
                await self._bay_freed(uow.repo, bay, body.ended_at)

    async def _bay_freed(self, repo: VehicleRepository, bay: domain.BayLink, at: datetime) -> None:
        now = self._clock()
        for status in await repo.statuses_at(bay.site_id, bay_id=bay.bay_id):
            status.bay_freed(at, now)
            await repo.save_status(status)

    # --- helpers -----------------------------------------------------------------------------

    async def _changed(self) -> None:
        """The registry changed: every site may lag, and every cached search is stale."""
        self.sync_wanted.set()
        try:
            await self._cache.incr(_GENERATION_KEY, _GENERATION_TTL_SECONDS)
        except Exception as exc:
            log.warning("search cache not invalidated", error=repr(exc))

    async def _cache_get(self, key: str) -> bytes | None:
        try:
            return await self._cache.get(key)
        except Exception as exc:
            log.warning("search cache unavailable", error=repr(exc))
            return None

    @staticmethod
    async def _catalogue_entry(repo: VehicleRepository, type_id: str | None) -> domain.VehicleType | None:
        if type_id is None:
            return None
        entry = await repo.get_type(type_id)
        if entry is None:
            raise domain.InvalidVehicle(f"vehicle_type_id {type_id!r} is not in the catalogue "
                                        "(GET /vehicles/types)", code="unknown_vehicle_type", field="vehicle_type_id")
        return entry

    @staticmethod
    async def _view(repo: VehicleRepository, vehicle: domain.Vehicle) -> VehicleView:
        needed = await repo.version_needed_by(vehicle.vehicle_id)
        return VehicleView.of(vehicle, await repo.sites(), needed_version=needed,
                              registrations=await repo.registrations(vehicle.vehicle_id))

    # --- authorization list sync with the sites --------------------------------------

    async def on_site_message(self, uow: UnitOfWork[VehicleRepository], envelope: Envelope) -> None:
        """A site said hello or answered a command: note which list version it has."""
        body = parse_body(envelope.type, envelope.body)
        now = self._clock()
        site = await uow.repo.get_site(envelope.site_id) or domain.SiteSync(site_id=envelope.site_id, last_seen_at=now)
        site.last_seen_at = now
        if isinstance(body, SiteHello):
            site.said_hello(body, await uow.repo.current_version())
        elif isinstance(body, CommandResult):
            site.answered(body)
        await uow.repo.save_site(site)
        self.sync_wanted.set()

    async def sync_sites_once(self, sender: CommandSender) -> int:
        """Send each lagging site the changes it lacks; returns how many commands went out."""
        now = self._clock()
        async with self._uow() as uow:
            current = await uow.repo.current_version()
            due = [site for site in await uow.repo.sites_behind(current) if site.needs_update(current, now)]
            updates: dict[int, AuthListUpdate] = {}
            for site in due:
                if site.synced_version not in updates:
                    updates[site.synced_version] = await self._update_for(uow.repo, site.synced_version, current)
        sent = 0
        for site in due:
            command = Command.new(site.site_id, updates[site.synced_version], ttl=COMMAND_TTL, now=now)
            # Stored before it is sent: a site answers within milliseconds, and its result must
            # find the command pending (else it is ignored and the site waits RESEND_AFTER).
            await self._mark_sending(site.site_id, str(command.id), current, now)
            try:
                await sender.send_command(command)
            except NotConnected:
                await self._mark_not_sent(site.site_id, str(command.id))
                return sent
            sent += 1
        return sent

    async def run_sync(self, sender: CommandSender, *, interval: float = 5.0) -> None:
        while True:
            self.sync_wanted.clear()
            try:
                await self.sync_sites_once(sender)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database away: try again next round
                log.warning("authorization sync failed; will retry", error=repr(exc))
            with suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                    await self.sync_wanted.wait()

    async def _mark_sending(self, site_id: str, command_id: str, version: int, now: datetime) -> None:
        async with self._uow() as uow:
            site = await uow.repo.get_site(site_id)
            if site is not None:
                site.sending(command_id, version, now)
                await uow.repo.save_site(site)

    async def _mark_not_sent(self, site_id: str, command_id: str) -> None:
        async with self._uow() as uow:
            site = await uow.repo.get_site(site_id)
            if site is not None:
                site.not_sent(command_id)
                await uow.repo.save_site(site)

    @staticmethod
    async def _update_for(repo: VehicleRepository, since: int, current: int) -> AuthListUpdate:
        if domain.needs_full_list(since):
            return domain.full_update(current, await repo.all_id_tags())
        return domain.changes_update(since, current, await repo.changes_since(since))


def _checked_type(entry: domain.VehicleType, *, type_id: str, version: int) -> domain.VehicleType:
    return domain.vehicle_type(type_id, make=entry.make, model=entry.model, battery_kwh=entry.battery_kwh,
                               max_ac_kw=entry.max_ac_kw, max_dc_kw=entry.max_dc_kw,
                               connector_types=entry.connector_types, kind=entry.kind, source=entry.source,
                               version=version)
