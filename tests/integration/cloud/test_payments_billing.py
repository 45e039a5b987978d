"""Automatic billing, payments, refunds, wallets and invoices of the payment service, reached
directly (no gateway), in both run modes: embedded (SQLite and the in-process bus) and production
(PostgreSQL and RabbitMQ). The parking and charging events it consumes are published by the test
on the bus, as those services will.

The tariff (site-1): parking 2.00/h by the quarter hour, energy 0.35/kWh, idle 0.10/min after 10
min grace, a flat 0.50 per stay, 19 % tax; every amount below is computed by hand in the comments.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pypdf import PdfReader

from cloud.contracts import Event, EventBody
from cloud.contracts.charging import ChargingCompleted
from cloud.contracts.parking import Arrived, Released
from cloud.payments.app import SESSION_GRACE_ENV
from cloud.payments.app import build_app as build_payments
from cloud.payments.billing_service import BillingService
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.ports import EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.settings import CloudSettings
from tests.support import services
from tests.support.identity import PRINCIPALS, headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import eventually

DRIVER_A = PRINCIPALS["driver_a"].subject
DRIVER_B = PRINCIPALS["driver_b"].subject
APPROVE, DECLINE = "4242 4242 4242 4242", "4000000000000002"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

TARIFF: dict[str, Any] = {
    "site_id": "site-1", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
    "elements": [{"components": [
        {"type": "parking_time", "price": "2.00", "step_size": 900},
        {"type": "energy", "price": "0.35", "step_size": 1},
        {"type": "idle", "price": "0.10", "step_size": 60},
        {"type": "flat", "price": "0.50"},
    ]}],
}


@dataclass
class Payments:
    api: httpx.AsyncClient
    app: FastAPI
    bus: EventBus
    events: list[Event] = field(default_factory=list)

    @property
    def billing(self) -> BillingService:
        billing = self.app.state.payments.billing
        assert billing is not None
        return billing  # type: ignore[no-any-return]

    async def publish(self, body: EventBody, *, source: str = "parking", event: Event | None = None) -> Event:
        event = event or Event.of(body, source=source)
        await self.bus.publish(event)
        return event

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.events if e.name == name]

    async def history(self, who: str = "driver_a", account: str = DRIVER_A) -> dict[str, Any]:
        answer = await self.api.get(f"/payments/history/{account}", headers=headers(who))
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    async def invoices(self, count: int, account: str = DRIVER_A) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len((await self.api.get(f"/payments/history/{account}", headers=headers("admin")))
                       .json()["invoices"]) >= count
        await eventually(enough, within=20, what=f"{count} invoices")
        return (await self.history("admin", account))["invoices"]  # type: ignore[no-any-return]

    async def card(self, number: str = APPROVE, who: str = "driver_a", default: bool = True) -> str:
        made = await self.api.post("/payments/methods", headers=headers(who),
                                   json={"kind": "card", "card_number": number, "make_default": default})
        assert made.status_code == 201, made.text
        return str(made.json()["id"])


@contextlib.asynccontextmanager
async def running(mode: str, tmp_path: Path) -> AsyncIterator[Payments]:
    if mode == "embedded":
        database_url, amqp_url = f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db", ""
    else:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
        name = services.fresh_name("evpark_it_")
        database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}_{{service}}"
        vhost = services.create_rabbitmq_vhost()
        amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    settings = CloudSettings(database_url=database_url, amqp_url=amqp_url, mqtt_port=free_port(), data_dir=tmp_path)
    bus: EventBus = RabbitMQBus(amqp_url, service="test-publisher") if amqp_url else InProcessBus()
    await bus.start()
    published: list[Event] = []

    async def record(event: Event) -> None:
        published.append(event)

    await bus.subscribe("test.payment-events", ["payment.#"], record)
    app = build_payments(settings, bus=None if amqp_url else bus, cache=MemoryCache())
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p", timeout=60) as client:
            trust_test_tokens(app)
            put = await client.put("/billing/rates/site-1", headers=headers("admin"), json=TARIFF)
            assert put.status_code == 200, put.text
            yield Payments(client, app, bus, published)
    finally:
        await bus.close()
        if amqp_url:
            import asyncpg

            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}_payments" WITH (FORCE)')
            finally:
                await connection.close()
            services.delete_rabbitmq_vhost(vhost)


@pytest.fixture(params=["embedded", "production"])
async def payments(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Payments]:
    # The lone-session grace is the default (120 s) unless a test asks for a short one: with 0.6 s, a
    # loaded machine that delivered a stay's release a second after its session billed the two apart.
    marker = request.node.get_closest_marker("billing_grace")
    if marker is not None:
        monkeypatch.setenv(SESSION_GRACE_ENV, str(marker.args[0]))
    async with running(request.param, tmp_path) as running_payments:
        yield running_payments


def stay(stay_id: str, *, owner: str | None = DRIVER_A, sessions: tuple[str, ...] = (), minutes: int = 90,
         sensor_known: bool = True, charger: str | None = "cp-1") -> Released:
    return Released(stay_id=stay_id, slot_id=f"slot-{stay_id}", site_id="site-1", bay_id="b-7", bay_type="ev",
                    arrived_at=T0, departed_at=T0 + timedelta(minutes=minutes), duration_s=minutes * 60,
                    owner_id=owner, vehicle_id=None if owner is None else "veh-1", charger_id=charger,
                    connector_id=1, session_ids=list(sessions), sensor_known=sensor_known)


def session(session_id: str, *, owner: str | None = DRIVER_A, charger: str = "cp-1", start: int = 5,
            stop: int = 65, wh: int = 11_000, finished: int | None = 50) -> ChargingCompleted:
    return ChargingCompleted(session_id=session_id, site_id="site-1", transaction_id=abs(hash(session_id)) % 10**6,
                             charger_id=charger, connector_id=1, owner_id=owner,
                             started_at=T0 + timedelta(minutes=start), stopped_at=T0 + timedelta(minutes=stop),
                             energy_wh=wh, power_class="ac", stop_reason="EVDisconnected",
                             energy_finished_at=None if finished is None else T0 + timedelta(minutes=finished))


def amounts(invoice: dict[str, Any]) -> dict[str, str]:
    return {line["type"]: line["amount"] for line in invoice["lines"]}


# --- automatic billing ------------------------------------------------------------------------


async def test_a_stay_is_billed_once_whichever_event_comes_first(payments: Payments) -> None:
    """Arrived 10:00, charged 10:05-11:05 (11 kWh, energy finished 10:50), left 11:30:
    flat 0.50; parking 1.5 h x 2.00 = 3.00; energy 11 x 0.35 = 3.85; idle 10:50-11:30 = 40 min,
    10 free, 30 x 0.10 = 3.00; net 10.35, tax 19 % = 1.9665 -> 1.97, total 12.32."""
    await payments.card()
    await payments.publish(session("s-1"), source="charging")  # the session's end first ...
    released = await payments.publish(stay("stay-1", sessions=("s-1",)))  # ... then the stay's
    await payments.publish(stay("stay-2", sessions=("s-2",)))  # the stay's end first ...
    await payments.publish(session("s-2"), source="charging")  # ... then the session's
    await payments.publish(stay("stay-1", sessions=("s-1",)), event=released)  # redelivered
    await payments.publish(stay("stay-1", sessions=("s-1",)))  # the same stay again, another message
    invoices = await payments.invoices(2)
    await asyncio.sleep(0.5)  # room for a third invoice, if the redeliveries billed again
    invoices = (await payments.history())["invoices"]
    assert sorted(i["stay_id"] for i in invoices) == ["stay-1", "stay-2"]
    assert sorted(i["number"] for i in invoices) == ["site-1-INV-000001", "site-1-INV-000002"]
    for invoice in invoices:
        assert amounts(invoice) == {"flat": "0.50", "parking_time": "3.00", "energy": "3.85", "idle": "3.00",
                                    "tax": "1.97"}
        assert (invoice["net"], invoice["tax"], invoice["total"]) == ("10.35", "1.97", "12.32")
        assert invoice["status"] == "paid" and invoice["tariff_version"] == 1
    await eventually(lambda: len(payments.named("payment.completed")) == 2, what="two payments")
    issued = payments.named("payment.invoice_issued")
    assert len(issued) == 2
    assert issued[0]["components"] == {"session_fee": "0.50", "parking": "3.00", "energy": "3.85", "idle": "3.00"}
    assert {p["amount"] for p in payments.named("payment.completed")} == {"12.32"}


@pytest.mark.billing_grace(0.6)
async def test_an_unattributed_stay_is_never_billed_and_a_lone_session_is(payments: Payments) -> None:
    """A session no stay lists, on a charger with no stay open, is billed alone after the grace
    (0.6 s here): an EV bay from 10:05 to 11:05, sensor unknown so idle ends at the session's end:
    flat 0.50 + parking 1 h 2.00 + energy 3.85 + idle from energy finished 10:50 to 11:05, 15 min,
    10 free, 5 x 0.10 = 0.50: net 6.85, tax 1.3015 -> 1.30, total 8.15. A session on a
    charger whose bay has a stay open waits for that stay."""
    await payments.publish(stay("stay-anon", owner=None))
    await payments.publish(Arrived(stay_id="stay-open", slot_id="slot", site_id="site-1", bay_id="b-9",
                                   bay_type="ev", arrived_at=T0, owner_id=DRIVER_A, charger_id="cp-9",
                                   connector_id=1))
    await payments.publish(session("s-wait", charger="cp-9"), source="charging")
    await payments.publish(session("s-lone", charger="cp-unsensed"), source="charging")
    [invoice] = await payments.invoices(1)
    assert invoice["session_ids"] == ["s-lone"] and invoice["stay_id"] is None
    assert amounts(invoice) == {"flat": "0.50", "parking_time": "2.00", "energy": "3.85", "idle": "0.50",
                                "tax": "1.30"}
    assert invoice["total"] == "8.15" and invoice["status"] == "due"  # no method, an empty wallet
    await payments.publish(stay("stay-open", sessions=("s-wait",)))
    invoices = await payments.invoices(2)
    assert {i["stay_id"] for i in invoices} == {None, "stay-open"}
    await asyncio.sleep(0.8)
    assert len((await payments.history())["invoices"]) == 2  # stay-anon: never
    anon = await payments.api.post("/invoices/generate", headers=headers("admin"), json={"stay_id": "stay-anon"})
    assert anon.status_code == 409 and anon.json()["code"] == "stay_unattributed"
    await eventually(lambda: len(payments.named("payment.failed")) == 2, what="two failed payments")
    assert {(f["reason"], f["refuse_driver"]) for f in payments.named("payment.failed")} == {
        ("insufficient_funds", False)}


async def test_100_stays_ending_at_once_get_100_numbers_without_a_gap(payments: Payments) -> None:
    """Concurrent units of work on the real database: every number from 1 to 100 once."""
    billing = payments.billing
    from tests.support.events import received

    await asyncio.wait_for(asyncio.gather(*(billing.on_released(received(stay(f"c-{n}")))
                                            for n in range(100))), timeout=60)
    invoices = (await payments.history("admin"))["invoices"]
    assert sorted(i["number"] for i in invoices) == [f"site-1-INV-{n:06d}" for n in range(1, 101)]


# --- POST /payments/charge with an Idempotency-Key -------------------------------------------


def charge_body(**changes: Any) -> dict[str, Any]:
    return {"account_id": DRIVER_A, "site_id": "site-1", "amount": "25.00", "currency": "EUR",
            "description": "lost ticket", **changes}


async def test_a_charge_sent_twice_with_one_key_charges_once(payments: Payments) -> None:
    await payments.card()
    key = {"Idempotency-Key": str(uuid.uuid4()), **headers("operator_1")}
    first = await payments.api.post("/payments/charge", headers=key, json=charge_body())
    again = await payments.api.post("/payments/charge", headers=key, json=charge_body())
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert (first.json()["amount"], first.json()["status"], first.json()["method"]) == ("25.00", "completed", "card")
    other = await payments.api.post("/payments/charge", headers=key, json=charge_body(amount="26.00"))
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert [p["id"] for p in (await payments.history())["payments"]] == [first.json()["id"]]
    # in flight: the first request with a key has not answered yet
    inflight = str(uuid.uuid4())
    assert await payments.billing.begin_idempotent(PRINCIPALS["operator_1"], inflight, "POST /payments/charge",
                                                   charge_body()) is None
    busy = await payments.api.post("/payments/charge", json=charge_body(),
                                   headers={"Idempotency-Key": inflight, **headers("operator_1")})
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_in_flight"
    # a refused card is stored and replayed as well
    await payments.card(DECLINE, who="driver_b")
    declined_key = {"Idempotency-Key": "k-declined", **headers("operator_1")}
    declined = await payments.api.post("/payments/charge", headers=declined_key,
                                       json=charge_body(account_id=DRIVER_B))
    replayed = await payments.api.post("/payments/charge", headers=declined_key,
                                       json=charge_body(account_id=DRIVER_B))
    assert declined.status_code == replayed.status_code == 402 and declined.json()["code"] == "declined"
    assert replayed.json() == declined.json()
    assert [p["status"] for p in (await payments.history("driver_b", DRIVER_B))["payments"]] == ["failed"]
    assert len(payments.named("payment.completed")) == 1


BAD_CHARGES: list[tuple[dict[str, Any], str]] = [
    ({"amount": "-5.00"}, "amount"), ({"amount": "ten"}, "amount"), ({"amount": "1.001"}, "amount"),
    ({"amount": True}, "amount"), ({"currency": "EUX"}, "currency"), ({"account_id": ""}, "account_id"),
    ({"method": "cash"}, "method"),
]


async def test_a_bad_charge_names_the_field_and_moves_no_money(payments: Payments) -> None:
    await payments.card()
    wrong = []
    for n, (changes, field_name) in enumerate(BAD_CHARGES):
        answer = await payments.api.post("/payments/charge", json=charge_body(**changes),
                                         headers={"Idempotency-Key": f"k-{n}", **headers("operator_1")})
        fields = [error["field"] for error in answer.json().get("errors", [])]
        if answer.status_code != 422 or field_name not in fields:
            wrong.append((changes, answer.status_code, answer.text[:200]))
    assert wrong == []
    assert (await payments.history())["payments"] == []


async def test_who_may_charge(payments: Payments) -> None:
    await payments.card()
    answers = {}
    for who in ("anonymous", "driver_a", "operator_2", "technician_1", "operator_1", "admin"):
        auth = {} if who == "anonymous" else headers(who)
        answer = await payments.api.post("/payments/charge", json=charge_body(),
                                         headers={"Idempotency-Key": f"key-{who}", **auth})
        answers[who] = answer.status_code
    assert answers == {"anonymous": 401, "driver_a": 403, "operator_2": 404, "technician_1": 403,
                       "operator_1": 201, "admin": 201}
    missing = await payments.api.post("/payments/charge", json=charge_body(), headers=headers("admin"))
    assert missing.status_code == 422 and "Idempotency-Key" in missing.text


# --- refunds --------------------------------------------------------------------------------


async def _paid(payments: Payments, amount: str = "50.00", method: str = "card") -> dict[str, Any]:
    answer = await payments.api.post("/payments/charge", json=charge_body(amount=amount, method=method),
                                     headers={"Idempotency-Key": str(uuid.uuid4()), **headers("operator_1")})
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_refunds_partial_full_and_never_more(payments: Payments) -> None:
    """A 50.00 charge at 19 %: its invoice nets 42.02 + tax 7.98 (50 x 0.19 / 1.19 = 7.983 -> 7.98);
    a 10.00 refund's credit note carries 10 x 7.98 / 50 = 1.596 -> 1.60 of tax."""
    await payments.card()
    paid = await _paid(payments)
    asks = {who: (await payments.api.post("/payments/refund", headers=headers(who), json={
        "payment_id": paid["id"], "amount": "10.00", "reason": "goodwill"})) for who in
        ("driver_a", "operator_2", "driver_b")}
    assert {who: answer.status_code for who, answer in asks.items()} == {"driver_a": 403, "operator_2": 404,
                                                                         "driver_b": 404}
    first = await payments.api.post("/payments/refund", headers=headers("operator_1"), json={
        "payment_id": paid["id"], "amount": "10.00", "reason": "goodwill"})
    assert first.status_code == 201, first.text
    note = first.json()["credit_note"]
    assert (note["number"], note["total"], note["tax"], note["net"]) == ("site-1-CN-000001", "10.00", "1.60", "8.40")
    too_much = await payments.api.post("/payments/refund", headers=headers("admin"), json={
        "payment_id": paid["id"], "amount": "40.01", "reason": "too much"})
    assert too_much.status_code == 409 and too_much.json()["code"] == "refund_exceeds_payment"
    for bad, name in (({"amount": "0"}, "amount"), ({"amount": "1.234"}, "amount"), ({"amount": "x"}, "amount")):
        answer = await payments.api.post("/payments/refund", headers=headers("admin"), json={
            "payment_id": paid["id"], "reason": "r", **bad})
        assert answer.status_code == 422 and name in answer.text
    unknown = await payments.api.post("/payments/refund", headers=headers("admin"), json={
        "payment_id": "nope", "amount": "1.00", "reason": "r"})
    assert unknown.status_code == 404
    rest = await payments.api.post("/payments/refund", headers=headers("admin"), json={
        "payment_id": paid["id"], "amount": "40.00", "reason": "the rest"})
    assert rest.status_code == 201 and rest.json()["credit_note"]["number"] == "site-1-CN-000002"
    history = await payments.history()
    assert history["payments"][0]["refunded"] == "50.00" and len(history["credit_notes"]) == 2
    assert [i["total"] for i in history["invoices"]] == ["50.00"]
    await eventually(lambda: len(payments.named("payment.refunded")) == 2, what="two refunds announced")
    # each credit note's breakdown, as an invoice's, is its net (analytics subtracts it from the revenue)
    await eventually(lambda: len(payments.named("payment.credit_note_issued")) == 2, what="two credit notes")
    assert {n["net"]: n["components"] for n in payments.named("payment.credit_note_issued")} == {
        "8.40": {"refund": "8.40"}, "33.62": {"refund": "33.62"}}


async def test_100_concurrent_refunds_never_exceed_the_payment(payments: Payments) -> None:
    await payments.card()
    paid = await _paid(payments)

    async def refund() -> int:
        answer = await payments.api.post("/payments/refund", headers=headers("operator_1"), json={
            "payment_id": paid["id"], "amount": "1.00", "reason": "race"})
        return answer.status_code

    codes = await asyncio.wait_for(asyncio.gather(*(refund() for _ in range(100))), timeout=90)
    assert sorted(set(codes)) == [201, 409] and codes.count(201) == 50
    history = await payments.history()
    assert history["payments"][0]["refunded"] == "50.00"
    assert sorted(n["number"] for n in history["credit_notes"]) == [f"site-1-CN-{n:06d}" for n in range(1, 51)]


# --- wallet, methods, debt ---------------------------------------------------------------------


async def test_a_declined_card_leaves_the_invoice_due_until_a_top_up_pays_it(payments: Payments) -> None:
    settings = await payments.api.put("/payments/sites/site-1/settings", headers=headers("operator_1"),
                                      json={"refuse_when_in_debt": True})
    assert settings.status_code == 200
    assert (await payments.api.put("/payments/sites/site-1/settings", headers=headers("technician_1"),
                                   json={"refuse_when_in_debt": False})).status_code == 403
    await payments.card(DECLINE)
    await payments.publish(stay("stay-d"))  # 1.5 h of parking + flat: 3.50, tax 0.665 -> 0.67: 4.17
    [invoice] = await payments.invoices(1)
    await eventually(lambda: payments.named("payment.failed"), what="payment.failed")
    [failed] = payments.named("payment.failed")
    assert (failed["reason"], failed["refuse_driver"], failed["invoice_id"]) == ("declined", True, invoice["id"])
    debt = (await payments.api.get(f"/payments/debt/{DRIVER_A}?site_id=site-1", headers=headers("operator_1"))).json()
    assert (debt["in_debt"], debt["refused"], debt["due"][0]["amount_due"]) == (True, True, "4.17")
    site = (await payments.api.get("/payments/sites/site-1/debts", headers=headers("technician_1"))).json()
    assert [d["invoice_id"] for d in site["due"]] == [invoice["id"]]
    assert (await payments.api.get(f"/payments/debt/{DRIVER_A}", headers=headers("driver_b"))).status_code == 404
    assert (await payments.api.get("/payments/sites/site-1/debts", headers=headers("operator_2"))).status_code == 404
    good = await payments.card(APPROVE, default=False)
    bad_top_up = await payments.api.post("/payments/wallet/top-up", headers=headers("driver_a"),
                                         json={"amount": "-1", "currency": "EUR", "method_id": good})
    assert bad_top_up.status_code == 422 and "amount" in bad_top_up.text
    others = await payments.api.post("/payments/wallet/top-up", headers=headers("driver_b"),
                                     json={"amount": "20.00", "currency": "EUR", "method_id": good})
    assert others.status_code == 422 and "method_id" in others.text
    top_up = await payments.api.post("/payments/wallet/top-up", headers=headers("driver_a"),
                                     json={"amount": "20.00", "currency": "EUR", "method_id": good})
    assert top_up.status_code == 200, top_up.text
    assert top_up.json()["paid_invoices"] == [invoice["id"]]
    assert top_up.json()["balances"] == [{"currency": "EUR", "balance": "15.83"}]  # 20.00 - 4.17
    debt = (await payments.api.get(f"/payments/debt/{DRIVER_A}?site_id=site-1", headers=headers("driver_a"))).json()
    assert (debt["in_debt"], debt["refused"]) == (False, False)
    paid = await payments.api.get(f"/invoices/{invoice['id']}", headers=headers("driver_a"))
    assert paid.json()["status"] == "paid"
    await eventually(lambda: any(p["invoice_id"] == invoice["id"] for p in payments.named("payment.completed")),
                     what="payment.completed of the invoice")


async def test_payment_methods(payments: Payments) -> None:
    assert (await payments.api.get("/payments/methods", headers=headers("driver_a"))).json() == {"methods": []}
    first = await payments.card()
    second = await payments.card(DECLINE, default=False)
    listed = (await payments.api.get("/payments/methods", headers=headers("driver_a"))).json()["methods"]
    assert [(m["id"], m["last4"], m["is_default"]) for m in listed] == [(first, "4242", True), (second, "0002", False)]
    assert "4242424242424242" not in str(listed)
    for number in ("1234", "4111111111111111", "abcd"):
        bad = await payments.api.post("/payments/methods", headers=headers("driver_a"),
                                      json={"kind": "card", "card_number": number})
        assert bad.status_code == 422 and "card_number" in bad.text
    assert (await payments.api.delete(f"/payments/methods/{first}", headers=headers("driver_b"))).status_code == 404
    assert (await payments.api.delete(f"/payments/methods/{first}", headers=headers("driver_a"))).status_code == 204
    wallet = await payments.api.post("/payments/methods", headers=headers("driver_a"), json={"kind": "wallet"})
    assert wallet.status_code == 201
    again = await payments.api.post("/payments/methods", headers=headers("driver_a"), json={"kind": "wallet"})
    assert again.status_code == 409
    assert (await payments.api.get("/payments/wallet", headers=headers("driver_a"))).json()["balances"] == []


# --- invoices ----------------------------------------------------------------------------------


async def test_an_invoice_as_json_and_pdf_for_its_readers(payments: Payments) -> None:
    await payments.publish(session("s-p"), source="charging")
    await payments.publish(stay("stay-p", sessions=("s-p",)))
    [invoice] = await payments.invoices(1)
    path = f"/invoices/{invoice['id']}"
    codes = {who: (await payments.api.get(path, headers=headers(who))).status_code
             for who in ("driver_a", "driver_b", "operator_1", "operator_2", "technician_1", "admin")}
    assert codes == {"driver_a": 200, "driver_b": 404, "operator_1": 200, "operator_2": 404, "technician_1": 200,
                     "admin": 200}
    assert (await payments.api.get("/invoices/nope", headers=headers("admin"))).status_code == 404
    pdf = await payments.api.get(path, headers={"Accept": "application/pdf", **headers("driver_a")})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in ("site-1-INV-000001", "site-1", "tariff version 1", "3.85", "3.00", "1.97", "12.32 EUR",
                     "2026-11-23 11:00 CET"):  # arrival 10:00 UTC shown in Europe/Berlin
        assert expected in text, expected
    again = await payments.api.post("/invoices/generate", headers=headers("driver_a"), json={"stay_id": "stay-p"})
    assert again.status_code == 200 and again.json()["id"] == invoice["id"]
    for body, code in (({"stay_id": "stay-p"}, 404), ({"stay_id": "nope"}, 404)):
        assert (await payments.api.post("/invoices/generate", headers=headers("driver_b"), json=body)).status_code \
            == code
    for body in ({}, {"stay_id": "a", "payment_id": "b"}):
        assert (await payments.api.post("/invoices/generate", headers=headers("admin"), json=body)).status_code == 422
    await payments.publish(Arrived(stay_id="stay-now", slot_id="slot", site_id="site-1", bay_id="b-1", bay_type="ev",
                                   arrived_at=T0, owner_id=DRIVER_A))

    async def arrived() -> bool:
        answer = await payments.api.post("/invoices/generate", headers=headers("admin"), json={"stay_id": "stay-now"})
        return answer.status_code == 409 and answer.json()["code"] == "stay_open"

    await eventually(arrived, what="an open stay refused")


async def test_an_invoice_for_an_ad_hoc_payment(payments: Payments) -> None:
    await payments.card()
    paid = await _paid(payments, "11.90")
    made = await payments.api.post("/invoices/generate", headers=headers("driver_a"), json={"payment_id": paid["id"]})
    assert made.status_code == 200, made.text
    invoice = made.json()
    assert (invoice["net"], invoice["tax"], invoice["total"], invoice["status"]) == ("10.00", "1.90", "11.90", "paid")
    assert invoice["number"] == "site-1-INV-000001"
    again = await payments.api.post("/invoices/generate", headers=headers("admin"), json={"payment_id": paid["id"]})
    assert again.json()["id"] == invoice["id"]
    other = await payments.api.post("/invoices/generate", headers=headers("driver_b"), json={"payment_id": paid["id"]})
    assert other.status_code == 404


async def test_history_is_the_accounts_own(payments: Payments) -> None:
    codes = {who: (await payments.api.get(f"/payments/history/{DRIVER_A}", headers=headers(who))).status_code
             for who in ("driver_a", "driver_b", "operator_1", "admin")}
    assert codes == {"driver_a": 200, "driver_b": 404, "operator_1": 404, "admin": 200}
    assert (await payments.api.get(f"/payments/history/{DRIVER_A}")).status_code == 401
    empty = (await payments.history())
    assert (empty["payments"], empty["refunds"], empty["invoices"], empty["credit_notes"]) == ([], [], [], [])


MALFORMED: list[tuple[str, Any, str]] = [
    ("/payments/refund", [1, 2], "body"),
    ("/payments/refund", {"payment_id": 7, "amount": "1", "reason": "r"}, "payment_id"),
    ("/payments/refund", {"payment_id": "p", "amount": "1"}, "reason"),
    ("/payments/wallet/top-up", {"amount": {"x": 1}, "currency": "EUR", "method_id": "m"}, "amount"),
    ("/payments/wallet/top-up", {"amount": "1e-9999", "currency": "EUR", "method_id": "m"}, "amount"),
    ("/payments/wallet/top-up", {"amount": "5", "currency": 978, "method_id": "m"}, "currency"),
    ("/payments/charge", "not an object", "body"),
    ("/payments/methods", {"kind": "cheque"}, "kind"),
]


async def test_malformed_bodies_are_a_problem_naming_the_field(payments: Payments) -> None:
    wrong = []
    for path, body, field_name in MALFORMED:
        answer = await payments.api.post(path, json=body, headers={"Idempotency-Key": "k", **headers("admin")})
        fields = [error["field"] for error in answer.json().get("errors", [])]
        if answer.status_code != 422 or field_name not in fields:
            wrong.append((path, body, answer.status_code, answer.text[:200]))
    assert wrong == []
