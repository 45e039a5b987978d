"""Composition root of the parking service."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.payments import PaymentCompleted, PaymentFailed
from cloud.contracts.vehicles import VehicleDeleted, VehicleRegistered, VehicleUpdated
from cloud.parking import SPEC
from cloud.parking.api import router
from cloud.parking.booking_repository import SqlBookingRepository
from cloud.parking.booking_service import DEBTS_QUEUE, QUEUE, BookingService
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.platform.mqtt_link import BatchEnvelopeHandler, EnvelopeHandler, MqttLink
from cloud.platform.outbox import Transaction
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import SqlUnitOfWork, sql_units_of_work
from mqtt import Envelope


def site_handlers(service: ParkingService,
                  bookings: BookingService) -> tuple[EnvelopeHandler, BatchEnvelopeHandler]:
    """The MQTT link's handlers: an envelope's bay rules then its booking rules, in the link's transaction; and
    a batch's new envelopes with its sites locked and bays read at once, each envelope's rules in turn, one cache
    invalidation (a failed batch falls back to the first, one envelope after another)."""

    async def site_message(tx: Transaction, envelope: Envelope) -> None:
        await service.record_site_message(SqlUnitOfWork(tx, SqlParkingRepository(tx)), envelope)
        await bookings.on_site_message(SqlUnitOfWork(tx, SqlBookingRepository(tx)), envelope)

    async def site_messages(tx: Transaction, envelopes: Sequence[Envelope]) -> None:
        booking_work = SqlUnitOfWork(tx, SqlBookingRepository(tx))

        async def booking_part(envelope: Envelope) -> None:
            await bookings.on_site_message(booking_work, envelope)

        await service.record_site_messages(SqlUnitOfWork(tx, SqlParkingRepository(tx)), envelopes, booking_part)

    return site_message, site_messages


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = ParkingService(sql_units_of_work(platform.outbox, SqlParkingRepository), platform.cache)
        bookings = BookingService(sql_units_of_work(platform.outbox, SqlBookingRepository), platform.cache)
        app.state.booking = bookings

        site_message, site_messages = site_handlers(service, bookings)

        await platform.consume(QUEUE, {ChargingStarted: bookings.on_charging_started,
                                       ChargingCompleted: bookings.on_charging_completed,
                                       VehicleRegistered: bookings.on_vehicle_registered,
                                       VehicleUpdated: bookings.on_vehicle_updated,
                                       VehicleDeleted: bookings.on_vehicle_deleted})
        await platform.consume(DEBTS_QUEUE, {PaymentFailed: bookings.on_payment_failed,
                                             PaymentCompleted: bookings.on_payment_completed})
        link = MqttLink.from_settings(
            settings, service=SPEC.name, outbox=platform.outbox, categories=SPEC.mqtt_categories,
            handler=site_message, batch_handler=site_messages,
            parked=platform.parked,
            status_handler=lambda tx, site_id, status: service.record_link_status(
                SqlUnitOfWork(tx, SqlParkingRepository(tx)), site_id, status))
        platform.start_task("power-limit-sync", lambda: service.run_power_limit_sync(link))
        platform.start_task("reservations", lambda: bookings.run(link, interval=settings.parking_tick_seconds))
        return service, link

    app = service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
    return app
