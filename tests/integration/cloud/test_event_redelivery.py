"""A RabbitMQ event delivered again changes nothing: the inbox remembers it."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from cloud.charging import events
from cloud.charging.models import VehicleIdTag, VehicleOwner
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.cache import MemoryCache
from cloud.platform.consumers import TypedConsumer
from cloud.platform.db import Database
from cloud.platform.outbox import Outbox
from cloud.platform.ports import Event
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.unit_of_work import sql_units_of_work


def registered(vehicle_id: str, *id_tags: str, owner: str | None = None) -> Event:
    return Event.of(VehicleRegistered(vehicle_id=vehicle_id, plate=vehicle_id.upper(), id_tags=list(id_tags),
                                      owner_id=owner), source="vehicles")


async def owner_of(db: Database, id_tag: str) -> str | None:
    async with db.session() as session:
        row = (await session.execute(select(VehicleIdTag).where(VehicleIdTag.id_tag == id_tag))).scalar_one_or_none()
        return row.vehicle_id if row else None


async def vehicle_owner(db: Database, vehicle_id: str) -> tuple[str | None] | None:
    """``(owner,)`` as the charging service recorded it, None if it never heard of the vehicle."""
    async with db.session() as session:
        row = await session.get(VehicleOwner, vehicle_id)
        return (row.owner_id,) if row else None


async def test_an_old_event_redelivered_does_not_undo_a_newer_one(charging_db: Database, rabbitmq_url: str) -> None:
    service = ChargingService(sql_units_of_work(Outbox(charging_db), SqlChargingRepository), MemoryCache())
    bus = RabbitMQBus(rabbitmq_url, service="charging")
    await bus.start()
    try:
        consumer = TypedConsumer(events.QUEUE, {VehicleRegistered: service.on_vehicle_registered})
        await bus.subscribe(events.QUEUE, consumer.routing_keys, consumer)
        first = registered("veh-old", "CARD1", owner="acc-first")
        second = registered("veh-new", "CARD1", owner="acc-second")
        moved = registered("veh-old", "OTHER", owner="acc-second")
        await bus.publish(first)
        await bus.publish(second)
        await bus.publish(moved)
        await bus.publish(first)  # redelivery of the first, e.g. after a lost ack
        marker = registered("veh-marker", "MARK")
        await bus.publish(marker)
        for _ in range(200):
            if await owner_of(charging_db, "MARK"):
                break
            await asyncio.sleep(0.05)
        assert await owner_of(charging_db, "MARK") == "veh-marker"
        assert await owner_of(charging_db, "CARD1") == "veh-new"
        assert await vehicle_owner(charging_db, "veh-old") == ("acc-second",)
        assert await vehicle_owner(charging_db, "veh-new") == ("acc-second",)
        assert await vehicle_owner(charging_db, "veh-marker") == (None,)  # as a 1.0 event: no driver's
    finally:
        await bus.close()
