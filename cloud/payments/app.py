"""Composition root of the payment service."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.payments import SPEC
from cloud.payments.api import router
from cloud.payments.repository import SqlPaymentsRepository
from cloud.payments.service import PaymentService
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, None]:
        service = PaymentService(sql_units_of_work(platform.outbox, SqlPaymentsRepository))
        return service, None  # no MQTT link: payments reads no site messages

    return service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
