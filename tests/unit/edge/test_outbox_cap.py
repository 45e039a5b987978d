"""The outbox cap ([uplink] in the site file): what happens when the site is offline too long.

Against a real SQLite store. A garage operator must be able to rely on three things: sessions
and charger records are never lost to the cap, the outbox stops growing past its cap, and the
cloud is told what was dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from edge.store import DROP_TO, OutboxCap, Store, row_bytes
from mqtt.payloads import BayOccupancy, SessionMeter, SessionStarted
from tests.support.waiting import poll_until

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def meter(n: int) -> SessionMeter:
    return SessionMeter(charger_id="CP-1", connector_id=1, transaction_id=1, energy_register_wh=n, sampled_at=NOW)


def started(n: int) -> SessionStarted:
    return SessionStarted(charger_id="CP-1", connector_id=1, transaction_id=n + 1, id_tag="TAG",
                          id_tag_status="Accepted", meter_start_wh=0, started_at=NOW)


def bay(n: int) -> BayOccupancy:
    return BayOccupancy(bay_id="B1", state="occupied" if n % 2 else "free", changed_at=NOW)


async def open_store(tmp_path: Path, cap: OutboxCap) -> Store:
    return await Store.open(tmp_path / "edge.db", cap=cap)


@pytest.fixture
async def tiny(tmp_path: Path) -> AsyncIterator[Store]:
    async with await open_store(tmp_path, OutboxCap(max_events=100)) as store:
        yield store


async def rows(store: Store) -> list[tuple[int, str, dict[str, object]]]:
    batch = await store.outbox_batch(100_000)
    return [(row.seq, row.type, row.body) for row in batch]


async def test_drop_oldest_keeps_every_session_and_drops_the_oldest_meter_samples_first(tiny: Store) -> None:
    before = REGISTRY.get_sample_value("evpark_edge_outbox_dropped_total",
                                       {"type": "session.meter", "policy": "drop_oldest_telemetry"}) or 0
    for n in range(60):  # 60 meter samples, 20 sessions, 40 bay changes, interleaved: 120 rows, cap 100
        async with tiny.writes() as unit:
            await unit.emit(meter(n))
        if n % 3 == 0:
            async with tiny.transaction() as tx:
                await tx.emit(started(n))
        if n % 3 != 2:
            async with tiny.writes() as unit:
                await unit.emit(bay(n))
    assert tiny.outbox_backlog == 60 + 20 + 40
    assert tiny.outbox_status().at_cap

    dropped = await tiny.enforce_cap()

    kept = await rows(tiny)
    assert len(kept) == tiny.outbox_backlog == 120 - dropped + 1  # + the site.outbox_dropped report
    assert tiny.outbox_backlog <= DROP_TO * 100 + 1
    types = [t for _, t, _ in kept]
    assert types.count("session.started") == 20, "a session was dropped"
    assert types.count("bay.occupancy") == 40, "bay changes went before the meter samples"
    # the oldest meter samples went, the newest stayed, in order
    energies = [body["energy_register_wh"] for _, t, body in kept if t == "session.meter"]
    assert energies == list(range(60 - len(energies), 60))
    report = [body for _, t, body in kept if t == "site.outbox_dropped"]
    assert len(report) == 1
    assert report[0]["policy"] == "drop_oldest_telemetry"
    assert report[0]["dropped"] == dropped == 60 - len(energies)
    assert report[0]["by_type"] == {"session.meter": dropped}
    assert report[0]["backlog"] == tiny.outbox_backlog - 1
    seqs = [seq for seq, _, _ in kept]
    assert report[0]["last_seq"] < seqs[-1]
    assert tiny.outbox_status().dropped == {"session.meter": dropped}
    after = REGISTRY.get_sample_value("evpark_edge_outbox_dropped_total",
                                      {"type": "session.meter", "policy": "drop_oldest_telemetry"})
    assert after == before + dropped
    assert not tiny.outbox_status().at_cap
    assert await tiny.enforce_cap() == 0, "below the cap nothing more is dropped"


async def test_bay_changes_go_when_meter_samples_are_not_enough(tiny: Store) -> None:
    async with tiny.transaction() as tx:
        for n in range(80):
            await tx.emit(started(n))
        for n in range(30):
            await tx.emit(bay(n))
    dropped = await tiny.enforce_cap()
    kept = await rows(tiny)
    assert [t for _, t, _ in kept].count("session.started") == 80
    assert dropped == 20  # down to 90 rows
    report = next(body for _, t, body in kept if t == "site.outbox_dropped")
    assert report["by_type"] == {"bay.occupancy": 20}


async def test_sessions_alone_may_exceed_the_cap_and_nothing_is_dropped(tiny: Store) -> None:
    async with tiny.transaction() as tx:
        for n in range(130):
            await tx.emit(started(n))
    assert await tiny.enforce_cap() == 0
    assert tiny.outbox_backlog == 130
    assert [t for _, t, _ in await rows(tiny)] == ["session.started"] * 130


async def test_the_byte_cap_counts_too(tmp_path: Path) -> None:
    one = row_bytes(SessionMeter.TYPE, meter(10_000).model_dump_json())
    async with await open_store(tmp_path, OutboxCap(max_events=10_000, max_bytes=50 * one)) as store:
        async with store.writes() as unit:
            for n in range(10_000, 10_060):
                await unit.emit(meter(n))
        assert store.outbox_bytes == 60 * one
        assert store.outbox_status().at_cap
        await store.enforce_cap()
        assert store.outbox_bytes <= 50 * one * DROP_TO + 400  # + the report
        assert store.outbox_backlog < 50


async def test_refuse_new_keeps_what_is_stored_refuses_telemetry_and_reports_it(tmp_path: Path) -> None:
    async with await open_store(tmp_path, OutboxCap(max_events=10, policy="refuse_new")) as store:
        async with store.writes() as unit:
            for n in range(10):
                await unit.emit(meter(n))
        assert store.outbox_status().at_cap
        async with store.writes() as unit:  # at the cap: telemetry is refused ...
            await unit.emit(meter(99))
            await unit.emit(bay(1))
        async with store.transaction() as tx:  # ... a session is not
            await tx.emit(started(1))
        kept = await rows(store)
        assert [body.get("energy_register_wh") for _, t, body in kept if t == "session.meter"] == list(range(10))
        assert [t for _, t, _ in kept][-1] == "session.started"
        assert store.outbox_status().dropped == {"session.meter": 1, "bay.occupancy": 1}

        # the link is back: the backlog drains, the cap is left, the refusals are reported
        await store.delete_outbox([seq for seq, _, _ in kept])
        assert not store.outbox_status().at_cap
        maintenance = asyncio.create_task(store.maintain(interval=0.05))

        async def reported() -> list[dict[str, Any]]:
            assert not maintenance.done(), maintenance  # a dead upkeep would never report
            return [body for _, t, body in await rows(store) if t == "site.outbox_dropped"]

        try:
            await poll_until(reported, within=20)
            report = await reported()
        finally:
            maintenance.cancel()
        assert report == [{**report[0], "policy": "refuse_new", "dropped": 2,
                           "by_type": {"session.meter": 1, "bay.occupancy": 1}}]
        async with store.writes() as unit:  # below the cap again: accepted
            await unit.emit(meter(100))
        assert [t for _, t, _ in await rows(store)].count("session.meter") == 1


async def test_reopening_counts_the_backlog_its_bytes_and_its_oldest_row(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    old = datetime.now(UTC) - timedelta(minutes=5)
    async with await Store.open(path) as store:
        async with store.writes() as unit:
            for n in range(5):
                await unit.emit(meter(n), ts=old + timedelta(seconds=n))
        size = store.outbox_bytes
    async with await Store.open(path) as store:
        status = store.outbox_status()
        assert (status.backlog, status.bytes) == (5, size)
        assert status.oldest_ts == old
        age = status.as_dict(datetime.now(UTC))["oldest_age_s"]
        assert 299 < age < 320
        # drained: nothing waits, the age is 0
        await store.delete_outbox([row.seq for row in await store.outbox_batch(10)])
        assert store.outbox_status().as_dict(datetime.now(UTC))["oldest_age_s"] == 0
        assert (store.outbox_backlog, store.outbox_bytes) == (0, 0)


def test_a_cap_policy_must_be_known() -> None:
    with pytest.raises(ValueError, match="unknown outbox policy"):
        OutboxCap(policy="drop_everything")


async def test_rows_on_their_way_to_the_broker_are_not_dropped_nor_reported(tiny: Store) -> None:
    async with tiny.writes() as unit:
        for n in range(120):
            await unit.emit(meter(n))
    in_flight = await tiny.outbox_batch(50, sending=True)  # published, waiting for their PUBACKs
    await tiny.enforce_cap()
    kept = await rows(tiny)
    report = next(body for _, t, body in kept if t == "site.outbox_dropped")
    assert report["first_seq"] > in_flight[-1].seq, "a sample on its way was reported dropped"
    assert [seq for seq, _, _ in kept][:50] == [row.seq for row in in_flight]
    assert tiny.outbox_backlog <= DROP_TO * 100 + 1
    # acknowledged, they go as usual
    await tiny.delete_outbox([row.seq for row in in_flight])
    assert tiny.outbox_backlog == len(kept) - 50


async def test_over_the_cap_with_every_sample_in_flight_the_upkeep_waits_instead_of_spinning(tiny: Store) -> None:
    """Every droppable row handed to the uplink (a reconnect replaying the backlog) leaves the upkeep nothing
    to drop: it must wait for the PUBACKs, not run again at once. It once woke itself with its own empty
    commit and spun, starving the edge's event loop for a minute (CI, test_outbox_cap)."""
    async with tiny.writes() as unit:
        for n in range(120):
            await unit.emit(meter(n))
    await tiny.outbox_batch(1_000, sending=True)
    rounds = 0
    enforce = tiny.outbox.enforce_cap

    async def counted() -> int:
        nonlocal rounds
        rounds += 1
        return await enforce()

    tiny.outbox.enforce_cap = counted  # type: ignore[method-assign]
    upkeep = asyncio.create_task(tiny.maintain(interval=0.1))
    try:
        await asyncio.sleep(0.55)
    finally:
        upkeep.cancel()
        await asyncio.gather(upkeep, return_exceptions=True)
    assert 1 <= rounds <= 8, f"the upkeep ran {rounds} times in 0.55 s at an interval of 0.1 s"
    assert tiny.outbox_backlog == 120, "nothing on its way was dropped"


async def test_refusals_not_reported_yet_are_reported_when_the_edge_stops(tmp_path: Path) -> None:
    async with await open_store(tmp_path, OutboxCap(max_events=10, policy="refuse_new")) as store:
        async with store.writes() as unit:
            for n in range(10):
                await unit.emit(meter(n))
        async with store.writes() as unit:  # refused; the edge stops before its next report
            for n in range(3):
                await unit.emit(meter(100 + n))
        assert store.outbox_status().dropped == {"session.meter": 3}
    async with await open_store(tmp_path, OutboxCap(max_events=10, policy="refuse_new")) as store:
        reports = [body for _, t, body in await rows(store) if t == "site.outbox_dropped"]
    assert [(r["policy"], r["dropped"], r["by_type"]) for r in reports] == [
        ("refuse_new", 3, {"session.meter": 3})]
