"""Parking use cases: keep each site's bays as their sensors and chargers report them, answer
availability, and carry an operator's power limit to the site."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Collection
from contextlib import suppress
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy import event, func
from sqlmodel import col, select

from cloud.parking import domain, events
from cloud.parking.models import Bay, ChargerStation, Site
from cloud.platform.errors import DomainError, NotFound
from cloud.platform.mqtt_link import NotConnected
from cloud.platform.outbox import Outbox, Transaction
from cloud.platform.ports import Cache
from mqtt import (
    BayOccupancy,
    BayUsage,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    OutboxDropped,
    SetPowerLimit,
    SiteHello,
    SiteInventory,
    parse_body,
)

log = structlog.get_logger(__name__)

AVAILABILITY_TTL_SECONDS = 10.0


class InvalidPowerLimit(DomainError):
    title = "Invalid power limit"


class CommandSender(Protocol):
    """Port: sends a command to a site. Raises NotConnected when it cannot right now."""

    async def send_command(self, command: Command) -> None: ...


class ParkingService:
    def __init__(self, outbox: Outbox, cache: Cache) -> None:
        self._outbox = outbox
        self._cache = cache
        self.power_sync_wanted = asyncio.Event()
        """Set when a power-limit command may be due; wakes :meth:`run_power_limit_sync`."""

    # --- messages of the sites' edges ------------------------------------------------------

    async def record_site_message(self, tx: Transaction, envelope: Envelope) -> None:
        """A message of a site's edge (already deduplicated by the inbox)."""
        body = parse_body(envelope.type, envelope.body)
        now = datetime.now(UTC)
        site = await _site_for_update(tx, envelope.site_id)
        if site is None:
            site = Site(site_id=envelope.site_id, dropped_total=0, power_attempts=0)
            tx.session.add(site)
        site.last_seen_at = now
        if isinstance(body, BayOccupancy):
            await self._record_occupancy(tx, envelope.site_id, body)
        elif isinstance(body, BayUsage):
            await self._record_usage(tx, envelope, body, now)
        elif isinstance(body, SiteInventory):
            await self._mirror_inventory(tx, site, envelope, body, now)
        elif isinstance(body, OutboxDropped):
            _record_drop(site, body)
        elif isinstance(body, SiteHello):
            self._site_reconnected(tx, site, now)
        elif isinstance(body, CommandResult) and body.command_type == SetPowerLimit.TYPE:
            self._settle_power_limit(tx, site, body, envelope.ts, now)
        await self._cache.delete(_availability_key(envelope.site_id))

    async def _mirror_inventory(self, tx: Transaction, site: Site, envelope: Envelope, inventory: SiteInventory,
                                now: datetime) -> None:
        """The site's inventory replaces what we knew: new bays and chargers appear, missing ones
        go out of service (kept, with their history, in case they come back). An inventory older
        than the one mirrored (a replayed backlog) changes nothing."""
        if not domain.is_newer(envelope.ts, site.inventory_at):
            return
        site_id = envelope.site_id
        bays = {bay.bay_id: bay for bay in (await tx.session.execute(
            select(Bay).where(col(Bay.site_id) == site_id))).scalars()}
        for item in inventory.bays:
            bay = bays.pop(item.bay_id, None)
            if bay is None:
                bay = Bay(site_id=site_id, bay_id=item.bay_id, state=domain.UNKNOWN,
                          changed_at=domain.NEVER_REPORTED, updated_at=now)
                tx.session.add(bay)
            domain.apply_inventory_bay(bay, item, now)
        for gone in bays.values():
            gone.in_service = False
            gone.updated_at = now
        stations = {s.charger_id: s for s in (await tx.session.execute(
            select(ChargerStation).where(col(ChargerStation.site_id) == site_id))).scalars()}
        for charger in inventory.chargers:
            station = stations.pop(charger.charger_id, None)
            if station is None:
                station = ChargerStation(site_id=site_id, charger_id=charger.charger_id, connectors=0, updated_at=now)
                tx.session.add(station)
            station.connectors = charger.connectors
            station.max_power_w = charger.max_power_w
            station.in_service = True
            station.updated_at = now
        for gone_station in stations.values():
            gone_station.in_service = False
            gone_station.updated_at = now
        site.inventory_at = envelope.ts
        site.power_limit_a = inventory.power_limit_a
        site.phases = inventory.phases
        site.voltage = inventory.voltage
        if domain.is_newer(envelope.ts, site.power_applied_at):
            site.power_applied_a = inventory.power_limit_a
            site.power_applied_at = envelope.ts
            site.power_applied_source = "inventory"
        tx.emit(events.inventory_changed(site_id, len(inventory.bays), len(inventory.chargers)))

    async def _record_occupancy(self, tx: Transaction, site_id: str, report: BayOccupancy) -> None:
        now = datetime.now(UTC)
        bay = await tx.session.get(Bay, (site_id, report.bay_id))
        if bay is None:
            bay = Bay(site_id=site_id, bay_id=report.bay_id, state=report.state,
                      changed_at=report.changed_at, updated_at=now)
            tx.session.add(bay)
            changed = True
        else:
            changed = domain.apply_occupancy(bay, report, now)
        if changed:
            tx.emit(events.bay_changed(bay))

    async def _record_usage(self, tx: Transaction, envelope: Envelope, report: BayUsage, now: datetime) -> None:
        bay = await tx.session.get(Bay, (envelope.site_id, report.bay_id))
        if bay is None:  # usage before the inventory or the sensor named the bay
            bay = Bay(site_id=envelope.site_id, bay_id=report.bay_id, state=domain.UNKNOWN,
                      changed_at=domain.NEVER_REPORTED, updated_at=now)
            tx.session.add(bay)
        change = domain.apply_usage(bay, report, envelope.ts, now)
        if change is None:
            log.info("stale bay usage ignored", site_id=envelope.site_id, bay_id=report.bay_id, id=str(envelope.id))
            return
        if change.ended is not None:
            tx.emit(events.usage_ended(bay, change.ended))
        if change.started is not None:
            tx.emit(events.usage_started(bay, change.started))

    # --- reads -------------------------------------------------------------------------------

    async def bays(self, site_id: str, usage: Collection[str] | None = None) -> list[dict[str, object]]:
        """Bays in service; with ``usage``, only those whose last usage report is one of them."""
        return [_bay_view(bay) for bay in await self._bays_of(site_id)
                if bay.in_service and (not usage or bay.usage in usage)]

    async def chargers(self, site_id: str) -> list[dict[str, object]]:
        async with self._outbox.db.session() as session:
            stations = list((await session.execute(
                select(ChargerStation).where(col(ChargerStation.site_id) == site_id, col(ChargerStation.in_service))
                .order_by(col(ChargerStation.charger_id)))).scalars())
        if not stations:
            raise NotFound(f"no charger stations are known for site {site_id!r}", code="unknown_site")
        return [{"charger_id": s.charger_id, "connectors": s.connectors, "max_power_w": s.max_power_w}
                for s in stations]

    async def availability(self, site_id: str) -> dict[str, object]:
        cached = await self._cache.get(_availability_key(site_id))
        if cached is not None:
            return dict(json.loads(cached))
        result: dict[str, object] = {"site_id": site_id, **asdict(domain.Availability.of(await self._bays_of(site_id)))}
        await self._cache.set(_availability_key(site_id), json.dumps(result).encode(), AVAILABILITY_TTL_SECONDS)
        return result

    async def site(self, site_id: str) -> dict[str, object]:
        """The site: its inventory in numbers, its power limit, and what its uplink dropped."""
        async with self._outbox.db.session() as session:
            site = await session.get(Site, site_id)
            if site is None:
                raise _unknown_site(site_id)
            bays = await session.scalar(select(func.count()).select_from(Bay).where(
                col(Bay.site_id) == site_id, col(Bay.in_service)))
            chargers = await session.scalar(select(func.count()).select_from(ChargerStation).where(
                col(ChargerStation.site_id) == site_id, col(ChargerStation.in_service)))
        return _site_view(site, bays or 0, chargers or 0)

    async def _bays_of(self, site_id: str) -> list[Bay]:
        async with self._outbox.db.session() as session:
            bays = list((await session.execute(
                select(Bay).where(col(Bay.site_id) == site_id).order_by(col(Bay.bay_id)))).scalars())
        if not bays:
            raise NotFound(f"no bays are known for site {site_id!r}", code="unknown_site")
        return bays

    # --- the site's power limit ----------------------------------------------------------------

    async def power_limit(self, site_id: str) -> dict[str, object]:
        async with self._outbox.db.session() as session:
            site = await session.get(Site, site_id)
        if site is None:
            raise _unknown_site(site_id)
        return _power_view(site)

    async def request_power_limit(self, site_id: str, *, limit_a: float | None,
                                  limit_w: float | None) -> dict[str, object]:
        """Store the limit as pending and let the sync loop send it to the site (at once when the
        MQTT link is up, otherwise as soon as it is). The same limit asked again while it is
        pending is the same request: nothing new is sent."""
        errors = domain.power_limit_errors(limit_a, limit_w)
        if errors:
            raise InvalidPowerLimit("; ".join(f"{field}: {message}" for field, message in errors),
                                    code="invalid_power_limit")
        now = datetime.now(UTC)
        command: Command | None = None
        async with self._outbox.transaction() as tx:
            site = await _site_for_update(tx, site_id)
            if site is None:
                raise _unknown_site(site_id)
            same = (site.power_status == domain.PENDING and site.power_requested_a == limit_a
                    and site.power_requested_w == limit_w)
            if not same:
                try:
                    command = Command.new(site_id, SetPowerLimit(limit_a=limit_a, limit_w=limit_w),
                                          ttl=domain.COMMAND_TTL, now=now)
                except ValueError as exc:
                    raise InvalidPowerLimit(str(exc), code="invalid_power_limit") from exc
                site.power_requested_a = limit_a
                site.power_requested_w = limit_w
                site.power_requested_at = now
                site.power_status = domain.PENDING
                site.power_detail = None
                site.power_settled_at = None
                site.power_attempts = 0
                site.power_next_send_at = now
                _store_command(site, command)
            view = _power_view(site)
        if command is not None:
            log.info("power limit requested", site_id=site_id, limit_a=limit_a, limit_w=limit_w,
                     command_id=str(command.id))
        self.power_sync_wanted.set()
        return view

    def _settle_power_limit(self, tx: Transaction, site: Site, result: CommandResult, reported_at: datetime,
                            now: datetime) -> None:
        current = site.power_command_id == str(result.command_id)
        if result.status == CommandStatus.ACCEPTED and domain.is_newer(reported_at, site.power_applied_at):
            # Any accepted command applied its limit, even one a newer request superseded.
            applied = domain.applied_limit_from_result(result.data, site.power_requested_a if current else None)
            if applied is not None:
                site.power_applied_a = applied
                site.power_applied_at = reported_at
                site.power_applied_source = "command"
        if not current or site.power_status != domain.PENDING:
            return
        status = domain.status_after_result(result.status)
        site.power_detail = result.detail[:500] if result.detail else None
        if status == domain.PENDING:  # the command expired before the edge could apply it
            assert site.power_command_expires_at is not None
            site.power_next_send_at = domain.next_send_after_expired_answer(
                site.power_command_expires_at, site.power_next_send_at or now, now)
            self._wake_sync_after_commit(tx)
            return
        site.power_status = status
        site.power_settled_at = now
        site.power_next_send_at = None
        log.info("power limit settled", site_id=site.site_id, status=status, detail=result.detail)

    def _site_reconnected(self, tx: Transaction, site: Site, now: datetime) -> None:
        """A site that says hello may have lost the commands queued for it: resend now."""
        if site.power_status == domain.PENDING:
            site.power_next_send_at = now
            self._wake_sync_after_commit(tx)

    def _wake_sync_after_commit(self, tx: Transaction) -> None:
        """Wake the sync loop once this transaction is committed (woken earlier, it would not see
        the change and sleep until its next round)."""
        event.listen(tx.session.sync_session, "after_commit", lambda _session: self.power_sync_wanted.set(),
                     once=True)

    async def send_due_power_limits(self, sender: CommandSender) -> tuple[int, bool]:
        """Send every due site.set_power_limit command; returns (sent, stopped because not connected)."""
        now = datetime.now(UTC)
        async with self._outbox.db.session() as session:
            due = list((await session.execute(
                select(Site.site_id).where(col(Site.power_status) == domain.PENDING,
                                           col(Site.power_next_send_at) <= now))).scalars())
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
        """The stored command when it has not gone out and is still valid, otherwise a fresh one,
        stored before it is sent so that even an instant answer finds it."""
        async with self._outbox.transaction() as tx:
            site = await _site_for_update(tx, site_id)
            if (site is None or site.power_status != domain.PENDING or site.power_next_send_at is None
                    or site.power_next_send_at > now or site.power_requested_at is None):
                return None
            if domain.request_given_up(site.power_requested_at, now):
                site.power_status = domain.EXPIRED
                hours = int(domain.REQUEST_MAX_AGE.total_seconds() // 3600)
                site.power_detail = (f"the site did not answer within {hours} h; "
                                     "request the limit again if it is still wanted")
                site.power_settled_at = now
                site.power_next_send_at = None
                return None
            stored = _stored_command(site)
            if stored is not None and site.power_command_sent_at is None and not stored.expired(now):
                return stored
            command = Command.new(site_id, _limit_body(site), ttl=domain.COMMAND_TTL, now=now)
            _store_command(site, command)
            return command

    async def _mark_sent(self, site_id: str, command: Command, now: datetime) -> None:
        async with self._outbox.transaction() as tx:
            site = await _site_for_update(tx, site_id)
            if site is None or site.power_command_id != str(command.id):
                return  # a newer request replaced it meanwhile
            site.power_command_sent_at = now
            site.power_attempts += 1
            if site.power_status == domain.PENDING:
                site.power_next_send_at = now + domain.resend_interval(site.power_attempts)
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
                await asyncio.wait_for(self.power_sync_wanted.wait(), wait)


async def _site_for_update(tx: Transaction, site_id: str) -> Site | None:
    """The site's row, locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    return await tx.session.get(Site, site_id, with_for_update=True)


def _unknown_site(site_id: str) -> NotFound:
    return NotFound(f"no site {site_id!r} is known", code="unknown_site")


def _record_drop(site: Site, report: OutboxDropped) -> None:
    site.dropped_total = (site.dropped_total or 0) + report.dropped
    if domain.is_newer(report.at, site.last_drop_at):
        site.last_drop_at = report.at
        site.last_drop_policy = report.policy
        site.last_drop_dropped = report.dropped
        site.last_drop_by_type = dict(report.by_type)
        site.last_drop_first_seq = report.first_seq
        site.last_drop_last_seq = report.last_seq
        site.last_drop_backlog = report.backlog
        site.last_drop_backlog_bytes = report.backlog_bytes
    log.warning("site uplink dropped messages", site_id=site.site_id, dropped=report.dropped,
                policy=report.policy, by_type=report.by_type)


def _limit_body(site: Site) -> SetPowerLimit:
    return SetPowerLimit(limit_a=site.power_requested_a, limit_w=site.power_requested_w)


def _store_command(site: Site, command: Command) -> None:
    site.power_command_id = str(command.id)
    site.power_command_issued_at = command.issued_at
    site.power_command_expires_at = command.expires_at
    site.power_command_sent_at = None


def _stored_command(site: Site) -> Command | None:
    if site.power_command_id is None or site.power_command_issued_at is None or site.power_command_expires_at is None:
        return None
    return Command(id=uuid.UUID(site.power_command_id), site_id=site.site_id, type=SetPowerLimit.TYPE,
                   issued_at=site.power_command_issued_at, expires_at=site.power_command_expires_at,
                   body=_limit_body(site).model_dump(mode="json"))


def _availability_key(site_id: str) -> str:
    return f"parking:availability:{site_id}"


def _bay_view(bay: Bay) -> dict[str, object]:
    changed_at = None if bay.changed_at == domain.NEVER_REPORTED else bay.changed_at
    return {"bay_id": bay.bay_id, "state": bay.state, "changed_at": changed_at, "type": bay.type,
            "charger_id": bay.charger_id, "connector_id": bay.connector_id, "usage": bay.usage,
            "usage_since": bay.usage_since, "usage_transaction_id": bay.usage_transaction_id}


def _site_view(site: Site, bays: int, chargers: int) -> dict[str, object]:
    last = None if site.last_drop_at is None else {
        "at": site.last_drop_at, "policy": site.last_drop_policy, "dropped": site.last_drop_dropped,
        "by_type": site.last_drop_by_type or {}, "first_seq": site.last_drop_first_seq,
        "last_seq": site.last_drop_last_seq, "backlog": site.last_drop_backlog,
        "backlog_bytes": site.last_drop_backlog_bytes}
    return {
        "site_id": site.site_id,
        "last_seen_at": site.last_seen_at,
        "inventory": {"received_at": site.inventory_at, "bays": bays, "chargers": chargers},
        "power": {"limit_a": site.power_limit_a, "phases": site.phases, "voltage": site.voltage,
                  "applied_limit_a": site.power_applied_a, "request_status": site.power_status},
        "uplink_drops": {"total": site.dropped_total or 0, "last": last},
    }


def _power_view(site: Site) -> dict[str, object]:
    requested = None if site.power_requested_at is None else {
        "limit_a": site.power_requested_a, "limit_w": site.power_requested_w, "requested_at": site.power_requested_at}
    command = None if site.power_command_id is None else {
        "command_id": site.power_command_id, "issued_at": site.power_command_issued_at,
        "expires_at": site.power_command_expires_at, "sent_at": site.power_command_sent_at,
        "attempts": site.power_attempts or 0}
    applied = None if site.power_applied_at is None else {
        "limit_a": site.power_applied_a, "at": site.power_applied_at, "source": site.power_applied_source}
    return {"site_id": site.site_id, "status": site.power_status, "detail": site.power_detail,
            "requested": requested, "command": command, "settled_at": site.power_settled_at, "applied": applied}
