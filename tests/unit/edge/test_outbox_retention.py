"""End-to-end delivery at the edge: a seq per category with no hole, acknowledged envelopes kept
for the retention window, and published again (or answered "gone") when the cloud asks."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.site import Site
from edge.store import MIGRATIONS, OutboxCap, Retention, Store
from mqtt.envelope import Command
from mqtt.payloads import BayOccupancy, ChargerStatus, CommandStatus, Resend, SessionMeter

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "edge.db") as opened:
        yield opened


def status(n: int) -> ChargerStatus:
    return ChargerStatus(charger_id="CP-1", connector_id=1, status="Available", info=f"event-{n}", observed_at=NOW)


def meter(n: int) -> SessionMeter:
    return SessionMeter(charger_id="CP-1", connector_id=1, transaction_id=1, energy_register_wh=n, sampled_at=NOW)


def bay(n: int) -> BayOccupancy:
    return BayOccupancy(bay_id=f"B{n}", state="occupied", changed_at=NOW)


async def ack_all(store: Store) -> None:
    await store.delete_outbox([row.seq for row in await store.outbox_batch(10_000, sending=True)])


async def test_each_category_counts_its_own_envelopes_without_a_hole(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.emit(status(1))
        await tx.emit(meter(1))
        await tx.emit(status(2))
    async with store.writes() as unit:  # the group-committed path numbers its rows too
        await unit.emit(meter(2))
        await unit.emit(meter(3))
    rows = await store.outbox_batch(100)
    assert [(row.type, row.category_seq) for row in rows] == [
        ("charger.status", 1), ("session.meter", 1), ("charger.status", 2), ("session.meter", 2),
        ("session.meter", 3)]
    async with store.transaction() as tx:
        assert await tx.high_water() == {"charger": 2, "session": 3}


async def test_a_rolled_back_envelope_leaves_no_hole(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.emit(status(1))
            raise RuntimeError("the charger message failed")
    async with store.transaction() as tx:
        await tx.emit(status(2))
    assert [row.category_seq for row in await store.outbox_batch(10)] == [1]


async def test_numbering_goes_on_after_the_rows_are_acknowledged_and_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    async with await Store.open(path) as store:
        async with store.transaction() as tx:
            await tx.emit(status(1))
            await tx.emit(status(2))
        await ack_all(store)
    async with await Store.open(path) as store:
        async with store.transaction() as tx:
            await tx.emit(status(3))
        assert [row.category_seq for row in await store.outbox_batch(10)] == [3]


async def test_acknowledged_envelopes_are_kept_and_queued_again_with_their_own_id(store: Store) -> None:
    async with store.transaction() as tx:
        for n in range(1, 6):
            await tx.emit(meter(n))
    sent = await store.outbox_batch(10, sending=True)
    assert await store.delete_outbox([row.seq for row in sent]) == 5
    assert store.outbox_backlog == 0 and await store.sent_count() == 5
    async with store.transaction() as tx:
        outcome = await tx.resend("session", 2, 4)
    assert (outcome.resent, outcome.pending, outcome.gone) == (3, 0, [])
    assert store.outbox_backlog == 3 and store.outbox_changed.is_set()
    again = await store.outbox_batch(10)
    assert [(row.seq, row.envelope_id, row.body, row.category_seq) for row in again] == [
        (row.seq, row.envelope_id, row.body, row.category_seq) for row in sent[1:4]]
    await ack_all(store)
    assert await store.sent_count() == 5  # kept again for another request


async def test_what_the_store_no_longer_has_is_gone_and_what_waits_is_coming(tmp_path: Path) -> None:
    # a cap of 10 envelopes: dropping meter samples at the cap makes holes on purpose
    async with await Store.open(tmp_path / "edge.db", cap=OutboxCap(max_events=10)) as store:
        async with store.transaction() as tx:
            for n in range(1, 13):
                await tx.emit(meter(n))
        assert await store.enforce_cap() > 0
        kept = {int(row.category_seq or 0) for row in await store.outbox_batch(100) if row.type == "session.meter"}
        assert 1 not in kept and 12 in kept
        async with store.transaction() as tx:
            outcome = await tx.resend("session", 1, 20)  # beyond the high-water mark: never assigned
        assert outcome.resent == 0 and outcome.pending == len(kept)
        assert outcome.gone == [(1, min(kept) - 1)]


async def test_the_retention_forgets_the_oldest_beyond_its_count_and_its_age(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db", retention=Retention(days=7, envelopes=3)) as store:
        async with store.transaction() as tx:
            for n in range(1, 6):
                await tx.emit(bay(n))
        await ack_all(store)
        assert await store.prune_sent(datetime.now(UTC)) == 2
        async with store.transaction() as tx:
            outcome = await tx.resend("bay", 1, 5)
        assert outcome.resent == 3 and outcome.gone == [(1, 2)]
        await ack_all(store)
        assert await store.prune_sent(datetime.now(UTC) + timedelta(days=8)) == 3
        assert await store.sent_count() == 0


async def test_no_retention_keeps_nothing(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db", retention=Retention(envelopes=0)) as store:
        async with store.transaction() as tx:
            await tx.emit(status(1))
        await ack_all(store)
        assert store.outbox_backlog == 0 and await store.sent_count() == 0


async def test_an_outbox_of_an_older_edge_is_numbered_per_category_when_migrated(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    with sqlite3.connect(path) as db:  # schema 3, with rows still waiting
        for step in MIGRATIONS[:3]:
            for statement in step:
                db.execute(statement)
        for n, type_ in enumerate(("session.meter", "charger.status", "session.meter", "command.result"), 1):
            db.execute("INSERT INTO outbox (envelope_id, type, body, ts) VALUES (?, ?, '{}', ?)",
                       (f"00000000-0000-4000-8000-00000000000{n}", type_, NOW.isoformat()))
        db.execute("PRAGMA user_version = 3")
    async with await Store.open(path) as store:
        rows = await store.outbox_batch(10)
        assert [row.category_seq for row in rows] == [1, 1, 2, 1]
        async with store.transaction() as tx:
            assert await tx.high_water() == {"session": 2, "charger": 1, "result": 1}
            await tx.emit(meter(9))
        assert (await store.outbox_batch(10))[-1].category_seq == 3


async def test_the_site_answers_a_resend_command(store: Store) -> None:
    site = Site(store, site_id="site-1", heartbeat_interval=60, accept_unknown_chargers=True)
    async with store.transaction() as tx:
        for n in range(1, 4):
            await tx.emit(meter(n))
    await ack_all(store)
    command = Command.new("site-1", Resend(store_id=store.store_id, category="session", first_seq=1, last_seq=3))
    assert await site.handle_command(command) is CommandStatus.ACCEPTED
    rows = await store.outbox_batch(10)
    assert [row.type for row in rows] == ["session.meter"] * 3 + ["site.resent", "command.result"]
    answer = rows[3].body
    assert answer["resent"] == 3 and answer["gone"] == [] and answer["command_id"] == str(command.id)
    await ack_all(store)

    other = Command.new("site-1", Resend(store_id="a-replaced-store", category="session", first_seq=1, last_seq=3))
    assert await site.handle_command(other) is CommandStatus.REJECTED
    rows = await store.outbox_batch(10)
    assert [row.type for row in rows] == ["site.resent", "command.result"]
    assert rows[0].body["unknown_store"] is True and rows[0].body["resent"] == 0
