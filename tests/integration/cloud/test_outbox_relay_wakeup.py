"""The outbox relay wakes on a commit: an event does not wait for the relay's poll interval, not even when it is
committed while the relay is busy publishing an earlier batch (the stay-end latency of issue 18 went through
two relays, each of which could lose that wake-up and sleep its whole poll)."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress

from cloud.contracts.parking import InventoryChanged
from cloud.platform.db import Database
from cloud.platform.outbox import Outbox, OutboxRelay
from cloud.platform.ports import Event

POLL = 30.0
"""The relay's poll interval in these tests: far longer than any of them may take."""


class GatedBus:
    """A bus whose first publish waits for the test (the relay is then in the middle of a batch)."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.publishing_first = asyncio.Event()
        self.release_first = asyncio.Event()
        self.changed = asyncio.Event()

    async def publish(self, event: Event) -> None:
        self.published.append(event)
        self.changed.set()
        if len(self.published) == 1:
            self.publishing_first.set()
            await self.release_first.wait()


async def _published(bus: GatedBus, count: int, within: float) -> float:
    began = time.monotonic()
    async with asyncio.timeout(within):
        while len(bus.published) < count:
            bus.changed.clear()
            await bus.changed.wait()
    return time.monotonic() - began


async def test_a_committed_event_is_published_without_waiting_for_the_poll(charging_db: Database) -> None:
    box = Outbox(charging_db)
    bus = GatedBus()
    bus.release_first.set()
    relay = asyncio.create_task(OutboxRelay(box, bus, service="test", poll_seconds=POLL).run())  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.2)  # the relay found nothing and sleeps
        async with box.transaction() as tx:
            tx.emit(InventoryChanged(site_id="s1", bays=1, chargers=0))
        assert await _published(bus, 1, within=5) < 2
    finally:
        relay.cancel()
        with suppress(asyncio.CancelledError):
            await relay


async def test_an_event_committed_while_the_relay_publishes_goes_out_right_after(charging_db: Database) -> None:
    box = Outbox(charging_db)
    bus = GatedBus()
    async with box.transaction() as tx:
        tx.emit(InventoryChanged(site_id="s1", bays=1, chargers=0))
    relay = asyncio.create_task(OutboxRelay(box, bus, service="test", poll_seconds=POLL).run())  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(bus.publishing_first.wait(), 5)
        async with box.transaction() as tx:  # committed after the relay read its batch, before it went to sleep
            tx.emit(InventoryChanged(site_id="s1", bays=2, chargers=0))
        bus.release_first.set()
        assert await _published(bus, 2, within=5) < 2
        assert [e.payload["bays"] for e in bus.published] == [1, 2]
    finally:
        relay.cancel()
        with suppress(asyncio.CancelledError):
            await relay
