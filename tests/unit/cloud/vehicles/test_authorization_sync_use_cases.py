"""Keeping every site's authorization list in sync: hellos, updates, answers, resends."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cloud.vehicles.domain import RESEND_AFTER, RegisterVehicle, SiteSync
from cloud.vehicles.service import VehicleService
from mqtt import AuthListUpdate, Command, CommandResult, CommandStatus, Envelope, SiteHello
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.support.waiting import poll_until
from tests.unit.cloud.vehicles.conftest import Clock
from tests.unit.cloud.vehicles.fakes import InMemoryVehicleRepository, RecordingSender

Units = MemoryUnits[InMemoryVehicleRepository]
DRIVER, ADMIN = PRINCIPALS["driver_a"], PRINCIPALS["admin"]


class Site:
    """Plays one site's edge towards the registry."""

    def __init__(self, registry: VehicleService, units: Units, site_id: str = "site-1") -> None:
        self.registry, self.units, self.site_id, self.seq = registry, units, site_id, 0

    async def send(self, body: SiteHello | CommandResult) -> None:
        self.seq += 1
        async with self.units() as uow:
            await self.registry.on_site_message(uow, Envelope.wrap(self.site_id, self.seq, body))

    async def hello(self, version: int = 0) -> None:
        await self.send(SiteHello(edge_version="t", authlist_version=version))

    async def answer(self, command: Command, status: CommandStatus = CommandStatus.ACCEPTED) -> None:
        await self.send(CommandResult(command_id=command.id, command_type=command.type, status=status))

    async def synced(self, vehicle_id: str) -> bool:
        view = await self.registry.get(ADMIN, vehicle_id)
        return next(s.authorization_synced for s in view.sites if s.site_id == self.site_id)


def update_of(command: Command) -> AuthListUpdate:
    return AuthListUpdate.model_validate(command.body)


@pytest.fixture
def site(registry: VehicleService, units: Units) -> Site:
    return Site(registry, units)


async def register(registry: VehicleService, plate: str, *id_tags: str) -> str:
    return (await registry.register(DRIVER, RegisterVehicle(plate=plate, id_tags=id_tags))).vehicle_id


async def test_a_new_site_at_version_0_is_sent_the_full_list(registry: VehicleService, site: Site,
                                                            sender: RecordingSender) -> None:
    await register(registry, "B2", "CARD-B")
    await register(registry, "A1", "CARD-A")
    await site.hello(0)
    assert await registry.sync_sites_once(sender) == 1
    [command] = sender.commands
    assert command.site_id == "site-1" and command.type == AuthListUpdate.TYPE
    update = update_of(command)
    assert (update.full, update.version, update.since_version) == (True, 2, 0)
    assert [e.id_tag for e in update.entries] == ["CARD-A", "CARD-B"]


async def test_a_site_that_accepted_the_update_is_synced_and_sent_nothing_more(
        registry: VehicleService, site: Site, sender: RecordingSender) -> None:
    vehicle_id = await register(registry, "A1", "CARD-A")
    await site.hello(0)
    await registry.sync_sites_once(sender)
    assert not await site.synced(vehicle_id)
    await site.answer(sender.commands[0])
    assert await site.synced(vehicle_id)
    assert await registry.sync_sites_once(sender) == 0, "nothing more to send"


async def test_a_lagging_site_is_sent_only_the_changes_since_its_version(registry: VehicleService, site: Site,
                                                                        sender: RecordingSender) -> None:
    await register(registry, "A1", "CARD-A")
    await site.hello(0)
    await registry.sync_sites_once(sender)
    await site.answer(sender.commands[0])
    second = await register(registry, "B2", "CARD-B", "CARD-C")
    assert await registry.sync_sites_once(sender) == 1
    delta = update_of(sender.commands[1])
    assert (delta.full, delta.since_version, delta.version) == (False, 1, 3)
    assert [(e.id_tag, e.status, e.vehicle_id) for e in delta.entries] == [("CARD-B", "Accepted", second),
                                                                          ("CARD-C", "Accepted", second)]


async def test_a_site_that_reconnects_with_its_version_gets_only_what_it_lacks(
        registry: VehicleService, site: Site, sender: RecordingSender) -> None:
    await register(registry, "A1", "CARD-A")
    await register(registry, "B2", "CARD-B")
    await site.hello(1)
    await registry.sync_sites_once(sender)
    update = update_of(sender.commands[0])
    assert (update.full, update.since_version) == (False, 1)
    assert [e.id_tag for e in update.entries] == ["CARD-B"]


async def test_a_site_claiming_a_version_never_issued_is_sent_the_full_list(
        registry: VehicleService, site: Site, sender: RecordingSender) -> None:
    await register(registry, "A1", "CARD-A")
    await site.hello(999)  # e.g. the registry's database was restored from an older backup
    await registry.sync_sites_once(sender)
    assert update_of(sender.commands[0]).full


async def test_an_unanswered_update_is_resent_only_after_resend_after(registry: VehicleService, site: Site,
                                                                     sender: RecordingSender, clock: Clock) -> None:
    await register(registry, "A1", "CARD-A")
    await site.hello(0)
    assert await registry.sync_sites_once(sender) == 1
    clock.advance(RESEND_AFTER / 2)
    assert await registry.sync_sites_once(sender) == 0, "the site may still answer"
    clock.advance(RESEND_AFTER / 2)
    assert await registry.sync_sites_once(sender) == 1
    first, again = sender.commands
    assert again.id != first.id
    assert update_of(again) == update_of(first)


async def test_a_late_answer_to_a_replaced_update_is_ignored(registry: VehicleService, site: Site,
                                                            sender: RecordingSender, clock: Clock) -> None:
    vehicle_id = await register(registry, "A1", "CARD-A")
    await site.hello(0)
    await registry.sync_sites_once(sender)
    clock.advance(RESEND_AFTER)
    await registry.sync_sites_once(sender)
    await site.answer(sender.commands[0])
    assert not await site.synced(vehicle_id)
    await site.answer(sender.commands[1])
    assert await site.synced(vehicle_id)


async def test_a_rejected_update_leaves_the_site_unsynced_and_is_sent_again(
        registry: VehicleService, site: Site, sender: RecordingSender) -> None:
    vehicle_id = await register(registry, "A1", "CARD-A")
    await site.hello(0)
    await registry.sync_sites_once(sender)
    await site.answer(sender.commands[0], CommandStatus.REJECTED)
    assert not await site.synced(vehicle_id)
    assert await registry.sync_sites_once(sender) == 1, "no answer is awaited any more: send again"


async def test_an_answer_to_another_command_changes_nothing(registry: VehicleService, site: Site,
                                                           sender: RecordingSender) -> None:
    vehicle_id = await register(registry, "A1", "CARD-A")
    await site.hello(0)
    await registry.sync_sites_once(sender)
    await site.send(CommandResult(command_id=uuid.uuid4(), command_type=AuthListUpdate.TYPE,
                                  status=CommandStatus.ACCEPTED))
    await site.send(CommandResult(command_id=sender.commands[0].id, command_type="power.set_limit",
                                  status=CommandStatus.ACCEPTED))
    assert not await site.synced(vehicle_id)
    assert await registry.sync_sites_once(sender) == 0, "the real update is still awaited"


async def test_an_update_the_broker_could_not_take_goes_out_next_round(registry: VehicleService, site: Site,
                                                                      sender: RecordingSender) -> None:
    await register(registry, "A1", "CARD-A")
    await site.hello(0)
    sender.connected = False
    assert await registry.sync_sites_once(sender) == 0
    sender.connected = True
    assert await registry.sync_sites_once(sender) == 1, "not held back by RESEND_AFTER"


async def test_every_site_authorizes_every_owners_vehicles(registry: VehicleService, units: Units,
                                                          sender: RecordingSender) -> None:
    """Ownership scopes who reads a vehicle, not where it may charge: each site gets every idTag."""
    await registry.register(PRINCIPALS["driver_a"], RegisterVehicle(plate="A1", id_tags=("CARD-A",)))
    await registry.register(PRINCIPALS["driver_b"], RegisterVehicle(plate="B2", id_tags=("CARD-B",)))
    await registry.register(ADMIN, RegisterVehicle(plate="C3", id_tags=("CARD-C",)))
    for site_id in ("site-1", "site-2"):
        await Site(registry, units, site_id).hello(0)
    assert await registry.sync_sites_once(sender) == 2
    for site_id in ("site-1", "site-2"):
        [update] = sender.updates(site_id)
        assert [e.id_tag for e in update.entries] == ["CARD-A", "CARD-B", "CARD-C"]


async def test_only_lagging_sites_are_sent_updates(registry: VehicleService, units: Units,
                                                  sender: RecordingSender) -> None:
    await register(registry, "A1", "CARD-A")
    await Site(registry, units, "site-new").hello(0)
    await Site(registry, units, "site-done").hello(1)
    assert await registry.sync_sites_once(sender) == 1
    assert [c.site_id for c in sender.commands] == ["site-new"]


async def test_a_site_message_wakes_the_sync(registry: VehicleService, site: Site) -> None:
    registry.sync_wanted.clear()
    await site.hello(0)
    assert registry.sync_wanted.is_set()


async def test_the_sync_loop_sends_when_woken_and_keeps_going_after_a_failure(clock: Clock,
                                                                             sender: RecordingSender) -> None:
    outage = {"rounds": 0}

    class DatabaseAway(InMemoryVehicleRepository):
        async def sites_behind(self, version: int) -> list[SiteSync]:
            if outage["rounds"]:
                outage["rounds"] -= 1
                raise ConnectionError("database away")
            return await super().sites_behind(version)

    units: Units = MemoryUnits(DatabaseAway())
    registry = VehicleService(units, clock=clock)
    await Site(registry, units).hello(0)
    outage["rounds"] = 2
    loop = asyncio.create_task(registry.run_sync(sender, interval=0.01))
    try:
        await register(registry, "A1", "CARD-A")
        await poll_until(lambda: sender.commands, within=5, interval=0.01)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    assert outage["rounds"] == 0, "the loop went on after the failed rounds"
    assert update_of(sender.commands[0]).full
