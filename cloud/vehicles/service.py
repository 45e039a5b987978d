"""Vehicle registry use cases, and keeping every site's authorization list in sync."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import func
from sqlmodel import col, select

from cloud.platform.errors import Conflict, NotFound
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.outbox import Outbox, Transaction
from cloud.vehicles import domain, events
from cloud.vehicles.models import AuthListChange, IdTag, Site, Vehicle
from mqtt import (
    AuthListEntry,
    AuthListUpdate,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    IdTagStatus,
    SiteHello,
    parse_body,
)

log = structlog.get_logger(__name__)

COMMAND_TTL = timedelta(hours=1)
RESEND_AFTER = timedelta(minutes=10)
"""A site that reconnects says hello and is resynced at once; resending to a site that is away
would only pile duplicate commands up in its broker queue."""


class CommandSender(Protocol):
    """Port: sends a command to a site. Raises NotConnected when it cannot right now."""

    async def send_command(self, command: Command) -> None: ...


class VehicleService:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self.sync_wanted = asyncio.Event()

    async def register(self, command: domain.RegisterVehicle) -> dict[str, object]:
        plate = domain.normalise_plate(command.plate)
        id_tags = domain.check_id_tags(command.id_tags)
        now = datetime.now(UTC)
        vehicle_id = str(uuid.uuid4())
        async with self._outbox.transaction() as tx:
            session = tx.session
            if await session.scalar(select(Vehicle.id).where(col(Vehicle.plate) == plate)):
                raise Conflict(f"a vehicle with plate {plate!r} is already registered", code="plate_taken")
            taken = list((await session.execute(
                select(IdTag.id_tag).where(col(IdTag.id_tag).in_(id_tags)))).scalars())
            if taken:
                raise Conflict(f"idTag(s) {', '.join(taken)} already belong to another vehicle",
                               code="id_tag_taken")
            vehicle = Vehicle(id=vehicle_id, plate=plate, make=command.make, model=command.model, created_at=now)
            session.add(vehicle)
            await session.flush()
            for tag in id_tags:
                session.add(IdTag(id_tag=tag, vehicle_id=vehicle_id, status=IdTagStatus.ACCEPTED, created_at=now))
                session.add(AuthListChange(id_tag=tag, status=IdTagStatus.ACCEPTED, vehicle_id=vehicle_id,
                                           changed_at=now))
            tx.emit(events.vehicle_registered(vehicle_id, plate, list(id_tags)))
        self.sync_wanted.set()
        log.info("vehicle registered", vehicle_id=vehicle_id, id_tags=len(id_tags))
        return await self.get(vehicle_id)

    async def get(self, vehicle_id: str) -> dict[str, object]:
        async with self._outbox.db.session() as session:
            vehicle = await session.get(Vehicle, vehicle_id)
            if vehicle is None:
                raise NotFound(f"no vehicle {vehicle_id!r}", code="unknown_vehicle")
            tags = (await session.execute(select(IdTag).where(col(IdTag.vehicle_id) == vehicle_id)
                                          .order_by(IdTag.id_tag))).scalars().all()
            needed = await session.scalar(select(func.max(col(AuthListChange.version)))
                                          .where(col(AuthListChange.vehicle_id) == vehicle_id)) or 0
            sites = (await session.execute(select(Site).order_by(col(Site.site_id)))).scalars().all()
        return {
            "vehicle_id": vehicle.id,
            "plate": vehicle.plate,
            "make": vehicle.make,
            "model": vehicle.model,
            "created_at": vehicle.created_at,
            "id_tags": [{"id_tag": t.id_tag, "status": t.status} for t in tags],
            "sites": [{"site_id": s.site_id, "authorization_synced": s.synced_version >= needed}
                      for s in sites],
        }

    async def find_by_plate(self, plate: str) -> list[dict[str, object]]:
        normalised = domain.normalise_plate(plate)
        async with self._outbox.db.session() as session:
            vehicle_id = await session.scalar(select(Vehicle.id).where(col(Vehicle.plate) == normalised))
        return [await self.get(vehicle_id)] if vehicle_id else []

    # --- authorization list sync with the sites --------------------------------------

    async def on_site_message(self, tx: Transaction, envelope: Envelope) -> None:
        body = parse_body(envelope.type, envelope.body)
        now = datetime.now(UTC)
        site = await tx.session.get(Site, envelope.site_id)
        if site is None:
            site = Site(site_id=envelope.site_id, last_seen_at=now)
            tx.session.add(site)
        site.last_seen_at = now
        if isinstance(body, SiteHello):
            current = await self._current_version(tx)
            # A site that claims a version we never issued (our database was restored from an
            # older backup) gets the full list again.
            site.synced_version = body.authlist_version if body.authlist_version <= current else 0
            site.pending_command_id = None
            site.pending_version = None
        elif (isinstance(body, CommandResult) and body.command_type == AuthListUpdate.TYPE
              and site.pending_command_id == str(body.command_id)):
            if body.status == CommandStatus.ACCEPTED and site.pending_version is not None:
                site.synced_version = max(site.synced_version, site.pending_version)
            site.pending_command_id = None
            site.pending_version = None
        self.sync_wanted.set()

    async def sync_sites_once(self, sender: CommandSender) -> int:
        """Send each lagging site the changes it lacks; returns how many commands went out."""
        now = datetime.now(UTC)
        sent = 0
        async with self._outbox.db.session() as session:
            current = await session.scalar(select(func.max(col(AuthListChange.version)))) or 0
            sites = (await session.execute(select(Site).where(col(Site.synced_version) < current))).scalars().all()
        for site in sites:
            if site.pending_sent_at and site.pending_command_id and now - site.pending_sent_at < RESEND_AFTER:
                continue
            update = await self._update_for(site.synced_version, current)
            command = Command.new(site.site_id, update, ttl=COMMAND_TTL, now=now)
            # Stored before it is sent: a site answers within milliseconds, and its result must
            # find the command pending (else it is ignored and the site waits RESEND_AFTER).
            await self._set_pending(site.site_id, command.id, current, now)
            try:
                await sender.send_command(command)
            except NotConnected:
                await self._set_pending(site.site_id, None, None, None, only_if=command.id)
                return sent
            sent += 1
        return sent

    async def _set_pending(self, site_id: str, command_id: uuid.UUID | None, version: int | None,
                           sent_at: datetime | None, *, only_if: uuid.UUID | None = None) -> None:
        async with self._outbox.transaction() as tx:
            stored = await tx.session.get(Site, site_id)
            if stored is None or (only_if is not None and stored.pending_command_id != str(only_if)):
                return
            stored.pending_command_id = None if command_id is None else str(command_id)
            stored.pending_version = version
            stored.pending_sent_at = sent_at

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

    async def _current_version(self, tx: Transaction) -> int:
        return await tx.session.scalar(select(func.max(col(AuthListChange.version)))) or 0

    async def _update_for(self, since: int, current: int) -> AuthListUpdate:
        async with self._outbox.db.session() as session:
            if since == 0:
                tags = (await session.execute(select(IdTag).order_by(col(IdTag.id_tag)))).scalars().all()
                entries = [AuthListEntry(id_tag=t.id_tag, status=IdTagStatus(t.status), vehicle_id=t.vehicle_id)
                           for t in tags]
                return AuthListUpdate(version=current, since_version=0, full=True, entries=entries)
            changes = (await session.execute(
                select(AuthListChange).where(col(AuthListChange.version) > since)
                .order_by(col(AuthListChange.version)))).scalars().all()
        latest: dict[str, AuthListChange] = {}
        for change in changes:
            latest[change.id_tag] = change
        entries = [AuthListEntry(id_tag=c.id_tag, status=IdTagStatus(c.status), vehicle_id=c.vehicle_id)
                   for c in latest.values()]
        return AuthListUpdate(version=current, since_version=since, full=False, entries=entries)
