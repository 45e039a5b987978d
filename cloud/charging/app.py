"""Composition root of the charging service."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from cloud.charging import SPEC, events
from cloud.charging.api import router
from cloud.charging.repository import BatchChargingRepository, SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.contracts.payments import PaymentCompleted, PaymentFailed, TariffChanged
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.platform.mqtt_link import BatchEnvelopeHandler, EnvelopeHandler, MqttLink
from cloud.platform.outbox import Transaction
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import SqlUnitOfWork, sql_units_of_work
from mqtt import Envelope


def session_messages(service: ChargingService) -> EnvelopeHandler:
    """The MQTT link's handler: a session, charger, site or command-result envelope recorded in the link's
    own transaction."""

    async def handle(tx: Transaction, envelope: Envelope) -> None:
        await service.record_session_message(SqlUnitOfWork(tx, SqlChargingRepository(tx)), envelope)

    return handle


def session_batches(service: ChargingService) -> BatchEnvelopeHandler:
    """The MQTT link's batch handler: a batch's new envelopes recorded set-based (one read per table, one upsert
    per table, one cache invalidation) in the link's transaction; a failed batch falls back to
    :func:`session_messages`, one envelope after another."""

    async def handle(tx: Transaction, envelopes: Sequence[Envelope]) -> None:
        await service.record_session_messages(SqlUnitOfWork(tx, BatchChargingRepository(tx)), envelopes)

    return handle


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = ChargingService(sql_units_of_work(platform.outbox, SqlChargingRepository), platform.cache,
                                  low_power_seconds=settings.charging_low_power_seconds)
        await platform.consume(events.QUEUE, {VehicleRegistered: service.on_vehicle_registered,
                                              VehicleUpdated: service.on_vehicle_updated,
                                              VehicleDeleted: service.on_vehicle_deleted})
        await platform.consume(events.RATES_QUEUE, {TariffChanged: service.on_tariff_changed})
        await platform.consume(events.DEBTS_QUEUE, {PaymentFailed: service.on_payment_failed,
                                                    PaymentCompleted: service.on_payment_completed})
        link = MqttLink.from_settings(settings, service=SPEC.name, outbox=platform.outbox,
                                      categories=SPEC.mqtt_categories, handler=session_messages(service),
                                      batch_handler=session_batches(service), parked=platform.parked)
        service.sender = link
        return service, link

    return service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
