"""Group commit: write units of many chargers share one SQLite transaction, and each caller returns
only once the transaction holding its unit committed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.store import Store
from mqtt.payloads import ChargerStatus

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "edge.db")
    async with opened:
        await opened.register_charger("CP-1")  # connectors belong to a known charger
        yield opened


def status(charger_id: str, n: int) -> ChargerStatus:
    return ChargerStatus(charger_id=charger_id, connector_id=1, status="Charging", info=f"event-{n}", observed_at=NOW)


async def write(store: Store, charger_id: str, n: int) -> None:
    async with store.writes() as unit:
        await unit.touch_charger(charger_id, NOW)
        await unit.record_connector_status(charger_id, 1, status="Charging", error_code="NoError", info=f"event-{n}",
                                           at=NOW)
        await unit.emit(status(charger_id, n))


def committed(path: Path) -> int:
    """Outbox rows another connection sees: only what is committed."""
    with sqlite3.connect(path) as other:
        return int(other.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def test_concurrent_writers_share_transactions_and_each_returns_after_its_commit(store: Store) -> None:
    for n in range(50):
        await store.register_charger(f"CP-{n}")
    commits = 0
    original = store._group.commit_units

    async def counting(units):  # type: ignore[no-untyped-def]
        nonlocal commits
        commits += 1
        await original(units)

    store._group.commit_units = counting  # type: ignore[method-assign]

    async def one(n: int) -> int:
        await write(store, f"CP-{n}", n)
        return committed(store.path)  # durable by the time the writer is answered

    seen = await asyncio.gather(*(one(n) for n in range(50)))
    assert commits < 50  # grouped
    assert all(count >= 1 for count in seen)
    assert committed(store.path) == 50
    assert store.outbox_backlog == 50
    assert store.outbox_changed.is_set()
    rows = await store.outbox_batch(100)
    assert sorted(row.body["info"] for row in rows) == sorted(f"event-{n}" for n in range(50))
    charger = await store.get_charger("CP-7")
    assert charger is not None and charger.last_seen == NOW


async def test_outbox_seq_follows_the_order_units_were_queued(store: Store) -> None:
    await asyncio.gather(*(write(store, "CP-1", n) for n in range(20)))
    rows = await store.outbox_batch(100)
    assert [row.body["info"] for row in rows] == [f"event-{n}" for n in range(20)]


async def test_a_unit_whose_body_fails_writes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.writes() as unit:
            await unit.emit(status("CP-1", 1))
            raise RuntimeError("failed before the end of the unit")
    assert await store.outbox_batch() == []
    assert store.outbox_backlog == 0


async def test_a_failing_unit_fails_only_its_own_caller(store: Store) -> None:
    async def broken() -> None:
        async with store.writes() as unit:
            unit.statements.append(("INSERT INTO no_such_table VALUES (?)", (1,)))

    results = await asyncio.gather(write(store, "CP-1", 1), broken(), write(store, "CP-1", 2), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], sqlite3.OperationalError)
    assert [row.body["info"] for row in await store.outbox_batch()] == ["event-1", "event-2"]


async def test_delete_outbox_is_group_committed_and_counts_rows(store: Store) -> None:
    await asyncio.gather(*(write(store, "CP-1", n) for n in range(5)))
    rows = await store.outbox_batch()
    deleted = await asyncio.gather(store.delete_outbox([rows[0].seq, rows[1].seq]),
                                   store.delete_outbox([rows[2].seq, 10_000]), write(store, "CP-1", 9))
    assert deleted[:2] == [2, 1]
    assert [row.body["info"] for row in await store.outbox_batch()] == ["event-3", "event-4", "event-9"]
    assert store.outbox_backlog == 3
