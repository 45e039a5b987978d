"""Composition root of the vehicle registry."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.parking import BayChanged, BayIdleEnded, BayIdleStarted, BayOverstayEnded, BayOverstayStarted
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work
from cloud.vehicles import SPEC, events
from cloud.vehicles.api import router
from cloud.vehicles.repository import SqlVehicleRepository, unit_of_work
from cloud.vehicles.service import VehicleService


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, MqttLink]:
        service = VehicleService(sql_units_of_work(platform.outbox, SqlVehicleRepository), cache=platform.cache)
        await platform.consume(events.STATUS_QUEUE, {
            ChargingStarted: service.on_charging_started, ChargingCompleted: service.on_charging_completed,
            BayChanged: service.on_bay_changed, BayIdleStarted: service.on_bay_usage,
            BayIdleEnded: service.on_bay_usage, BayOverstayStarted: service.on_bay_usage,
            BayOverstayEnded: service.on_bay_usage})
        link = MqttLink.from_settings(
            settings, service=SPEC.name, outbox=platform.outbox, categories=SPEC.mqtt_categories,
            handler=lambda tx, envelope: service.on_site_message(unit_of_work(tx), envelope),
            parked=platform.parked)
        platform.start_task("authlist-sync", lambda: service.run_sync(link))
        return service, link

    return service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
