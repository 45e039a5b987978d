from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import aiosqlite
import pytest

from edge.store import SCHEMA_VERSION, Store, StoreError
from mqtt.payloads import ChargerStatus

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "edge.db")
    async with opened:
        yield opened


def status(n: int) -> ChargerStatus:
    return ChargerStatus(charger_id="CP-1", connector_id=1, status="Available", info=f"event-{n}", observed_at=NOW)


async def new_transaction(store: Store, meter_start: int = 0) -> int:
    async with store.transaction() as tx:
        return await tx.insert_transaction(
            charger_id="CP-1", connector_id=1, id_tag="T", id_tag_status="Accepted", meter_start=meter_start,
            started_at=NOW, reported_started_at=f"r-{meter_start}", reservation_id=None, clock_suspect=False)


async def test_a_new_database_is_migrated_to_the_latest_schema_in_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "edge.db"
    async with await Store.open(path):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "chargers", "connectors", "transactions", "reconciled_stops", "auth_list", "outbox"} <= tables
    store = await Store.open(path)  # reopening an up-to-date database changes nothing
    async with store:
        rows = list(await store._db.execute_fetchall("PRAGMA synchronous"))
        assert rows[0][0] == 2  # FULL


async def test_a_database_from_a_newer_edge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    async with aiosqlite.connect(path) as db:
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        await db.commit()
    with pytest.raises(StoreError, match="newer than this edge"):
        await Store.open(path)


async def test_transaction_ids_are_never_reused_after_delete_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    async with await Store.open(path) as store:
        first, second = await new_transaction(store, 1), await new_transaction(store, 2)
        async with store.transaction() as tx:
            await tx._run("DELETE FROM transactions WHERE id = ?", (second,))
    async with await Store.open(path) as store:
        third = await new_transaction(store, 3)
    assert 1 <= first < second < third


async def test_a_store_keeps_its_instance_id_across_restarts_and_a_new_database_gets_a_new_one(
        tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "edge.db") as store:
        first = store.store_id
    async with await Store.open(tmp_path / "edge.db") as store:
        assert store.store_id == first  # a restart is the same store
    assert uuid.UUID(hex=first).version == 4 and first == uuid.UUID(hex=first).hex
    async with await Store.open(tmp_path / "replaced" / "edge.db") as store:
        assert store.store_id != first  # a replaced disk is another store: its seq and ids start over


async def test_outbox_rows_exist_only_if_their_transaction_commits(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.register_charger("CP-1", NOW)
            await tx.emit(status(0))
            raise RuntimeError("the state change failed half way")
    assert await store.get_charger("CP-1") is None
    assert await store.outbox_batch() == []
    assert store.outbox_backlog == 0
    assert not store.outbox_changed.is_set()

    async with store.transaction() as tx:
        await tx.register_charger("CP-1", NOW)
        await tx.emit(status(1))
    assert await store.get_charger("CP-1") is not None
    assert [row.body["info"] for row in await store.outbox_batch()] == ["event-1"]
    assert store.outbox_backlog == 1
    assert store.outbox_changed.is_set()


async def test_outbox_seq_only_grows_even_after_rows_are_deleted(store: Store) -> None:
    for n in range(3):
        async with store.transaction() as tx:
            await tx.emit(status(n))
    rows = await store.outbox_batch()
    assert [row.seq for row in rows] == sorted(row.seq for row in rows)
    assert [row.type for row in rows] == ["charger.status"] * 3
    assert len({row.envelope_id for row in rows}) == 3
    assert await store.delete_outbox([row.seq for row in rows]) == 3
    assert store.outbox_backlog == 0
    async with store.transaction() as tx:
        seq = await tx.emit(status(9))
    assert seq > rows[-1].seq


async def test_a_transaction_and_a_group_committed_unit_write_a_charger_message_alike(store: Store) -> None:
    """The two ways to run a unit of work share their statements: the same message, written either way,
    leaves the same charger, connector and outbox rows."""
    seen: dict[str, tuple[object, ...]] = {}
    for charger_id, grouped in (("CP-TX", False), ("CP-GC", True)):
        await store.register_charger(charger_id)
        body = ChargerStatus(charger_id=charger_id, connector_id=1, status="Charging", info="x", observed_at=NOW)
        if grouped:
            async with store.writes() as unit:
                await unit.touch_charger(charger_id, NOW)
                await unit.record_connector_status(charger_id, 1, status="Charging", error_code="NoError", info="x",
                                                   at=NOW)
                assert await unit.emit(body) is None  # its statements run at commit
        else:
            async with store.transaction() as tx:
                await tx.touch_charger(charger_id, NOW)
                await tx.record_connector_status(charger_id, 1, status="Charging", error_code="NoError", info="x",
                                                 at=NOW)
                assert isinstance(await tx.emit(body), int)
        async with store.transaction() as tx:
            charger, [connector] = await tx.get_charger(charger_id), await tx.connectors(charger_id)
        [row] = [r for r in await store.outbox_batch(10) if r.body["charger_id"] == charger_id]
        assert charger is not None
        seen[charger_id] = (charger.last_seen, connector.status, connector.error_code, connector.info,
                            connector.updated_at, row.type, {k: v for k, v in row.body.items() if k != "charger_id"})
    assert seen["CP-TX"] == seen["CP-GC"]
    assert seen["CP-TX"][0] == NOW
    assert [r.category_seq for r in await store.outbox_batch(10)] == [1, 2]


async def test_an_outbox_body_without_an_uplink_topic_is_refused_at_write_time(store: Store) -> None:
    class Odd:
        TYPE: ClassVar[str] = "nonsense.type"

        def model_dump(self, *, mode: str = "python") -> dict[str, object]:
            return {}

    with pytest.raises(ValueError, match="no uplink category"):
        async with store.transaction() as tx:
            await tx.emit(Odd())


async def test_a_version_1_database_is_migrated_forward_keeping_its_data(tmp_path: Path) -> None:
    from edge.store import MIGRATIONS

    path = tmp_path / "edge.db"
    with sqlite3.connect(path) as db:  # what an edge of schema version 1 left behind
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO chargers (id, vendor, model, registration_status, created_at) "
                   "VALUES ('CP-1', 'Acme', 'W', 'Accepted', '2025-01-01T00:00:00+00:00')")
        db.execute("INSERT INTO transactions (charger_id, connector_id, id_tag, id_tag_status, meter_start, "
                   "started_at, reported_started_at, state) VALUES ('CP-1', 1, 'T', 'Accepted', 5, "
                   "'2025-01-01T00:00:00+00:00', 'r', 'active')")
        db.execute("PRAGMA user_version = 1")
    async with await Store.open(path) as store:
        charger = await store.get_charger("CP-1")
        transaction = await store.get_transaction(1)
        next_id = await new_transaction(store, 7)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"charger_events", "charger_calls", "reservations", "charging_profiles", "handled_commands",
            "bays", "outbox_sent", "outbox_streams"} <= tables
    assert charger is not None and charger.accepted and charger.security_profile == 0
    assert charger.auth_key_hash is None
    assert transaction is not None and transaction.active and transaction.meter_start == 5
    assert next_id == 2  # ids keep growing across the migration


async def test_old_charger_history_is_forgotten_but_sessions_are_kept(store: Store) -> None:
    old, recent = NOW - timedelta(days=100), NOW - timedelta(days=1)
    tx_id = await new_transaction(store)
    async with store.transaction() as tx:
        for when in (old, recent):
            await tx.record_charger_event("CP-1", "FirmwareStatusNotification", {"status": "Idle"}, when)
            await tx.record_charger_call("CP-1", "Reset", {"type": "Soft"}, outcome="result", response={},
                                         origin="admin", now=when)
            await tx.mark_command_handled(uuid.uuid4(), "accepted", when)
    assert await store.prune_history(NOW - timedelta(days=90)) == 3
    async with store.transaction() as tx:
        assert [e["received_at"] for e in await tx.charger_events("CP-1")] == [recent.isoformat()]
        assert [c["sent_at"] for c in await tx.charger_calls("CP-1")] == [recent.isoformat()]
        assert (await tx.get_transaction(tx_id)) is not None
    assert await store.prune_history(NOW - timedelta(days=90)) == 0


async def test_id_tags_that_differ_only_in_case_become_one_entry_the_first_stored(tmp_path: Path) -> None:
    from edge.store import MIGRATIONS

    path = tmp_path / "edge.db"
    with sqlite3.connect(path) as db:  # a version 4 list kept both spellings of one card
        for step in MIGRATIONS[:4]:
            for statement in step:
                db.execute(statement)
        db.execute("INSERT INTO auth_list (id_tag, status) VALUES ('04A2B3C4', 'Accepted')")
        db.execute("INSERT INTO auth_list (id_tag, status) VALUES ('04a2b3c4', 'Blocked')")
        db.execute("INSERT INTO auth_list (id_tag, status) VALUES ('OTHER', 'Accepted')")
        db.execute("PRAGMA user_version = 4")
    async with await Store.open(path) as store:
        entries = [(e.id_tag, str(e.status)) for e in await store.auth_entries()]
        async with store.transaction() as tx:
            found = await tx.get_auth_entry("04A2b3C4")
    assert entries == [("04A2B3C4", "Accepted"), ("OTHER", "Accepted")]
    assert found is not None and found.id_tag == "04A2B3C4"


async def test_a_version_5_ghost_is_written_off_by_the_migration_and_stays_so(tmp_path: Path) -> None:
    """v6: a transaction whose connector went Available after its start (v5 decided it at every read, so a
    later Reserved revived it) is written off once, in the store; a running one is not."""
    from edge.store import MIGRATIONS

    path = tmp_path / "edge.db"
    start, later = NOW.isoformat(), (NOW + timedelta(minutes=5)).isoformat()
    with sqlite3.connect(path) as db:
        for step in MIGRATIONS[:5]:
            for statement in step:
                db.execute(statement)
        for connector, state in ((1, "Available"), (2, "Charging")):
            db.execute("INSERT INTO transactions (charger_id, connector_id, id_tag, id_tag_status, meter_start,"
                       " started_at, reported_started_at, state) VALUES ('CP-1', ?, 'T', 'Accepted', 0, ?, ?,"
                       " 'active')", (connector, start, start))
            db.execute("INSERT INTO connectors (charger_id, connector_id, status, error_code, updated_at)"
                       " VALUES ('CP-1', ?, ?, 'NoError', ?)", (connector, state, later))
        db.execute("PRAGMA user_version = 5")
    async with await Store.open(path) as store, store.transaction() as tx:
        await tx.record_connector_status("CP-1", 1, status="Reserved", error_code="NoError", info=None,
                                         at=NOW + timedelta(minutes=9))
        live = [(t.connector_id, t.running) for t in await tx.live_transactions()]
        ghost = await tx.get_transaction(1)
        again = await tx.write_off("CP-1", reason="reboot", now=NOW, connector_id=1)
    assert live == [(2, True)]
    assert ghost is not None and ghost.active and ghost.written_off_reason == "connector_available"
    assert again == [], "written off once: the first reason stays"


def test_an_authorization_key_is_masked_wherever_a_call_is_kept_or_relayed() -> None:
    from edge.site import mask_secrets

    assert mask_secrets("ChangeConfiguration", {"key": "AuthorizationKey", "value": "s3cret-s3cret-s3cret"}) == {
        "key": "AuthorizationKey", "value": "********"}
    assert mask_secrets("ChangeConfiguration", {"key": "authorizationkey", "value": "x"})["value"] == "********"
    assert mask_secrets("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})["value"] == "60"
    listed = mask_secrets("GetConfiguration", {"configurationKey": [
        {"key": "AuthorizationKey", "readonly": False, "value": "s3cret-s3cret-s3cret"},
        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]})
    assert [k["value"] for k in listed["configurationKey"]] == ["********", "60"]
