"""Composition root of the payment service."""

from __future__ import annotations

import os
from datetime import timedelta

from fastapi import FastAPI

from cloud.contracts.charging import ChargingCompleted
from cloud.contracts.parking import Arrived, Released
from cloud.payments import SPEC
from cloud.payments.api import routes
from cloud.payments.billing_service import QUEUE, BillingService
from cloud.payments.providers import SandboxCardProvider
from cloud.payments.repository import SqlBillingRepository, SqlPaymentsRepository
from cloud.payments.service import PaymentService
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work

SESSION_GRACE_ENV = "EVPARK_BILLING_SESSION_GRACE_SECONDS"
"""How long a completed session that no stay lists (and with no stay open on its charger) waits
before it is billed alone; default 120."""


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    async def wire(platform: Platform) -> tuple[object, None]:
        grace = timedelta(seconds=float(os.environ.get(SESSION_GRACE_ENV, "120")))
        billing = BillingService(sql_units_of_work(platform.outbox, SqlBillingRepository), SandboxCardProvider(),
                                 grace=grace)
        service = PaymentService(sql_units_of_work(platform.outbox, SqlPaymentsRepository), billing=billing)
        await platform.consume(QUEUE, {Released: billing.on_released, Arrived: billing.on_arrived,
                                       ChargingCompleted: billing.on_completed})
        platform.start_task("lone-session-billing", lambda: billing.run_lone_session_billing(
            every=max(0.2, min(5.0, grace.total_seconds() / 4))))
        return service, None  # no MQTT link: payments reads no site messages

    return service_app(SPEC, settings, wire=wire, router=routes, bus=bus, cache=cache)
