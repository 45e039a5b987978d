"""Each bay's last reported state, kept in the store (edge/baystates.py), against a real SQLite store.

What a garage operator would notice: a car that parked before the edge restarted keeps its
arrival time (its idle or overstay fee counts from then), and when the outbox cap cost bay
changes the cloud still ends up with every bay's current state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.baystates import BayStates
from edge.bayusage import BayUsageTracker
from edge.sensors import BayChange, BayState
from edge.store import OutboxCap, Store
from mqtt.payloads import BayUsage, SessionMeter

T0 = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def change(bay_id: str, state: BayState, at: datetime) -> BayChange:
    return BayChange(bay_id=bay_id, state=state, changed_at=at, reason="sensor reading")


async def occupancy(store: Store) -> list[tuple[str, str, datetime]]:
    return [(row.body["bay_id"], row.body["state"], datetime.fromisoformat(row.body["changed_at"]))
            for row in await store.outbox_batch(100_000) if row.type == "bay.occupancy"]


async def latest(store: Store) -> dict[str, tuple[str, datetime]]:
    return {bay_id: (state, at) for bay_id, state, at in await occupancy(store)}


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)


async def test_the_first_reading_after_a_restart_keeps_the_arrival_stored_before_it(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db") as store:
        before = BayStates(store)
        await before.restore()
        await before.changed(change("B1", BayState.OCCUPIED, T0))
        await before.changed(change("B2", BayState.OCCUPIED, T0))

    async with await Store.open(tmp_path / "edge.db") as store:  # the edge restarted
        after = BayStates(store)
        await after.restore()
        # a sensor that cannot read yet does not make the edge forget B1's car ...
        await after.changed(change("B1", BayState.UNKNOWN, T0 + timedelta(minutes=30)))
        kept = await after.changed(change("B1", BayState.OCCUPIED, T0 + timedelta(minutes=31)))
        # ... while B2's car left during the restart: its first reading is a new state
        left = await after.changed(change("B2", BayState.FREE, T0 + timedelta(minutes=31)))
        # later changes are the sensor's own again
        came = await after.changed(change("B2", BayState.OCCUPIED, T0 + timedelta(minutes=40)))
        assert (kept.changed_at, left.changed_at, came.changed_at) == (
            T0, T0 + timedelta(minutes=31), T0 + timedelta(minutes=40))
        assert (await occupancy(store))[-4:] == [
            ("B1", "unknown", T0 + timedelta(minutes=30)), ("B1", "occupied", T0),
            ("B2", "free", T0 + timedelta(minutes=31)), ("B2", "occupied", T0 + timedelta(minutes=40))]


async def test_an_overstay_survives_a_restart_and_is_not_reported_again(tmp_path: Path) -> None:
    bays = [("B1", "CP-1", 1)]

    async def drain(tracker: BayUsageTracker, store: Store) -> None:
        task = asyncio.create_task(tracker.run(store))
        try:
            await eventually(lambda: _empty(tracker))
            await asyncio.sleep(0.05)  # the last one is written
        finally:
            task.cancel()

    async def sensor(store: Store, tracker: BayUsageTracker, state: BayState, at: datetime) -> None:
        """What the edge does with a sensor's change (Edge._on_bay_change)."""
        states = BayStates(store, tracker)
        reported = await states.changed(change("B1", state, at))
        tracker.bay_changed("B1", reported.state.value, reported.changed_at)

    async with await Store.open(tmp_path / "edge.db") as store:
        tracker = BayUsageTracker(bays)
        await tracker.restore(store)
        await sensor(store, tracker, BayState.OCCUPIED, T0)
        tracker.session_started("CP-1", 1, 7, T0 + timedelta(minutes=1))
        tracker.session_stopped("CP-1", 1, 7, T0 + timedelta(hours=2))
        await drain(tracker, store)
        sent = [row.body["state"] for row in await store.outbox_batch(100) if row.type == "bay.usage"]
        assert sent == ["blocked", "charging", "idle"]

    async with await Store.open(tmp_path / "edge.db") as store:
        tracker = BayUsageTracker(bays)
        await tracker.restore(store)
        [shown] = tracker.usage()
        assert (shown["usage"], shown["since"], shown["transaction_id"]) == (
            "idle", (T0 + timedelta(hours=2)).isoformat(), 7)
        tracker.bay_changed("B1", "occupied", T0)  # the sensor confirms the car with its old arrival
        assert _empty_now(tracker), "an unchanged overstay was queued again"
        await sensor(store, tracker, BayState.FREE, T0 + timedelta(hours=3))
        assert tracker.usage()[0]["usage"] == "free"


def _empty_now(tracker: BayUsageTracker) -> bool:
    return tracker._queue.empty()


async def _empty(tracker: BayUsageTracker) -> bool:
    return _empty_now(tracker)


def meter(n: int) -> SessionMeter:
    return SessionMeter(charger_id="CP-1", connector_id=1, transaction_id=1, energy_register_wh=n, sampled_at=T0)


@contextlib.asynccontextmanager
async def running(store: Store, states: BayStates) -> AsyncIterator[None]:
    """The edge's two loops involved: the outbox upkeep (the cap) and the bay re-sender."""
    tasks = [asyncio.create_task(store.maintain(interval=0.02)), asyncio.create_task(states.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_bay_changes_dropped_at_the_cap_are_followed_by_every_bay_s_current_state(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db") as store:  # B0 was in the site file once
        await BayStates(store).changed(change("B0", BayState.OCCUPIED, T0))
    async with await Store.open(tmp_path / "edge.db", cap=OutboxCap(max_events=50)) as store:
        states = BayStates(store, bay_ids=["B1", "B2"])
        await states.restore()
        # B1 comes and goes many times, B2 gets its car early: offline, the outbox fills with bay
        # changes only (nothing else to drop), and the cap drops the oldest, B2's among them.
        await states.changed(change("B2", BayState.OCCUPIED, T0))
        for n in range(60):
            await states.changed(change("B1", BayState.OCCUPIED if n % 2 else BayState.FREE,
                                        T0 + timedelta(minutes=n)))
        assert store.outbox_status().at_cap
        async with running(store, states):
            await eventually(lambda: _has(store, "site.outbox_dropped"))
            await eventually(lambda: _latest_is(store, {"B1": ("occupied", T0 + timedelta(minutes=59)),
                                                        "B2": ("occupied", T0)}))
        # B0 is no longer the site's: its row went with the oldest, and it is not re-sent
        assert store.dropped["bay.occupancy"] > 0


async def test_meter_samples_dropped_at_the_cap_resend_no_bay(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db", cap=OutboxCap(max_events=50)) as store:
        states = BayStates(store)
        await states.changed(change("B1", BayState.OCCUPIED, T0))
        async with store.writes() as unit:
            for n in range(60):
                await unit.emit(meter(n))
        dropped = await store.enforce_cap()
        assert dropped > 0 and not store.bays_lost.is_set()
        assert len(await occupancy(store)) == 1


async def test_bay_changes_refused_at_the_cap_are_sent_once_the_cap_is_left(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db", cap=OutboxCap(max_events=10, policy="refuse_new")) as store:
        states = BayStates(store)
        await states.changed(change("B1", BayState.OCCUPIED, T0))
        async with store.writes() as unit:
            for n in range(9):
                await unit.emit(meter(n))
        assert store.outbox_status().at_cap
        await states.changed(change("B1", BayState.FREE, T0 + timedelta(hours=1)))  # refused
        assert await latest(store) == {"B1": ("occupied", T0)}
        assert not store.bays_lost.is_set(), "nothing to resend while still at the cap"
        async with running(store, states):
            await store.delete_outbox([row.seq for row in await store.outbox_batch(100)])  # the link is back
            await eventually(lambda: _latest_is(store, {"B1": ("free", T0 + timedelta(hours=1))}))


async def _has(store: Store, type_: str) -> bool:
    return any(row.type == type_ for row in await store.outbox_batch(100_000))


async def _latest_is(store: Store, expected: dict[str, tuple[str, datetime]]) -> bool:
    return await latest(store) == expected


async def test_an_overstay_stored_before_contract_1_1_is_idle_after_the_upgrade(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db") as store:
        async with store.transaction() as tx:  # what an edge before MQTT contract 1.1 kept
            await tx.put_bay_occupancy("B1", "occupied", T0, T0)
            await tx.put_bay_usage("B1", "overstay", T0 + timedelta(hours=2), 7, T0 + timedelta(hours=2))
        tracker = BayUsageTracker([("B1", "CP-1", 1)])
        await tracker.restore(store)
        [shown] = tracker.usage()
        assert (shown["usage"], shown["transaction_id"]) == ("idle", 7)
        tracker.resend()
        [report] = _drain_queue(tracker)
        assert (report.state, report.words, report.glossary_state) == ("idle", 2, "idle")


def _drain_queue(tracker: BayUsageTracker) -> list[BayUsage]:
    queue = tracker._queue
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
