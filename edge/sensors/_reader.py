"""What every bay-sensor reader shares: the change callback and the run-as-a-named-task shell."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self

import structlog

from edge.sensors.tracker import BayChange

log = structlog.get_logger("edge.sensors")

OnChange = Callable[[BayChange], Awaitable[None]]
"""Called once per bay change, in order; the edge turns it into a ``bay.occupancy`` uplink."""


class SensorReader:
    """Runs :meth:`run` until cancelled. ``async with reader:`` runs it as the named task
    :attr:`task_name`; or put ``reader.run()`` under the caller's own TaskGroup."""

    task_name: str

    def __init__(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._delivering = asyncio.Lock()  # FIFO: changes reach on_change in the order they happened

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def _deliver(self, changes: Iterable[BayChange]) -> None:
        async with self._delivering:
            await self._deliver_in_order(changes)

    async def _deliver_in_order(self, changes: Iterable[BayChange]) -> None:
        for change in changes:
            log.info("bay.changed", reader=self.task_name, bay_id=change.bay_id, state=change.state.value,
                     reason=change.reason, faulty=change.faulty)
            try:
                await self._on_change(change)
            except Exception:
                # A failing consumer must not stop the sensors; the next change is still tried.
                log.exception("bay.change_handler_failed", reader=self.task_name, bay_id=change.bay_id)

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError(f"{self.task_name} is already running")
        self._task = asyncio.create_task(self.run(), name=self.task_name)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # our own cancellation still propagates from here
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()
