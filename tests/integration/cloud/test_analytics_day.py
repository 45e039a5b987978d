"""A hand-written day at site-1, published as the other services would publish it, gives the usage and
revenue figures computed by hand (and the invoices to the cent); ``evpark analytics rebuild`` gives the
same; redelivering every event changes nothing. Both run modes: embedded (SQLite, in-process bus) and
production (PostgreSQL, RabbitMQ)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from cloud.analytics.app import build_app
from cloud.contracts import Event, EventBody
from cloud.contracts.charging import ChargingCompleted, ChargingFailed, ChargingStarted
from cloud.contracts.notifications import NotificationSent
from cloud.contracts.parking import (
    Arrived,
    BayIdleEnded,
    BayOverstayEnded,
    Cancelled,
    InventoryChanged,
    NoShow,
    Released,
    Reserved,
)
from cloud.contracts.payments import CreditNoteIssued, InvoiceIssued, PaymentCompleted, PaymentRefunded
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.ports import EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.settings import CloudSettings
from evpark.analytics_cli import rebuild
from tests.support import services
from tests.support.identity import headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import eventually

DAY = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}


def at(hhmm: str, day: int = 10) -> datetime:
    hours, minutes = hhmm.split(":")
    return datetime(2026, 3, day, int(hours), int(minutes), tzinfo=UTC)


def reservation(rid: str, bay: str, start: str, end: str) -> dict[str, Any]:
    return {"reservation_id": rid, "slot_id": f"slot-{bay}", "site_id": "site-1", "bay_id": bay, "bay_type": "ev",
            "vehicle_id": "veh-1", "owner_id": "acc-driver-a", "starts_at": at(start), "ends_at": at(end)}


def stay(sid: str, bay: str, bay_type: str, arrived: str, **more: Any) -> dict[str, Any]:
    return {"stay_id": sid, "slot_id": f"slot-{bay}", "site_id": "site-1", "bay_id": bay, "bay_type": bay_type,
            "arrived_at": at(arrived), **more}


def session(sid: str, started: str, stopped: str, wh: int, **more: Any) -> dict[str, Any]:
    return {"session_id": sid, "site_id": "site-1", "store_id": "s1", "transaction_id": int(sid[-1]),
            "charger_id": "cp-1", "connector_id": 1, "started_at": at(started), "stopped_at": at(stopped),
            "energy_wh": wh, **more}


def document(number: str, issued: str, currency: str, components: dict[str, str], tax: str,
             day: int = 10) -> dict[str, Any]:
    net = sum((Decimal(v) for v in components.values()), Decimal(0))
    return {"site_id": "site-1", "account_id": "acc-driver-a", "currency": currency, "number": number,
            "issued_at": at(issued, day), "components": components, "net": net, "tax": Decimal(tax),
            "total": net + Decimal(tax)}


INVOICE_1 = document("S1-0001", "10:15", "EUR", {"parking": "4.00", "energy": "3.75", "idle": "1.00",
                                                 "session_fee": "0.50"}, "1.76")
INVOICE_2 = document("S1-0002", "17:05", "EUR", {"parking": "3.00"}, "0.57")
CREDIT_1 = document("S1-C001", "18:00", "EUR", {"idle": "1.00"}, "0.19")
INVOICE_CHF = document("S1-0003", "19:00", "CHF", {"parking": "2.00"}, "0.00")
INVOICE_DAY_BEFORE = document("S1-0000", "23:30", "EUR", {"parking": "9.00"}, "1.71", day=9)

DAY_OF_EVENTS: list[EventBody] = [
    InventoryChanged(site_id="site-1", bays=4, chargers=2, max_power_w=44_000),
    VehicleRegistered(vehicle_id="veh-1", plate="A 1", id_tags=["T1"], owner_id="acc-driver-a", type="electric"),
    Reserved(**reservation("r-1", "b1", "08:00", "10:00"), reserved_at=at("07:00")),
    Arrived(**stay("st-1", "b1", "ev", "08:05", reservation_id="r-1", vehicle_id="veh-1", charger_id="cp-1")),
    ChargingStarted(**session("ses-1", "08:10", "08:10", 0) | {"stopped_at": None}),
    # released before its session's completion arrives: the visit is counted once both are known
    Released(**stay("st-1", "b1", "ev", "08:05", reservation_id="r-1", vehicle_id="veh-1", charger_id="cp-1"),
             departed_at=at("10:10"), duration_s=125 * 60, session_ids=["ses-1"]),
    ChargingCompleted(**session("ses-1", "08:10", "09:40", 12_500), stop_reason="Local", duration_s=90 * 60,
                      energy_finished_at=at("09:20")),
    BayOverstayEnded(site_id="site-1", bay_id="b1", charger_id="cp-1", started_at=at("09:40"),
                     ended_at=at("10:10"), duration_s=30 * 60, next_state="free"),
    InvoiceIssued(**INVOICE_1, invoice_id="inv-1", stay_id="st-1", session_ids=["ses-1"]),
    PaymentCompleted(payment_id="pay-1", account_id="acc-driver-a", site_id="site-1", amount=Decimal("11.01"),
                     currency="EUR", invoice_id="inv-1", completed_at=at("10:16")),
    Reserved(**reservation("r-2", "b2", "12:00", "13:00"), reserved_at=at("07:30")),
    NoShow(**reservation("r-2", "b2", "12:00", "13:00"), grace_ended_at=at("12:15")),
    Reserved(**reservation("r-3", "b2", "14:00", "15:00"), reserved_at=at("07:40")),
    Cancelled(**reservation("r-3", "b2", "14:00", "15:00"), cancelled_at=at("11:00")),
    # a car on a charger's bay that never plugs in: blocked
    Arrived(**stay("st-2", "b2", "ev", "13:00", charger_id="cp-2")),
    BayIdleEnded(site_id="site-1", bay_id="b2", charger_id="cp-2", started_at=at("13:00"), ended_at=at("13:45"),
                 duration_s=45 * 60, next_state="free"),
    Released(**stay("st-2", "b2", "ev", "13:00", charger_id="cp-2"), departed_at=at("13:45"), duration_s=45 * 60),
    Arrived(**stay("st-3", "r1", "regular", "15:30", vehicle_id="veh-2")),
    Released(**stay("st-3", "r1", "regular", "15:30", vehicle_id="veh-2"), departed_at=at("17:00"),
             duration_s=90 * 60),
    InvoiceIssued(**INVOICE_2, invoice_id="inv-2", stay_id="st-3"),
    # a first attempt that fails: an emergency stop after 50 Wh
    Arrived(**stay("st-4", "b1", "ev", "16:00", charger_id="cp-1")),
    ChargingFailed(site_id="site-1", charger_id="cp-1", reason="abnormal_stop", session_id="ses-2",
                   stop_reason="EmergencyStop", failed_at=at("16:30")),
    ChargingCompleted(**session("ses-2", "16:05", "16:30", 50), stop_reason="EmergencyStop", duration_s=25 * 60),
    Released(**stay("st-4", "b1", "ev", "16:00", charger_id="cp-1"), departed_at=at("16:40"), duration_s=40 * 60,
             session_ids=["ses-2"]),
    CreditNoteIssued(**CREDIT_1, credit_note_id="cn-1", invoice_id="inv-1", refund_id="ref-1"),
    PaymentRefunded(refund_id="ref-1", payment_id="pay-1", account_id="acc-driver-a", site_id="site-1",
                    amount=Decimal("1.19"), currency="EUR", credit_note_id="cn-1", credit_note_number="S1-C001",
                    reason="idle fee waived", refunded_at=at("18:00")),
    InvoiceIssued(**INVOICE_CHF, invoice_id="inv-3"),
    InvoiceIssued(**INVOICE_DAY_BEFORE, invoice_id="inv-0"),
]

EXPECTED_USAGE = {
    "stays": 4, "charging_sessions": 2, "energy_wh": 12_550, "energy_kwh": "12.55",
    "occupied_hours": 5.0,  # 125 + 45 + 90 + 40 minutes
    "time_utilisation": round(5 / 96, 4),  # 4 bays x 24 h
    "energy_utilisation": round(12_550 / (44_000 * 24), 4),  # 12.55 kWh of 2 chargers' 44 kW x 24 h: 0.0119
    "idle_minutes": 50.0,  # energy finished 09:20 -> stop 09:40, then the overstay 09:40 -> 10:10
    "blocked_minutes": 45.0,
    "reservations": 3, "reservations_kept": 1, "reservations_cancelled": 1, "no_shows": 1, "no_show_rate": 0.5,
    "visits_with_charging": 2, "first_attempt_success": 0.5,
}
EXPECTED_EUR = {
    "period": "2026-03-10", "components": {"energy": "3.75", "idle": "1.00", "parking": "7.00", "session_fee": "0.50"},
    "refunds": {"idle": "1.00"}, "invoiced_net": "12.25", "refunded_net": "1.00", "net": "11.25", "tax": "2.14",
    "total": "13.39", "invoices": 2, "credit_notes": 1,
}


@dataclass
class Analytics:
    client: httpx.AsyncClient
    bus: EventBus
    url: str
    app: FastAPI

    @staticmethod
    def when(body: EventBody) -> datetime:
        """The event's time, as its producer would stamp it."""
        return next((getattr(body, f) for f in ("departed_at", "issued_at", "stopped_at", "arrived_at",
                                                 "grace_ended_at", "cancelled_at", "reserved_at", "ended_at",
                                                 "failed_at", "completed_at", "refunded_at", "since", "faulted_at")
                     if getattr(body, f, None) is not None), at("00:01"))

    async def publish(self, bodies: list[EventBody]) -> list[Event]:
        sent = [Event.of(body, source="test", occurred_at=self.when(body)) for body in bodies]
        await self.send(sent)
        return sent

    async def send(self, events: list[Event]) -> None:
        for event in events:
            await self.bus.publish(event)

    async def logged(self) -> int:
        db = Database(self.url)
        await db.connect()
        try:
            async with db.engine.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM event_logs"))).scalar_one())
        finally:
            await db.close()

    async def logged_is(self, count: int) -> bool:
        return await self.logged() == count

    async def usage(self, **query: str) -> dict[str, Any]:
        answer = await self.client.get("/analytics/usage", params={**DAY, **query}, headers=headers("admin"))
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    async def revenue(self) -> list[dict[str, Any]]:
        answer = await self.client.get("/analytics/revenue", params={**DAY, "site_id": "site-1"},
                                       headers=headers("operator_1"))
        assert answer.status_code == 200, answer.text
        return answer.json()["periods"]  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, production: bool) -> AsyncIterator[Analytics]:
    vhost = await asyncio.to_thread(services.create_rabbitmq_vhost) if production else ""
    name = services.fresh_name("evpark_it_")
    url = (f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}_{{service}}" if production
           else f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db")
    amqp = f"amqp://guest:guest@127.0.0.1:5672/{vhost}" if production else ""
    settings = CloudSettings(database_url=url, amqp_url=amqp, mqtt_port=free_port(), data_dir=tmp_path)
    bus: EventBus = RabbitMQBus(amqp, service="test-producers") if production else InProcessBus()
    await bus.start()
    app = build_app(settings, bus=None if production else bus, cache=MemoryCache())
    try:
        async with app.router.lifespan_context(app):
            trust_test_tokens(app)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a",
                                         timeout=30) as client:
                yield Analytics(client, bus, url.replace("{service}", "analytics"), app)
    finally:
        await bus.close()
        if production:
            await asyncio.to_thread(services.delete_rabbitmq_vhost, vhost)
            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}_analytics" WITH (FORCE)')
            finally:
                await connection.close()


@pytest.fixture(params=["embedded", "production"])
async def analytics(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Analytics]:
    production = request.param == "production"
    if production:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
    async with running(tmp_path, production) as started:
        yield started


def sentinel(n: int) -> NotificationSent:
    return NotificationSent(notification_id=f"n-{n}", account_id="acc-driver-a", channel="email",
                            kind="payment.completed", attempts=1, sent_at=at("20:00"))


async def test_a_day_gives_the_hand_computed_figures_after_rebuild_and_redelivery(analytics: Analytics) -> None:
    sent = await analytics.publish([*DAY_OF_EVENTS, sentinel(1)])
    await eventually(lambda: analytics.logged_is(len(sent)), what="every event logged")

    def figures(usage: dict[str, Any]) -> dict[str, Any]:
        return {k: usage["total"][k] for k in EXPECTED_USAGE}

    usage = await analytics.usage(site_id="site-1")
    assert figures(usage) == EXPECTED_USAGE
    assert [p["period"] for p in usage["periods"]] == ["2026-03-10"]
    by_hour = await analytics.usage(site_id="site-1", granularity="hour", bay_type="ev")
    assert {p["period"]: p["energy_wh"] for p in by_hour["periods"] if p["energy_wh"]} == {
        "2026-03-10T08:00+00:00": 12_500, "2026-03-10T16:00+00:00": 50}
    revenue = await analytics.revenue()
    eur = next(p for p in revenue if p["currency"] == "EUR")
    assert {k: eur[k] for k in EXPECTED_EUR} == EXPECTED_EUR
    # to the cent: the invoices minus the credit note of the day, as the documents say
    documents = Decimal(INVOICE_1["total"]) + Decimal(INVOICE_2["total"]) - Decimal(CREDIT_1["total"])
    assert Decimal(eur["total"]) == documents
    chf = next(p for p in revenue if p["currency"] == "CHF")
    assert (chf["net"], chf["total"], chf["components"]) == ("2.00", "2.00", {"parking": "2.00"})
    assert len(revenue) == 2  # never one sum across currencies; the day before is another period

    before = (usage, by_hour, revenue)
    assert await rebuild(analytics.url) == len(sent)
    after_rebuild = (await analytics.usage(site_id="site-1"),
                     await analytics.usage(site_id="site-1", granularity="hour", bay_type="ev"),
                     await analytics.revenue())
    assert after_rebuild == before

    await analytics.send(sent)  # every event again, as a broker redelivers
    await analytics.publish([sentinel(2)])
    await eventually(lambda: analytics.logged_is(len(sent) + 1), what="the redelivery went through")
    again = (await analytics.usage(site_id="site-1"),
             await analytics.usage(site_id="site-1", granularity="hour", bay_type="ev"),
             await analytics.revenue())
    assert again == before
