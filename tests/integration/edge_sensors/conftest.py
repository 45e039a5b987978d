from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from edge.sensors import BayChange, BayState
from tests.support.modbus import ModbusDevice


@pytest.fixture
async def modbus_device() -> AsyncIterator[ModbusDevice]:
    device = ModbusDevice()
    await device.start()
    try:
        yield device
    finally:
        await device.stop()


class Changes:
    """Collects what a reader reports, as the edge's on_change would receive it."""

    def __init__(self) -> None:
        self.seen: list[BayChange] = []
        self._arrived = asyncio.Event()

    async def __call__(self, change: BayChange) -> None:
        self.seen.append(change)
        self._arrived.set()

    def latest(self) -> dict[str, BayState]:
        """Each bay's state as the consumer last heard it."""
        return {change.bay_id: change.state for change in self.seen}

    def of(self, bay_id: str) -> list[str]:
        return [change.state.value for change in self.seen if change.bay_id == bay_id]

    async def wait_until(self, condition: Callable[[], bool], within: float = 15.0) -> None:
        """Wait (at most ``within`` seconds) until the changes seen so far satisfy ``condition``."""
        async with asyncio.timeout(within):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
def changes() -> Changes:
    return Changes()
