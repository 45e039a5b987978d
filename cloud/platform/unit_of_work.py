"""The unit of work a use case runs in: its service's repository over one platform transaction.

A service's use cases never touch a session or a table: they open a unit of work, read and
save domain objects through ``uow.repo`` (the service's repository, which maps them to its
tables), record the events they cause with ``uow.emit`` and, when consuming, claim the message
id with ``uow.claim``. Everything commits together or not at all (the outbox publishes the
events after the commit). Unit tests give the same use cases an in-memory repository
(``tests/support/uow.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Generic, Protocol, TypeVar

from cloud.contracts.base import EventBody
from cloud.platform.outbox import Outbox, Transaction

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class UnitOfWork(Protocol[R_co]):
    @property
    def repo(self) -> R_co: ...

    def emit(self, body: EventBody) -> None:
        """Record an event; published only if the unit of work commits."""

    async def claim(self, message_id: str, consumer: str) -> bool:
        """Mark a consumed message processed; False when it already was (do nothing then)."""


class SqlUnitOfWork(Generic[R]):
    """A :class:`UnitOfWork` over a platform :class:`~cloud.platform.outbox.Transaction`."""

    def __init__(self, tx: Transaction, repo: R) -> None:
        self.tx = tx
        self._repo = repo

    @property
    def repo(self) -> R:
        return self._repo

    def emit(self, body: EventBody) -> None:
        self.tx.emit(body)

    async def claim(self, message_id: str, consumer: str) -> bool:
        return await self.tx.claim(message_id, consumer)


UnitOfWorkFactory = Callable[[], AbstractAsyncContextManager[UnitOfWork[R]]]
"""Opens a unit of work: ``async with uow() as work: ...`` commits when the block ends."""


def sql_units_of_work(outbox: Outbox, repository: Callable[[Transaction], R]) -> UnitOfWorkFactory[R]:
    """Units of work on the service's database, each with ``repository(tx)`` over its transaction."""

    @asynccontextmanager
    async def open_unit() -> AsyncIterator[UnitOfWork[R]]:
        async with outbox.transaction() as tx:
            yield SqlUnitOfWork(tx, repository(tx))

    return open_unit
