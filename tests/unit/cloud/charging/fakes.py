"""An in-memory :class:`~cloud.charging.repository.ChargingRepository` for the use-case tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from cloud.charging.domain import COMPLETED, Session, session_key

_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


class InMemoryChargingRepository:
    """Sessions and idTag owners in dicts; hands out copies, so only ``save`` changes what is kept."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.owners: dict[str, str] = {}
        """idTag → vehicle id."""

    async def get(self, site_id: str, transaction_id: int) -> Session | None:
        session = self.sessions.get(session_key(site_id, transaction_id))
        return replace(session) if session is not None else None

    async def save(self, session: Session) -> None:
        self.sessions[session.id] = replace(session)

    async def active_sessions(self, id_tags: Sequence[str]) -> list[Session]:
        found = [s for s in self.sessions.values() if s.id_tag in id_tags and s.active]
        return [replace(s) for s in sorted(found, key=lambda s: s.started_at or _EPOCH, reverse=True)]

    async def completed_sessions(self, id_tags: Sequence[str], *, limit: int, offset: int) -> list[Session]:
        found = sorted((s for s in self.sessions.values() if s.id_tag in id_tags and s.status == COMPLETED),
                       key=lambda s: s.id)
        found.sort(key=lambda s: s.stopped_at or _EPOCH, reverse=True)  # stable: ties stay by id
        return [replace(s) for s in found[offset:offset + limit]]

    async def vehicle_of(self, id_tag: str) -> str | None:
        return self.owners.get(id_tag)

    async def id_tags_of(self, vehicle_id: str) -> list[str]:
        return [tag for tag, owner in self.owners.items() if owner == vehicle_id]

    async def assign_id_tags(self, vehicle_id: str, id_tags: Sequence[str]) -> None:
        for tag in id_tags:
            self.owners[tag] = vehicle_id
