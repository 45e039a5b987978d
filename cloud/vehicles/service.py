"""Vehicle registry use cases, and keeping every site's authorization list in sync."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from cloud.contracts.identity import Principal
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory
from cloud.vehicles import domain, events
from cloud.vehicles.repository import VehicleRepository
from cloud.vehicles.views import VehicleView
from mqtt import AuthListUpdate, Command, CommandResult, Envelope, SiteHello, parse_body

log = structlog.get_logger(__name__)

COMMAND_TTL = timedelta(hours=1)


class CommandSender(Protocol):
    """Port: sends a command to a site. Raises NotConnected when it cannot right now."""

    async def send_command(self, command: Command) -> None: ...


class VehicleService:
    def __init__(self, units: UnitOfWorkFactory[VehicleRepository], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._uow = units
        self._clock = clock
        self.sync_wanted = asyncio.Event()

    async def register(self, user: Principal, command: domain.RegisterVehicle) -> VehicleView:
        """Register a vehicle of the caller (a driver or an admin) with its idTags; every site's
        authorization list gains them."""
        owner_id = domain.check_may_register(user)
        vehicle, changes = domain.register(command, owner_id=owner_id, vehicle_id=str(uuid.uuid4()),
                                           now=self._clock())
        async with self._uow() as uow:
            domain.check_unclaimed(vehicle.plate, plate_holder=await uow.repo.find_by_plate(vehicle.plate),
                                   taken_id_tags=await uow.repo.taken_id_tags([t.id_tag for t in vehicle.id_tags]))
            await uow.repo.add(vehicle, changes)
            uow.emit(events.vehicle_registered(vehicle))
        self.sync_wanted.set()
        log.info("vehicle registered", vehicle_id=vehicle.vehicle_id, id_tags=len(vehicle.id_tags))
        return await self.get(user, vehicle.vehicle_id)

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

    @staticmethod
    async def _view(repo: VehicleRepository, vehicle: domain.Vehicle) -> VehicleView:
        needed = await repo.version_needed_by(vehicle.vehicle_id)
        return VehicleView.of(vehicle, await repo.sites(), needed_version=needed)

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
                await asyncio.wait_for(self.sync_wanted.wait(), interval)

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
