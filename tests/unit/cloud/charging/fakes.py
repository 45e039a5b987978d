"""An in-memory :class:`~cloud.charging.repository.ChargingRepository` for the use-case tests."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from cloud.charging.domain import ACTIVE, COMPLETED, Debt, RemoteCommand, Session, SiteRates, Station
from cloud.contracts.charging import ChargingAnomaly

_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


class InMemoryChargingRepository:
    """Sessions and idTag owners in dicts; hands out copies, so only ``save`` changes what is kept."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.owners: dict[str, str] = {}
        """idTag → vehicle id."""
        self.vehicle_owners: dict[str, str | None] = {}
        """vehicle id → owner account id (None: a vehicle of no driver)."""

        self.anomaly_list: list[ChargingAnomaly] = []
        self.history: dict[str, tuple[Session, str | None]] = {}
        self.station_map: dict[tuple[str, str], Station] = {}
        self.rate_map: dict[str, SiteRates] = {}
        self.commands: dict[str, RemoteCommand] = {}
        self.debts: dict[str, Debt] = {}
        """invoice id → its row of the driver-debt projection."""

    async def preload(self, sessions: Collection[tuple[str, str, str, int]], stations: Collection[tuple[str, str]],
                      id_tags: Collection[str]) -> None:
        return None

    async def write_back(self) -> None:
        return None

    async def get(self, site_id: str, store_id: str, charger_id: str, transaction_id: int) -> Session | None:
        for session in self.sessions.values():
            if (session.site_id, session.store_id, session.charger_id, session.transaction_id) == (
                    site_id, store_id, charger_id, transaction_id):
                return replace(session)
        return None

    async def open_sessions_of_store(self, site_id: str, store_id: str) -> list[Session]:
        return [replace(s) for s in sorted(self.sessions.values(), key=lambda s: s.transaction_id)
                if s.site_id == site_id and s.store_id == store_id and s.status == ACTIVE]

    async def add_anomaly(self, anomaly: ChargingAnomaly, recorded_at: datetime) -> None:
        self.anomaly_list.append(anomaly)

    async def anomalies(self, site_ids: Collection[str] | None, *, limit: int, offset: int) -> list[ChargingAnomaly]:
        found = [a for a in reversed(self.anomaly_list) if site_ids is None or a.site_id in site_ids]
        return found[offset:offset + limit]

    async def save(self, session: Session) -> None:
        self.sessions[session.id] = replace(session)

    async def active_sessions(self, id_tags: Sequence[str], *, sites: Collection[str] | None = None) -> list[Session]:
        found = [s for s in self.sessions.values()
                 if s.id_tag in id_tags and s.active and (sites is None or s.site_id in sites)]
        return [replace(s) for s in sorted(found, key=lambda s: s.started_at or _EPOCH, reverse=True)]

    async def completed_sessions(self, id_tags: Sequence[str], *, limit: int, offset: int,
                                 sites: Collection[str] | None = None) -> list[Session]:
        found = sorted((s for s in self.sessions.values() if s.id_tag in id_tags and s.status == COMPLETED
                        and (sites is None or s.site_id in sites)), key=lambda s: s.id)
        found.sort(key=lambda s: s.stopped_at or _EPOCH, reverse=True)  # stable: ties stay by id
        return [replace(s) for s in found[offset:offset + limit]]

    async def vehicle_of(self, id_tag: str) -> str | None:
        return self.owners.get(id_tag)

    async def id_tags_of(self, vehicle_id: str) -> list[str]:
        return [tag for tag, owner in self.owners.items() if owner == vehicle_id]

    async def assign_id_tags(self, vehicle_id: str, id_tags: Sequence[str]) -> None:
        for tag in id_tags:
            self.owners[tag] = vehicle_id

    async def has_sessions_at(self, id_tags: Sequence[str], sites: Collection[str]) -> bool:
        return any(s.id_tag in id_tags and s.site_id in sites for s in self.sessions.values())

    async def forget_vehicle(self, vehicle_id: str, *, owner_too: bool = False) -> None:
        self.owners = {tag: v for tag, v in self.owners.items() if v != vehicle_id}
        if owner_too:
            self.vehicle_owners.pop(vehicle_id, None)

    async def owner_of(self, vehicle_id: str) -> str | None:
        return self.vehicle_owners.get(vehicle_id)

    async def set_owner(self, vehicle_id: str, owner_id: str | None) -> None:
        self.vehicle_owners[vehicle_id] = owner_id

    async def by_id(self, session_id: str) -> Session | None:
        found = self.sessions.get(session_id)
        return None if found is None else replace(found)

    async def active_at_charger(self, site_id: str, charger_id: str) -> list[Session]:
        return [replace(s) for s in self.sessions.values()
                if s.site_id == site_id and s.charger_id == charger_id and s.active]

    async def add_history(self, session: Session, vehicle_id: str | None) -> None:
        self.history.setdefault(session.id, (replace(session), vehicle_id))

    async def station(self, site_id: str, charger_id: str) -> Station | None:
        found = self.station_map.get((site_id, charger_id))
        return None if found is None else copy.deepcopy(found)

    async def stations(self, site_id: str) -> list[Station]:
        return [copy.deepcopy(s) for (site, _), s in sorted(self.station_map.items()) if site == site_id]

    async def save_station(self, station: Station) -> None:
        station.connector(0)
        self.station_map[station.site_id, station.charger_id] = copy.deepcopy(station)

    async def rates(self, site_id: str) -> SiteRates | None:
        return self.rate_map.get(site_id)

    async def set_rates(self, rates: SiteRates) -> None:
        kept = self.rate_map.get(rates.site_id)
        if kept is None or kept.version < rates.version:
            self.rate_map[rates.site_id] = rates

    async def add_command(self, command: RemoteCommand) -> None:
        self.commands[command.id] = replace(command)

    async def command(self, command_id: str) -> RemoteCommand | None:
        found = self.commands.get(command_id)
        return None if found is None else replace(found)

    async def save_command(self, command: RemoteCommand) -> None:
        self.commands[command.id] = replace(command)

    async def debt(self, invoice_id: str) -> Debt | None:
        return self.debts.get(invoice_id)

    async def save_debt(self, debt: Debt) -> None:
        self.debts[debt.invoice_id] = debt

    async def refusing_debt(self, account_id: str, site_id: str) -> Debt | None:
        found = [d for d in self.debts.values() if d.account_id == account_id and d.site_id == site_id and d.refuses]
        return min(found, key=lambda d: (d.failed_at or _EPOCH, d.invoice_id), default=None)
