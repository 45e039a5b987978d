"""A consumer parks what breaks its contract, with the reason, and keeps consuming; after the fix,
`evpark events replay` delivers each parked event exactly once — on the in-process bus with SQLite
and on RabbitMQ with PostgreSQL.

The consumer is a service of the test's own (``cloud/probe``, made as cloud/README.md says), so
that the test can deploy "the fix": a version that reads the producer's new major version and
accepts the payload the old version refused.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from cloud.contracts import Event
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.events import InProcessBus
from cloud.platform.parked import ParkedMessages
from cloud.platform.settings import CloudSettings
from cloud.registry import spec
from tests.support import services
from tests.support.new_service import added_service
from tests.support.waiting import eventually

PROBE = {
    "__init__.py": '''
        from pathlib import Path
        from typing import ClassVar

        from cloud.contracts import EventBody
        from cloud.contracts.vehicles import VehicleRegistered
        from cloud.platform.spec import ServiceSpec


        class RegisteredV2(EventBody):
            """The producer's next major version, which only the fixed consumer reads."""

            NAME: ClassVar[str] = "vehicle.registered"
            VERSION: ClassVar[str] = "2.0"
            vehicle_id: str
            plates: list[str]


        class LenientRegistered(VehicleRegistered):
            """The fix for payloads without idTags."""

            id_tags: list[str] = []


        FIXED = False
        seen: list[str] = []

        SPEC = ServiceSpec(name="probe", port=8198, app="cloud.probe.app:build_app", description="replay probe",
                           prefixes=("/probe",), migrations=Path(__file__).parent / "migrations",
                           consumes=(VehicleRegistered, RegisteredV2, LenientRegistered))
    ''',
    "app.py": '''
        from fastapi import APIRouter

        import cloud.probe as probe
        from cloud.contracts.vehicles import VehicleRegistered
        from cloud.platform.service_app import service_app

        QUEUE = "probe.vehicle-events"


        def build_app(settings, *, bus=None, cache=None):
            async def wire(platform):
                async def handle(event):
                    async with platform.outbox.transaction() as tx:
                        if await tx.claim(str(event.id), QUEUE):
                            probe.seen.append(str(event.id))

                handlers = ({probe.LenientRegistered: handle, probe.RegisteredV2: handle} if probe.FIXED
                            else {VehicleRegistered: handle})
                await platform.consume(QUEUE, handlers)
                return object(), None

            return service_app(probe.SPEC, settings, wire=wire, router=APIRouter(), bus=bus, cache=cache)
    ''',
    "migrations/env.py": '''
        from cloud.platform.migration_env import run_migrations

        run_migrations()
    ''',
    "migrations/versions/0001_initial.py": '''
        from alembic import op

        from cloud.platform.tables import create_platform_tables

        revision = "0001"
        down_revision = None


        def upgrade():
            create_platform_tables(op.get_bind())
    ''',
}


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    files = {path: textwrap.dedent(code).lstrip() for path, code in PROBE.items()}
    with added_service("probe", files, tmp_path / "ext", monkeypatch):
        import cloud.probe as module

        yield module


@pytest.fixture(params=["in-process+sqlite", pytest.param("rabbitmq+postgresql", marks=pytest.mark.integration)])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CloudSettings]:
    if request.param == "in-process+sqlite":
        yield CloudSettings(data_dir=tmp_path / "data", database_url="", amqp_url="")
        return
    services.require("PostgreSQL", services.POSTGRES)
    services.require("RabbitMQ", services.RABBITMQ)
    vhost = services.create_rabbitmq_vhost()
    name = services.fresh_name("evpark_replay_")
    try:
        yield CloudSettings(data_dir=tmp_path / "data", amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}_{{service}}")
    finally:
        services.delete_rabbitmq_vhost(vhost)
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}_probe" WITH (FORCE)')
        finally:
            await connection.close()


def replay_cli(settings: CloudSettings) -> tuple[int, str]:
    from evpark.cli import app

    env = {"EVPARK_DATA_DIR": str(settings.data_dir), "EVPARK_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(app, ["events", "replay", "--service", "probe", "--wait", "20"], env=env)
    return result.exit_code, result.output


def parked_list_cli(settings: CloudSettings) -> str:
    from evpark.cli import app

    env = {"EVPARK_DATA_DIR": str(settings.data_dir), "EVPARK_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(app, ["events", "parked", "--service", "probe", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def registered(version: str, payload: dict[str, Any]) -> Event:
    return Event(name="vehicle.registered", version=version, source="vehicles", payload=payload)


async def test_parked_events_keep_their_reason_and_are_replayed_once_after_the_fix(
        probe: Any, settings: CloudSettings) -> None:
    bus = InProcessBus() if not settings.amqp_url else None  # embedded: the caller's shared bus
    if bus is not None:
        await bus.start()
    future_major = registered("2.0", {"vehicle_id": "veh-2", "plates": ["EV 2"]})
    no_id_tags = registered("1.0", {"vehicle_id": "veh-3", "plate": "EV 3"})
    good = Event.of(VehicleRegistered(vehicle_id="veh-1", plate="EV 1", id_tags=["TAG1"]), source="vehicles")

    app = spec("probe").build_app(settings, bus=bus)
    async with app.router.lifespan_context(app):
        platform = app.state.platform
        for event in (future_major, no_id_tags, good):
            await platform.bus.publish(event)
        await eventually(lambda: probe.seen == [str(good.id)], what="the good event handled after the bad ones")
        store = ParkedMessages(platform.db, service="probe")
        await eventually(lambda: _count(store, 2), what="both bad events parked")
        reasons = {row.payload: row.error for row in await store.rows()}
        assert [reasons[e.model_dump_json()] for e in (future_major, no_id_tags)] == [
            "vehicle.registered version 2.0: this consumer reads major version(s) 1",
            "vehicle.registered 1.0 fails its schema: id_tags: Field required",
        ]
        listed = await asyncio.to_thread(parked_list_cli, settings)
        assert listed.count('"name": "vehicle.registered"') == 2 and "major version(s) 1" in listed

        code, output = await asyncio.to_thread(replay_cli, settings)  # before the fix: refused again
        assert code == 1 and "0 delivered, 2 parked again" in output, output
        assert probe.seen == [str(good.id)]

    probe.FIXED = True  # the fix is deployed: a consumer that reads v2 and payloads without idTags
    fixed = spec("probe").build_app(settings, bus=bus)
    async with fixed.router.lifespan_context(fixed):
        code, output = await asyncio.to_thread(replay_cli, settings)
        assert code == 0 and "2 delivered, 0 parked again, 0 still waiting" in output, output
        assert sorted(probe.seen) == sorted(str(e.id) for e in (good, future_major, no_id_tags))
        assert await ParkedMessages(fixed.state.platform.db, service="probe").rows() == []
        # a replay repeated (a crash between delivery and delete) finds the event claimed: still once
        [consumer] = fixed.state.platform.consumers
        await consumer.replay("probe.vehicle-events", no_id_tags.model_dump_json())
        assert len(probe.seen) == 3
        code, output = await asyncio.to_thread(replay_cli, settings)
        assert code == 0 and "No parked messages to replay." in output
    if bus is not None:
        await bus.close()


async def _count(store: ParkedMessages, expected: int) -> bool:
    return len(await store.rows()) == expected
