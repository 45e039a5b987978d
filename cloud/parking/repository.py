"""The parking service's storage: bays, charger stations and sites in and out of its tables."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import event, func, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from cloud.parking import booking, domain, models
from cloud.parking.domain import (
    AppliedLimit,
    Bay,
    ChargerStation,
    Link,
    PowerCommand,
    PowerLimitRequest,
    Site,
    UplinkDrop,
)
from cloud.platform.outbox import Transaction


class ParkingRepository(Protocol):
    async def get_site(self, site_id: str) -> Site | None: ...

    async def preload(self, site_ids: Collection[str], bays: Collection[tuple[str, str]]) -> None:
        """A batch is about to lock these sites and read these bays (site, bay): lock and read them at once
        (a repository that needs no round trips may ignore it)."""

    async def lock_site(self, site_id: str) -> Site | None:
        """The site, kept from other writers until the unit of work ends."""

    async def save_site(self, site: Site) -> None: ...

    async def get_bay(self, site_id: str, bay_id: str) -> Bay | None: ...

    async def bays_of(self, site_id: str) -> list[Bay]:
        """Every bay of the site, in or out of service, by bay id."""

    async def save_bay(self, bay: Bay) -> None: ...

    async def stations_of(self, site_id: str) -> list[ChargerStation]:
        """Every charger station of the site, in or out of service, by charger id."""

    async def save_station(self, station: ChargerStation) -> None: ...

    async def in_service_counts(self, site_id: str) -> tuple[int, int]:
        """How many bays and charger stations of the site are in service."""

    async def sites_with_power_due(self, now: datetime) -> list[str]:
        """The sites whose pending power-limit request has a command due by ``now``."""

    async def all_sites(self) -> list[Site]:
        """Every site, registered or known from its messages, by site id."""

    async def delete_site(self, site_id: str) -> None:
        """Forget the site's row (its bays and chargers stay; a message of it makes it known again)."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the unit of work has committed (never if it rolls back)."""


class SqlParkingRepository:
    """:class:`ParkingRepository` over a platform transaction."""

    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session
        self._locked: set[str] = set()
        """Sites locked by :meth:`preload`: in the session's identity map, or (``_absent``) not in the database."""
        self._absent: set[str] = set()

    async def preload(self, site_ids: Collection[str], bays: Collection[tuple[str, str]]) -> None:
        """One ``SELECT … FOR UPDATE`` of the batch's sites (in id order: two replicas never wait on each other
        in a circle) and one SELECT of its bays, into the session: the batch's ``lock_site`` and ``get_bay``
        then cost no round trip."""
        wanted = sorted(set(site_ids) - self._locked)
        if wanted:
            rows = (await self._session.execute(select(models.Site).where(col(models.Site.site_id).in_(wanted))
                                                .order_by(col(models.Site.site_id)).with_for_update())).scalars()
            found = {row.site_id for row in rows}
            self._locked.update(wanted)
            self._absent.update(set(wanted) - found)
        pairs = sorted(set(bays))
        if pairs:
            await self._session.execute(select(models.Bay).where(
                tuple_(col(models.Bay.site_id), col(models.Bay.bay_id)).in_(pairs)))

    # sites

    async def get_site(self, site_id: str) -> Site | None:
        row = await self._session.get(models.Site, site_id)
        return None if row is None else _site(row)

    async def lock_site(self, site_id: str) -> Site | None:
        # The row stays locked until the transaction ends (PostgreSQL; SQLite has one writer and
        # ignores FOR UPDATE).
        if site_id in self._absent:  # preloaded, not there: the caller creates it (and save_site adds it)
            self._absent.discard(site_id)
            return None
        if site_id in self._locked:  # locked by preload: the identity map has it
            row = await self._session.get(models.Site, site_id)
        else:
            row = await self._session.get(models.Site, site_id, with_for_update=True)
        return None if row is None else _site(row)

    async def save_site(self, site: Site) -> None:
        row = await self._session.get(models.Site, site.site_id)
        if row is None:
            row = models.Site(site_id=site.site_id, dropped_total=0, power_attempts=0)
            self._session.add(row)
        _write_site(row, site)

    # bays

    async def get_bay(self, site_id: str, bay_id: str) -> Bay | None:
        row = await self._session.get(models.Bay, (site_id, bay_id))
        return None if row is None else _bay(row)

    async def bays_of(self, site_id: str) -> list[Bay]:
        rows = (await self._session.execute(
            select(models.Bay).where(col(models.Bay.site_id) == site_id).order_by(col(models.Bay.bay_id)))).scalars()
        return [_bay(row) for row in rows]

    async def save_bay(self, bay: Bay) -> None:
        await save_bay_row(self._session, bay)

    # charger stations

    async def stations_of(self, site_id: str) -> list[ChargerStation]:
        rows = (await self._session.execute(
            select(models.ChargerStation).where(col(models.ChargerStation.site_id) == site_id)
            .order_by(col(models.ChargerStation.charger_id)))).scalars()
        return [ChargerStation(site_id=row.site_id, charger_id=row.charger_id, connectors=row.connectors,
                               updated_at=row.updated_at, max_power_w=row.max_power_w, in_service=row.in_service)
                for row in rows]

    async def save_station(self, station: ChargerStation) -> None:
        row = await self._session.get(models.ChargerStation, (station.site_id, station.charger_id))
        if row is None:
            row = models.ChargerStation(site_id=station.site_id, charger_id=station.charger_id,
                                        connectors=station.connectors, updated_at=station.updated_at)
            self._session.add(row)
        row.connectors = station.connectors
        row.max_power_w = station.max_power_w
        row.in_service = station.in_service
        row.updated_at = station.updated_at

    # reads across rows

    async def in_service_counts(self, site_id: str) -> tuple[int, int]:
        bays = await self._session.scalar(select(func.count()).select_from(models.Bay).where(
            col(models.Bay.site_id) == site_id, col(models.Bay.in_service)))
        chargers = await self._session.scalar(select(func.count()).select_from(models.ChargerStation).where(
            col(models.ChargerStation.site_id) == site_id, col(models.ChargerStation.in_service)))
        return bays or 0, chargers or 0

    async def sites_with_power_due(self, now: datetime) -> list[str]:
        return list((await self._session.execute(
            select(models.Site.site_id).where(col(models.Site.power_status) == domain.PENDING,
                                              col(models.Site.power_next_send_at) <= now))).scalars())

    async def all_sites(self) -> list[Site]:
        rows = (await self._session.execute(select(models.Site).order_by(col(models.Site.site_id)))).scalars()
        return [_site(row) for row in rows]

    async def delete_site(self, site_id: str) -> None:
        row = await self._session.get(models.Site, site_id)
        if row is not None:
            await self._session.delete(row)

    def after_commit(self, callback: Callable[[], None]) -> None:
        # Woken before the commit, a reader in another transaction would not see the change yet.
        event.listen(self._session.sync_session, "after_commit", lambda _session: callback(), once=True)


_BAY_FIELDS = ("state", "changed_at", "updated_at", "type", "charger_id", "connector_id", "in_service", "usage",
               "usage_since", "usage_transaction_id", "usage_reported_at", "out_of_service", "service_reason",
               "service_changed_at")


async def save_bay_row(session: AsyncSession, bay: Bay) -> None:
    row = await session.get(models.Bay, (bay.site_id, bay.bay_id))
    if row is None:
        row = models.Bay(site_id=bay.site_id, bay_id=bay.bay_id, state=bay.state, changed_at=bay.changed_at,
                         updated_at=bay.updated_at)
        session.add(row)
    for name in _BAY_FIELDS:
        setattr(row, name, getattr(bay, name))
    if row.slot_id is None:
        row.slot_id = booking.slot_id_of(bay.site_id, bay.bay_id)


def _bay(row: models.Bay) -> Bay:
    return Bay(site_id=row.site_id, bay_id=row.bay_id, state=cast(domain.Occupancy, row.state),
               changed_at=row.changed_at, updated_at=row.updated_at, type=row.type, charger_id=row.charger_id,
               connector_id=row.connector_id, in_service=row.in_service,
               usage=cast(domain.UsageState | None, row.usage), usage_since=row.usage_since,
               usage_transaction_id=row.usage_transaction_id, usage_reported_at=row.usage_reported_at,
               out_of_service=bool(row.out_of_service), service_reason=row.service_reason,
               service_changed_at=row.service_changed_at)


def _site(row: models.Site) -> Site:
    last_drop = None if row.last_drop_at is None else UplinkDrop(
        at=row.last_drop_at, policy=row.last_drop_policy or "", dropped=row.last_drop_dropped,
        by_type=dict(row.last_drop_by_type or {}), first_seq=row.last_drop_first_seq,
        last_seq=row.last_drop_last_seq, backlog=row.last_drop_backlog, backlog_bytes=row.last_drop_backlog_bytes)
    command = None
    if (row.power_command_id is not None and row.power_command_issued_at is not None
            and row.power_command_expires_at is not None):
        command = PowerCommand(command_id=row.power_command_id, issued_at=row.power_command_issued_at,
                               expires_at=row.power_command_expires_at, sent_at=row.power_command_sent_at)
    request = None if row.power_requested_at is None else PowerLimitRequest(
        limit_a=row.power_requested_a, limit_w=row.power_requested_w, requested_at=row.power_requested_at,
        status=cast(domain.PowerStatus, row.power_status or domain.PENDING), detail=row.power_detail,
        command=command, attempts=row.power_attempts or 0, next_send_at=row.power_next_send_at,
        settled_at=row.power_settled_at)
    applied = None if row.power_applied_at is None else AppliedLimit(
        limit_a=row.power_applied_a, at=row.power_applied_at,
        source=cast(domain.LimitSource, row.power_applied_source))
    link = None if row.link_state is None or row.link_since is None else Link(
        state=cast(domain.LinkState, row.link_state), since=row.link_since,
        reason=cast(domain.LinkReason, row.link_reason or "hello"), connection_id=row.link_connection_id,
        connected_at=row.link_connected_at)
    return Site(site_id=row.site_id, last_seen_at=row.last_seen_at, inventory_at=row.inventory_at,
                power_limit_a=row.power_limit_a, phases=row.phases, voltage=row.voltage,
                dropped_total=row.dropped_total or 0, last_drop=last_drop, power_request=request, applied=applied,
                registered_at=row.registered_at, link=link)


def _write_site(row: models.Site, site: Site) -> None:
    row.last_seen_at = site.last_seen_at
    row.inventory_at = site.inventory_at
    row.power_limit_a = site.power_limit_a
    row.phases = site.phases
    row.voltage = site.voltage
    row.dropped_total = site.dropped_total
    drop = site.last_drop
    if drop is not None:
        row.last_drop_at = drop.at
        row.last_drop_policy = drop.policy
        row.last_drop_dropped = drop.dropped
        row.last_drop_by_type = dict(drop.by_type)
        row.last_drop_first_seq = drop.first_seq
        row.last_drop_last_seq = drop.last_seq
        row.last_drop_backlog = drop.backlog
        row.last_drop_backlog_bytes = drop.backlog_bytes
    request = site.power_request
    if request is not None:
        row.power_requested_a = request.limit_a
        row.power_requested_w = request.limit_w
        row.power_requested_at = request.requested_at
        row.power_status = request.status
        row.power_detail = request.detail
        row.power_attempts = request.attempts
        row.power_next_send_at = request.next_send_at
        row.power_settled_at = request.settled_at
        command = request.command
        if command is not None:
            row.power_command_id = command.command_id
            row.power_command_issued_at = command.issued_at
            row.power_command_expires_at = command.expires_at
            row.power_command_sent_at = command.sent_at
    row.registered_at = site.registered_at
    link = site.link
    if link is not None:
        row.link_state = link.state
        row.link_since = link.since
        row.link_reason = link.reason
        row.link_connection_id = link.connection_id
        row.link_connected_at = link.connected_at
    applied = site.applied
    if applied is not None:
        row.power_applied_a = applied.limit_a
        row.power_applied_at = applied.at
        row.power_applied_source = applied.source
