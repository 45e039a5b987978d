"""Composition root of the parking service."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.parking import SPEC
from cloud.parking.api import router
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import SqlUnitOfWork, sql_units_of_work


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = ParkingService(sql_units_of_work(platform.outbox, SqlParkingRepository), platform.cache)
        link = MqttLink.from_settings(
            settings, service=SPEC.name, outbox=platform.outbox, categories=SPEC.mqtt_categories,
            handler=lambda tx, envelope: service.record_site_message(SqlUnitOfWork(tx, SqlParkingRepository(tx)),
                                                                     envelope),
            parked=platform.parked,
            status_handler=lambda tx, site_id, status: service.record_link_status(
                SqlUnitOfWork(tx, SqlParkingRepository(tx)), site_id, status))
        platform.start_task("power-limit-sync", lambda: service.run_power_limit_sync(link))
        return service, link

    return service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
