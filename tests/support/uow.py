"""An in-memory unit of work for unit tests of a service's use cases.

``MemoryUnits(repo)`` is a :data:`~cloud.platform.unit_of_work.UnitOfWorkFactory` over an
in-memory repository: events recorded by committed units are in ``.events`` (typed bodies), claims
in ``.claimed``. A unit whose block raises is rolled back: the repository's state (a deep copy
taken when the unit opened) is restored, and its events and claims are dropped, as on a database.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

from cloud.contracts import EventBody

R = TypeVar("R")


class MemoryUnitOfWork(Generic[R]):
    def __init__(self, repo: R, claimed: set[tuple[str, str]]) -> None:
        self._repo = repo
        self._claimed = claimed
        self.events: list[EventBody] = []
        self.claims: set[tuple[str, str]] = set()

    @property
    def repo(self) -> R:
        return self._repo

    def emit(self, body: EventBody) -> None:
        self.events.append(body)

    async def claim(self, message_id: str, consumer: str) -> bool:
        key = (message_id, consumer)
        if key in self._claimed or key in self.claims:
            return False
        self.claims.add(key)
        return True


class MemoryUnits(Generic[R]):
    def __init__(self, repo: R) -> None:
        self.repo = repo
        self.events: list[EventBody] = []
        self.claimed: set[tuple[str, str]] = set()
        self.commits = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[MemoryUnitOfWork[R]]:
        snapshot = copy.deepcopy(self.repo.__dict__)
        unit = MemoryUnitOfWork(self.repo, self.claimed)
        try:
            yield unit
        except BaseException:
            self.repo.__dict__.clear()
            self.repo.__dict__.update(snapshot)
            raise
        self.events.extend(unit.events)
        self.claimed |= unit.claims
        self.commits += 1

    def names(self) -> list[str]:
        """The names of the events committed so far, in order."""
        return [event.NAME for event in self.events]
