"""The payment service's REST API reached directly (no gateway), on SQLite and PostgreSQL: a
site's tariff set, changed and read (``/billing/rates/{site_id}``), and the estimate of a stay
(``/billing/estimate``), for every kind of caller.

``site-1`` is operator_1's and technician_1's, ``site-2`` operator_2's. The expected answers are
written out per caller, not derived from the rules under test. The estimate's amounts come from
the real engine (``cloud.pricing.estimate``) and are computed by hand in the comments.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloud.contracts import Event
from cloud.payments.app import build_app as build_payments
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.ports import EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.settings import CloudSettings
from tests.support import services
from tests.support.identity import PRINCIPALS, headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import poll_until

CALLERS = ("anonymous", "driver_a", "driver_b", "operator_1", "operator_2", "technician_1", "admin")

READ_SITE_1 = {  # GET /billing/rates/site-1, once site-1 has a tariff
    "anonymous": 401, "driver_a": 200, "driver_b": 200, "operator_1": 200, "operator_2": 404,
    "technician_1": 200, "admin": 200,
}
CHANGE_SITE_1 = {  # PUT /billing/rates/site-1 with a valid tariff
    "anonymous": 401, "driver_a": 403, "driver_b": 403, "operator_1": 200, "operator_2": 404,
    "technician_1": 403, "admin": 200,
}
ESTIMATE_SITE_1 = {  # GET /billing/estimate?site_id=site-1&...
    "anonymous": 401, "driver_a": 200, "driver_b": 200, "operator_1": 200, "operator_2": 200,
    "technician_1": 200, "admin": 200,
}

ESTIMATE_EV = "/billing/estimate?site_id=site-1&bay_type=ev&power_class=ac&arrive=2026-11-23T18:00:00Z" \
              "&leave=2026-11-23T20:00:00Z&energy_kwh=10"


def tariff(site_id: str | None = "site-1", **changes: Any) -> dict[str, Any]:
    """Parking 2.00/h by the quarter hour in regular bays; energy 0.35/kWh and a flat 0.50 per stay
    everywhere; 19 % tax. Numbers as JSON numbers (read exactly) or strings, as clients send them."""
    body: dict[str, Any] = {
        "currency": "EUR", "tax_rate": 0.19, "time_zone": "Europe/Berlin",
        "elements": [
            {"components": [{"type": "parking_time", "price": "2.00", "step_size": 900}],
             "restrictions": {"bay_types": ["regular"]}},
            {"components": [{"type": "energy", "price": 0.35, "step_size": 1}, {"type": "flat", "price": "0.50"}]},
        ],
    }
    if site_id is not None:
        body["site_id"] = site_id
    return {**body, **changes}


def auth(caller: str) -> dict[str, str]:
    return {} if caller == "anonymous" else headers(caller)


@dataclass
class Billing:
    api: httpx.AsyncClient
    events: list[Event] = field(default_factory=list)

    async def announced(self, count: int) -> list[Event]:
        """The payment.* events published so far, once there are ``count``."""
        await poll_until(lambda: len(self.events) >= count, within=10)
        return list(self.events)


@contextlib.asynccontextmanager
async def running_billing(database_url: str, tmp_path: Path, amqp_url: str = "") -> AsyncIterator[Billing]:
    """The payment service alone on its real database; with ``amqp_url`` on RabbitMQ as in production
    (its own bus, built from the settings; the events recorded from a queue of the test's own),
    else on the in-process bus; MQTT on a closed port."""
    sqlite = database_url.startswith("sqlite")
    settings = CloudSettings(database_url=database_url.replace("/service.db", "/{service}.db") if sqlite
                             else database_url + "_{service}", amqp_url=amqp_url, mqtt_port=free_port(),
                             data_dir=tmp_path)
    bus: EventBus = RabbitMQBus(amqp_url, service="test-recorder") if amqp_url else InProcessBus()
    await bus.start()
    published: list[Event] = []

    async def record(event: Event) -> None:
        published.append(event)

    await bus.subscribe("test.payment-events", ["payment.#"], record)
    app: FastAPI = build_payments(settings, bus=None if amqp_url else bus, cache=MemoryCache())
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as client:
            trust_test_tokens(app)
            yield Billing(client, published)
    finally:
        await bus.close()
        if not sqlite:
            import asyncpg

            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            try:
                name = database_url.rsplit("/", 1)[1]
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}_payments" WITH (FORCE)')
            finally:
                await connection.close()


@pytest.fixture
async def billing(database_url: str, tmp_path: Path) -> AsyncIterator[Billing]:
    async with running_billing(database_url, tmp_path) as running:
        yield running


async def test_in_production_a_tariff_change_travels_on_rabbitmq(postgres_dsn: str, rabbitmq_url: str,
                                                                 tmp_path: Path) -> None:
    """Production mode (PostgreSQL and RabbitMQ): the change is stored and announced on payment.events."""
    database_url = f"{postgres_dsn}/{services.fresh_name('evpark_it_')}"
    async with running_billing(database_url, tmp_path, rabbitmq_url) as billing:
        put = await billing.api.put("/billing/rates/site-1", headers=headers("operator_1"), json=tariff())
        assert put.status_code == 200, put.text
        [event] = await billing.announced(1)
        assert (event.name, event.payload["site_id"], event.payload["version"]) == ("payment.tariff_changed",
                                                                                   "site-1", 1)
        assert event.payload["tariff"] == put.json()["tariff"]
        estimate = await billing.api.get("/billing/estimate", headers=headers("driver_a"), params={
            "site_id": "site-1", "bay_type": "ev", "power_class": "ac", "arrive": "2026-11-23T18:00:00Z",
            "leave": "2026-11-23T20:00:00Z", "energy_kwh": "10"})
        assert estimate.status_code == 200, estimate.text


def test_every_caller_has_an_expected_answer() -> None:
    assert set(PRINCIPALS) | {"anonymous"} == set(CALLERS)
    for table in (READ_SITE_1, CHANGE_SITE_1, ESTIMATE_SITE_1):
        assert set(table) == set(CALLERS)


# --- PUT and GET /billing/rates/{site_id} ------------------------------------------------------


async def test_a_tariff_set_is_read_back_with_its_version_and_announced(billing: Billing) -> None:
    put = await billing.api.put("/billing/rates/site-1", headers=headers("operator_1"), json=tariff())
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["site_id"], body["version"], body["updated_by"]) == ("site-1", 1, "acc-operator-1")
    assert body["tariff"]["tax_rate"] == "0.19" and body["tariff"]["elements"][1]["components"][0]["price"] == "0.35"
    got = await billing.api.get("/billing/rates/site-1", headers=headers("admin"))
    assert got.status_code == 200 and got.json() == body
    [event] = await billing.announced(1)
    assert (event.name, event.version, event.source) == ("payment.tariff_changed", "1.0", "payments")
    assert event.payload["tariff"] == body["tariff"], "the whole tariff, as GET answers it"
    assert (event.payload["site_id"], event.payload["version"], event.payload["currency"]) == ("site-1", 1, "EUR")


async def test_each_change_is_the_next_version_and_the_same_tariff_again_changes_nothing(billing: Billing) -> None:
    first = await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff(site_id=None))
    assert (first.status_code, first.json()["version"], first.json()["tariff"]["site_id"]) == (200, 1, "site-1")
    again = await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())
    assert (again.status_code, again.json()) == (200, first.json())
    changed = await billing.api.put("/billing/rates/site-1", headers=headers("operator_1"),
                                    json=tariff(currency="CHF", tax_rate="0.081"))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.json()["tariff"]["currency"]) == (2, "CHF")
    assert changed.json()["tariff"]["tax_rate"] == "0.081"
    events = await billing.announced(2)
    assert [(e.payload["version"], e.payload["currency"]) for e in events] == [(1, "EUR"), (2, "CHF")]
    read = await billing.api.get("/billing/rates/site-1", headers=headers("driver_a"))
    assert (read.json()["version"], read.json()["updated_by"]) == (2, None), "drivers see prices, not who set them"


async def test_who_reads_and_changes_the_tariff_of_site_1(billing: Billing) -> None:
    missing = await billing.api.get("/billing/rates/site-1", headers=headers("admin"))
    assert missing.status_code == 404
    assert (await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())).status_code == 200
    read = {who: await billing.api.get("/billing/rates/site-1", headers=auth(who)) for who in CALLERS}
    assert {who: r.status_code for who, r in read.items()} == READ_SITE_1
    hidden = read["operator_2"].json()
    assert hidden == missing.json(), "an operator of another site is told exactly what a site without a tariff says"
    assert read["anonymous"].headers["www-authenticate"].startswith("Bearer")
    changed = {who: (await billing.api.put("/billing/rates/site-1", headers=auth(who),
                                          json=tariff(tax_rate=f"0.{CALLERS.index(who) + 10}"))).status_code
               for who in CALLERS}
    assert changed == CHANGE_SITE_1
    assert (await billing.api.get("/billing/rates/site-1", headers=headers("admin"))).json()["version"] == 3, \
        "the first PUT, then operator_1's and the admin's"


async def test_an_operator_of_another_site_is_refused_as_for_a_site_without_a_tariff(billing: Billing) -> None:
    nothing = await billing.api.get("/billing/rates/site-9", headers=headers("admin"))
    put = await billing.api.put("/billing/rates/site-9", headers=headers("operator_2"), json=tariff("site-9"))
    assert (nothing.status_code, put.status_code) == (404, 404)
    assert put.json()["detail"] == nothing.json()["detail"] and put.json()["code"] == "unknown_tariff"
    assert (await billing.api.get("/billing/rates/site-9", headers=headers("admin"))).status_code == 404


@pytest.mark.parametrize("who, status", [("driver_a", 403), ("technician_1", 403), ("operator_2", 404),
                                         ("anonymous", 401)])
async def test_a_caller_who_may_not_change_it_is_refused_whatever_the_body(
        billing: Billing, who: str, status: int) -> None:
    for body in ({"nonsense": True}, None):
        answer = await billing.api.put("/billing/rates/site-1", headers=auth(who), json=body)
        assert answer.status_code == status, answer.text


@pytest.mark.parametrize("body, field", [
    (tariff(site_id="site-2"), "site_id"),
    (tariff(tax_rate=-0.1), "tax_rate"),
    (tariff(elements=[]), "elements"),
    (tariff(elements=[{"components": [{"type": "energy", "price": "0.35", "step_size": 0}]}]),
     "elements.0.components.0.step_size"),
    (tariff(elements=[{"components": [{"type": "fuel", "price": "1"}]}]), "elements.0.components.0.type"),
    ({k: v for k, v in tariff().items() if k != "currency"}, "currency"),
    (tariff(discount="0.1"), "discount"),
    ([tariff()], "body"),
    (tariff(currency="EURO"), "currency"),
    (tariff(time_zone="Europe/Atlantis"), "time_zone"),
    (tariff(elements=[{"components": [{"type": "energy", "price": "-0.35"}]}]), "elements.0.components.0.price"),
    (tariff(elements=[{"components": [{"type": "flat", "price": "0.505"}]}]), "elements.0.components.0.price"),
    (tariff(elements=[{"components": [{"type": "energy", "price": "0.1234567"}]}]), "elements.0.components.0.price"),
    (tariff(min_price="1.001"), "min_price"),
    (tariff(elements=[{"components": [{"type": "energy", "price": "0.35"}]},
                      {"components": [{"type": "energy", "price": "0.30"}]}]), "elements.1"),
    (tariff(elements=[{"components": [{"type": "energy", "price": "0.35"}]},
                      {"components": [{"type": "energy", "price": "0.30"}],
                       "restrictions": {"power_classes": ["dc"]}}]), "elements.1"),
])
async def test_an_invalid_tariff_is_422_naming_the_field_and_nothing_is_stored(
        billing: Billing, body: Any, field: str) -> None:
    assert (await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())).status_code == 200
    answer = await billing.api.put("/billing/rates/site-1", headers=headers("operator_1"), json=body)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in [error["field"] for error in answer.json()["errors"]], answer.json()
    stored = (await billing.api.get("/billing/rates/site-1", headers=headers("admin"))).json()
    assert (stored["version"], stored["tariff"]["tax_rate"]) == (1, "0.19")
    assert len(await billing.announced(1)) == 1


@pytest.mark.parametrize("content, content_type", [(b"", "application/json"), (b"{not json", "application/json"),
                                                   (b"currency=EUR", "application/x-www-form-urlencoded")])
async def test_a_body_that_is_no_json_tariff_is_422(billing: Billing, content: bytes, content_type: str) -> None:
    answer = await billing.api.put("/billing/rates/site-1", content=content,
                                   headers={**headers("admin"), "content-type": content_type})
    assert (answer.status_code, [e["field"] for e in answer.json()["errors"]]) == (422, ["body"])
    assert (await billing.api.get("/billing/rates/site-1", headers=headers("admin"))).status_code == 404


async def test_a_site_id_out_of_bounds_is_422(billing: Billing) -> None:
    answer = await billing.api.get(f"/billing/rates/{'s' * 65}", headers=headers("admin"))
    assert answer.status_code == 422


# --- GET /billing/estimate ---------------------------------------------------------------------


async def test_who_gets_an_estimate(billing: Billing) -> None:
    assert (await billing.api.get(ESTIMATE_EV, headers=headers("driver_a"))).status_code == 404, "no tariff yet"
    assert (await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())).status_code == 200
    answers = {who: (await billing.api.get(ESTIMATE_EV, headers=auth(who))).status_code for who in CALLERS}
    assert answers == ESTIMATE_SITE_1


async def test_a_site_without_a_tariff_has_no_estimate(billing: Billing) -> None:
    await billing.api.put("/billing/rates/site-2", headers=headers("operator_2"), json=tariff("site-2"))
    answer = await billing.api.get(ESTIMATE_EV, headers=headers("driver_a"))
    assert (answer.status_code, answer.json()["code"]) == (404, "unknown_tariff")


@pytest.mark.parametrize("query, field", [
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T17:00:00Z", "query.leave"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T18:00:00Z", "query.leave"),
    ("bay_type=ev&arrive=2026-11-01T18:00:00Z&leave=2026-12-23T18:00:00Z", "query.leave"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z&energy_kwh=-1", "query.energy_kwh"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z&energy_kwh=lots", "query.energy_kwh"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z&energy_kwh=1.0001", "query.energy_kwh"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z&energy_kwh=5000", "query.energy_kwh"),
    ("bay_type=garage&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z", "query.bay_type"),
    ("bay_type=ev&power_class=dc50&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z", "query.power_class"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00&leave=2026-11-23T20:00:00Z", "query.arrive"),
    ("bay_type=ev&arrive=tomorrow&leave=2026-11-23T20:00:00Z", "query.arrive"),
    ("bay_type=ev&arrive=2026-11-23T18:00:00Z", "query.leave"),
])
async def test_bad_parameters_are_422_naming_them(billing: Billing, query: str, field: str) -> None:
    assert (await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())).status_code == 200
    answer = await billing.api.get(f"/billing/estimate?site_id=site-1&{query}", headers=headers("driver_a"))
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]], answer.json()


async def test_an_estimate_without_a_site_is_422(billing: Billing) -> None:
    answer = await billing.api.get("/billing/estimate?bay_type=ev&arrive=2026-11-23T18:00:00Z"
                                   "&leave=2026-11-23T20:00:00Z", headers=headers("driver_a"))
    assert answer.status_code == 422 and "query.site_id" in [e["field"] for e in answer.json()["errors"]]


async def test_the_estimate_of_a_charge_in_an_ev_bay(billing: Billing) -> None:
    """10 kWh x 0.35 = 3.50, + 0.50 = 4.00 net (no parking time outside regular bays); tax 0.76."""
    await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())
    answer = await billing.api.get(ESTIMATE_EV, headers=headers("driver_a"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["site_id"], body["tariff_version"], body["currency"]) == ("site-1", 1, "EUR")
    assert (body["subtotal"], body["tax"], body["total"]) == ("4.00", "0.76", "4.76"), "money as strings"
    assert {line["type"]: line["amount"] for line in body["lines"] if line["type"] != "tax"} == {
        "energy": "3.50", "flat": "0.50"}
    assert all(isinstance(value, str) for line in body["lines"] for value in
               (line["quantity"], line["unit_price"], line["amount"]))


async def test_the_estimate_of_parking_only_in_a_regular_bay(billing: Billing) -> None:
    """80 min → 6 quarter hours = 1.5 h x 2.00 = 3.00, + 0.50 = 3.50 net; tax 0.665 → 0.67 (half-up)."""
    await billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff())
    answer = await billing.api.get("/billing/estimate?site_id=site-1&bay_type=regular"
                                   "&arrive=2026-11-23T18:00:00%2B01:00&leave=2026-11-23T19:20:00%2B01:00",
                                   headers=headers("operator_2"))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["subtotal"], answer.json()["tax"], answer.json()["total"]) == ("3.50", "0.67", "4.17")


async def test_concurrent_changes_each_get_a_version_or_a_conflict(billing: Billing) -> None:
    answers = await asyncio.gather(*(
        billing.api.put("/billing/rates/site-1", headers=headers("admin"), json=tariff(tax_rate=f"0.{n:02d}"))
        for n in range(1, 6)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {200, 409} and 200 in statuses, [a.text for a in answers]
    versions = sorted(a.json()["version"] for a in answers if a.status_code == 200)
    assert versions == list(range(1, len(versions) + 1)), "no version given twice, none skipped"
    stored = (await billing.api.get("/billing/rates/site-1", headers=headers("admin"))).json()
    assert stored["version"] == versions[-1]
    assert [e.payload["version"] for e in await billing.announced(len(versions))] == versions
