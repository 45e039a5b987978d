"""The vehicle registry keeps every site's authorization list in sync over the real Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import sql_units_of_work
from cloud.vehicles.domain import RegisterVehicle
from cloud.vehicles.repository import SqlVehicleRepository, unit_of_work
from cloud.vehicles.service import VehicleService
from mqtt import AuthListUpdate, Command, CommandResult, CommandStatus, Envelope, SiteHello, Topics, decode_command
from tests.integration.cloud.conftest import migrations_of
from tests.support.identity import PRINCIPALS
from tests.support.waiting import poll_until

DRIVER, ADMIN = PRINCIPALS["driver_a"], PRINCIPALS["admin"]


@pytest.fixture
async def registry(database_url: str, mosquitto: tuple[str, int],
                   topic_root: str) -> AsyncIterator[VehicleService]:
    db = Database(database_url.replace("service.db", "vehicles.db"))
    await db.connect()
    await db.migrate(migrations_of("vehicles"))
    box = Outbox(db)
    service = VehicleService(sql_units_of_work(box, SqlVehicleRepository))
    link = MqttLink(service="vehicles", outbox=box, host=mosquitto[0], port=mosquitto[1],
                    topics=Topics(topic_root), categories=["site", "result"],
                    handler=lambda tx, envelope: service.on_site_message(unit_of_work(tx), envelope),
                    username="evpark-cloud")
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(service.run_sync(link, interval=0.2))]
    await asyncio.wait_for(link.connected.wait(), 20)
    try:
        yield service
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()


class FakeSite:
    """Plays a site's edge on the wire: says hello, receives commands, answers them."""

    def __init__(self, client: aiomqtt.Client, topics: Topics, site_id: str) -> None:
        self.client, self.topics, self.site_id, self.seq = client, topics, site_id, 0

    async def send(self, body: SiteHello | CommandResult) -> None:
        self.seq += 1
        envelope = Envelope.wrap(self.site_id, self.seq, body)
        await self.client.publish(self.topics.up_for_type(self.site_id, envelope.type), envelope.to_bytes(), qos=1)

    async def next_update(self) -> tuple[str, AuthListUpdate]:
        async for message in self.client.messages:
            command = decode_command(message.payload)  # type: ignore[arg-type]
            return str(command.id), AuthListUpdate.model_validate(command.body)
        raise AssertionError("no command")


async def test_a_site_gets_the_full_list_then_only_changes(registry: VehicleService, mosquitto: tuple[str, int],
                                                           topic_root: str) -> None:
    topics = Topics(topic_root)
    first = await registry.register(DRIVER, RegisterVehicle(plate="A1", id_tags=("CARD-A",)))
    async with aiomqtt.Client(*mosquitto, username="site-1") as client:
        await client.subscribe(topics.down("site-1"), qos=1)
        site = FakeSite(client, topics, "site-1")
        await site.send(SiteHello(edge_version="test", authlist_version=0))
        command_id, update = await asyncio.wait_for(site.next_update(), 20)
        assert update.full and [e.id_tag for e in update.entries] == ["CARD-A"]
        await site.send(CommandResult(command_id=command_id, command_type=update.TYPE,  # type: ignore[arg-type]
                                      status=CommandStatus.ACCEPTED))
        async def synced() -> bool:
            return bool((await registry.get(ADMIN, first.vehicle_id)).model_dump()["sites"] == [
                {"site_id": "site-1", "authorization_synced": True}])

        await poll_until(synced, within=20)
        assert (await registry.get(ADMIN, first.vehicle_id)).model_dump()["sites"][0]["authorization_synced"] is True

        second = await registry.register(DRIVER, RegisterVehicle(plate="B2", id_tags=("CARD-B",)))
        _, delta = await asyncio.wait_for(site.next_update(), 20)
        assert not delta.full
        assert delta.since_version == update.version
        assert [e.id_tag for e in delta.entries] == ["CARD-B"]
        assert (await registry.get(ADMIN, second.vehicle_id)).model_dump()["sites"][0]["authorization_synced"] is False


async def test_a_site_ahead_of_the_registry_is_sent_the_full_list(registry: VehicleService,
                                                                  mosquitto: tuple[str, int],
                                                                  topic_root: str) -> None:
    topics = Topics(topic_root)
    await registry.register(DRIVER, RegisterVehicle(plate="A1", id_tags=("CARD-A",)))
    async with aiomqtt.Client(*mosquitto, username="site-2") as client:
        await client.subscribe(topics.down("site-2"), qos=1)
        site = FakeSite(client, topics, "site-2")
        # e.g. the registry's database was restored from an older backup
        await site.send(SiteHello(edge_version="test", authlist_version=999))
        _, update = await asyncio.wait_for(site.next_update(), 20)
        assert update.full


async def test_a_site_that_answers_before_the_send_returns_is_still_synced(database_url: str) -> None:
    """A site on a fast link answers within milliseconds: its result must find the command pending."""
    db = Database(database_url.replace("service.db", "vehicles-fast.db"))
    await db.connect()
    await db.migrate(migrations_of("vehicles"))
    box = Outbox(db)
    service = VehicleService(sql_units_of_work(box, SqlVehicleRepository))

    class InstantSite:
        sent = 0

        async def send_command(self, command: Command) -> None:
            self.sent += 1
            result = Envelope.wrap(command.site_id, self.sent, CommandResult(
                command_id=command.id, command_type=command.type, status=CommandStatus.ACCEPTED))
            async with box.transaction() as tx:  # handled before send_command returns
                await service.on_site_message(unit_of_work(tx), result)

    try:
        async with box.transaction() as tx:
            await service.on_site_message(unit_of_work(tx), Envelope.wrap(
                "site-fast", 1, SiteHello(edge_version="t", authlist_version=0)))
        vehicle = await service.register(DRIVER, RegisterVehicle(plate="F1", id_tags=("CARD-F",)))
        site = InstantSite()
        assert await service.sync_sites_once(site) == 1
        assert (await service.get(DRIVER, vehicle.vehicle_id)).model_dump()["sites"] == [{"site_id": "site-fast",
                                                                                  "authorization_synced": True}]
        assert await service.sync_sites_once(site) == 0, "nothing more to send"
    finally:
        await db.close()
