"""Issue 20's simulated day, end to end (production mode: every service its own process, on PostgreSQL,
RabbitMQ, Redis and Mosquitto, the site's edge, everything read through the gateway), played by cpsim's
charger (CP-1, two connectors) and bay sensors, compressed into seconds:

- car A reserves EV-1 and arrives; car B arrives at EV-2 unannounced; car C reserves the regular bay R-1
  and arrives;
- A charges 4 000 Wh and B 2 500 Wh (the charger's meter values); B and C leave, A stays idle in its bay
  after its StopTransaction and leaves a few seconds later; the three stays are released and billed;
- a reservation of the accessible bay A-1 nobody comes for becomes a no-show (arrival grace 0), and another
  is cancelled;
- part of A's card payment is refunded through the API (a credit note).

Then ``GET /analytics/usage`` and ``/analytics/revenue`` for a range covering the run give: the counts and
Wh the scenario decides (constants); occupied hours, utilisation, idle and blocked minutes computed here from
the records the other services expose (parking and charging histories); revenue by component, refunds and
net equal to the invoices and credit note read from the payments API, to the cent, and to the amounts
computed by hand from the tariff. ``evpark analytics rebuild``, run as an operator runs it (a process with
the services' environment), gives the same answers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from ocpp.v16 import call

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.sensors import MqttSensors
from tests.e2e.conftest import production_on_shared_broker
from tests.e2e.harness import EVPARK, System, register_vehicle
from tests.e2e.test_site_sensors import poll

pytestmark = pytest.mark.e2e

SITE = """
site_id = "e2e-site"

[[bays]]
id = "EV-1"
type = "ev"
charger_id = "CP-1"
connector_id = 1

[[bays]]
id = "EV-2"
type = "ev"
charger_id = "CP-1"
connector_id = 2

[[bays]]
id = "R-1"
type = "regular"

[[bays]]
id = "A-1"
type = "accessible"

[sensors.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
username = "e2e-site-sensors"
topic_root = "{root}"
debounce = 0.3
stale_after = 600

[sensors.mqtt.sensors]
s-ev-1 = "EV-1"
s-ev-2 = "EV-2"
s-r-1 = "R-1"
s-a-1 = "A-1"
"""
BAYS = 4
SENSORS = {"EV-1": "s-ev-1", "EV-2": "s-ev-2", "R-1": "s-r-1", "A-1": "s-a-1"}

TARIFF: dict[str, Any] = {
    "site_id": "e2e-site", "currency": "EUR", "tax_rate": "0.19", "time_zone": "UTC",
    "elements": [{"components": [
        {"type": "flat", "price": "0.50"},
        {"type": "parking_time", "price": "2.00", "step_size": 3600},
        {"type": "energy", "price": "0.30", "step_size": 1},
        {"type": "idle", "price": "0.02", "step_size": 3600, "grace_minutes": 0},
    ]}],
}
"""Whole-hour steps for the times, so that no amount depends on how many seconds the test took."""

ENERGY_WH = {"A": 4_000, "B": 2_500}
INVOICES = {
    # a started hour of parking 2.00, the Wh x 0.30 / kWh, a started hour of idle (60 min x 0.02), the flat
    # fee per stay 0.50; tax 19 % of the net rounded once, half up (4.90 -> 0.931 -> 0.93; 4.45 -> 0.8455 ->
    # 0.85; 2.50 -> 0.475 -> 0.48)
    "A": ({"flat": "0.50", "parking_time": "2.00", "energy": "1.20", "idle": "1.20", "tax": "0.93"},
          ("4.90", "0.93", "5.83")),
    "B": ({"flat": "0.50", "parking_time": "2.00", "energy": "0.75", "idle": "1.20", "tax": "0.85"},
          ("4.45", "0.85", "5.30")),
    "C": ({"flat": "0.50", "parking_time": "2.00", "tax": "0.48"}, ("2.50", "0.48", "2.98")),
}
REFUND = "1.00"
CREDIT_NOTE = ("0.84", "0.16", "1.00")
"""1.00 of A's 5.83: its tax share 0.93 x 1.00 / 5.83 = 0.1595 -> 0.16, the net 0.84."""
ANALYTICS_COMPONENT = {"flat": "session_fee", "parking_time": "parking", "energy": "energy", "idle": "idle"}
"""The analytics component of each invoice line type (``payment.invoice_issued``'s breakdown)."""
EXPECTED_REVENUE = {
    "components": {"energy": Decimal("1.95"), "idle": Decimal("2.40"), "parking": Decimal("6.00"),
                   "session_fee": Decimal("1.50")},
    "refunds": {"refund": Decimal("0.84")},
    "invoiced_net": Decimal("11.85"), "refunded_net": Decimal("0.84"), "net": Decimal("11.01"),
    "tax": Decimal("2.10"), "total": Decimal("13.11"), "invoices": 3, "credit_notes": 1,
}
EXPECTED_COUNTS = {
    "stays": 3, "charging_sessions": 2, "energy_wh": 6_500, "reservations": 4, "reservations_kept": 2,
    "reservations_cancelled": 1, "no_shows": 1, "no_show_rate": round(1 / 3, 4), "visits_with_charging": 2,
    "first_attempt_success": 1.0,
}
IDLE_S = 6.0
"""How long car A at least stays in its bay after its session ended: a tenth of a minute or more."""


@pytest.fixture
async def day_site(tmp_path: Path) -> AsyncIterator[System]:
    async with production_on_shared_broker(tmp_path, SITE) as the_system:
        yield the_system


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def whole_seconds(start: str, end: str) -> int:
    return int((at(end) - at(start)).total_seconds())


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def midnight_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def reserve(http: httpx.AsyncClient, vehicle_id: str, bay_id: str, start_in_s: float,
                  minutes: float) -> dict[str, Any]:
    """A reservation of ``bay_id`` from ``start_in_s`` seconds from now (polled while parking does not know
    the vehicle yet: its registration travels as an event)."""
    starts_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=start_in_s)
    body = {"vehicle_id": vehicle_id, "site_id": "e2e-site", "bay_id": bay_id, "starts_at": starts_at.isoformat(),
            "ends_at": (starts_at + timedelta(minutes=minutes)).isoformat()}
    for _ in range(100):
        made = await http.post("/parking/reserve", json=body)
        if made.status_code != 404:
            break
        await asyncio.sleep(0.2)
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


async def known(charger: SimulatedCharger, id_tag: str) -> None:
    """Until the site's edge knows the idTag (it learns it from the vehicle registry)."""
    for _ in range(120):
        if (await charger.send(call.Authorize(id_tag=id_tag))).id_tag_info["status"] == "Accepted":
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"the edge never accepted {id_tag}")


async def settled(read: Any, expected: Any, limit_s: float = 30.0) -> Any:
    """Read until the answer is ``expected`` (analytics catches up as its events arrive); the last answer."""
    deadline = time.monotonic() + limit_s
    while True:
        answer = await read()
        if answer == expected or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.3)


@pytest.mark.timeout(180)
async def test_a_simulated_day_gives_usage_and_revenue_that_match_its_records_and_rebuild_gives_the_same(
        day_site: System, tmp_path: Path) -> None:
    system = day_site
    began = datetime.now(UTC)
    http = httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=30)
    async with http:
        me = await http.get("/auth/me")
        assert me.status_code == 200, me.text
        account = me.json()["account_id"]
        assert (await http.put("/billing/rates/e2e-site", json=TARIFF)).status_code == 200
        card = await http.post("/payments/methods", json={"kind": "card", "card_number": "4242 4242 4242 4242",
                                                          "make_default": True})
        assert card.status_code == 201, card.text
    vehicles = {car: await register_vehicle(system, f"EV-DAY-{car}", [f"TAGDAY{car}"]) for car in "ABC"}
    # a client id of its own: another simulator of a site "e2e-site" on the shared broker does not drop it
    sensors = MqttSensors("e2e-site", SENSORS, port=system.mqtt_port, root=system.topic_root,
                          username="sensor-test", identifier=f"cpsim-sensors-{system.topic_root}")
    http = httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=30)
    async with http, sensors, SimulatedCharger("CP-1", system.ocpp, connectors=2) as charger:
        for car in "AB":
            await known(charger, f"TAGDAY{car}")
        status = await poll(http, "/parking/status?site_id=e2e-site", lambda b: len(b["slots"]) == BAYS)
        slots = {s["bay_id"]: s["slot_id"] for s in status["slots"]}
        for bay in SENSORS:
            await sensors.set_occupied(bay, False)
        await poll(http, "/parking/sites/e2e-site/availability", lambda b: b["free"] == BAYS)

        # morning: A reserves EV-1 and C reserves R-1; A, B and C arrive
        kept = {"A": await reserve(http, vehicles["A"], "EV-1", 60, 60),
                "C": await reserve(http, vehicles["C"], "R-1", 60, 60)}
        for _ in range(150):  # ReserveNow before A's session, so that the charger holds the connector for it
            if charger.connector_status(1) == "Reserved":
                break
            await asyncio.sleep(0.1)
        assert charger.connector_status(1) == "Reserved"
        bays = {"A": "EV-1", "B": "EV-2", "C": "R-1"}
        for bay in bays.values():
            await sensors.set_occupied(bay, True)
        for car, bay in bays.items():
            slot = await poll(http, f"/parking/slots/{slots[bay]}", lambda b: b["stay"] is not None)
            assert slot["stay"]["reservation_id"] == (kept[car]["reservation_id"] if car in kept else None)

        # a reservation of A-1 nobody comes for (a no-show once its start has passed: arrival grace 0), and one
        # that is cancelled
        lot = await http.put("/parking/lots/e2e-site", json={"arrival_grace_minutes": 0})
        assert lot.status_code == 200, lot.text
        no_show = await reserve(http, vehicles["B"], "A-1", 2, 10)
        cancelled = await reserve(http, vehicles["B"], "A-1", 1800, 30)
        gone = await http.delete("/parking/release", params={"reservation_id": cancelled["reservation_id"]})
        assert gone.status_code == 200 and gone.json()["status"] == "cancelled", gone.text

        # A and B charge (each session joins its car's stay); B and C leave, A stays idle in its bay
        reports = await asyncio.gather(
            charger.run_session(1, "TAGDAYA", ENERGY_WH["A"], meter_interval=0.2, speedup=600),
            charger.run_session(2, "TAGDAYB", ENERGY_WH["B"], meter_interval=0.2, speedup=600))
        charged = time.monotonic()
        assert [r.energy_wh for r in reports] == [ENERGY_WH["A"], ENERGY_WH["B"]]
        for car in "AB":
            await poll(http, f"/parking/slots/{slots[bays[car]]}",
                       lambda b: b["stay"] is not None and len(b["stay"]["session_ids"]) == 1, 30)
        await sensors.set_occupied("EV-2", False)
        await sensors.set_occupied("R-1", False)
        await poll(http, f"/parking/history/{vehicles['B']}", lambda b: any(
            i["kind"] == "reservation" and i["reservation"]["status"] == "no_show" for i in b["items"]), 30)
        await asyncio.sleep(max(0.0, IDLE_S - (time.monotonic() - charged)))
        await sensors.set_occupied("EV-1", False)

        # the records of the day: stays (parking), sessions (charging), invoices (payments)
        stays: dict[str, dict[str, Any]] = {}
        for car in "ABC":
            history = await poll(http, f"/parking/history/{vehicles[car]}", lambda b: any(
                i["kind"] == "stay" and i["stay"]["departed_at"] for i in b["items"]), 30)
            [stays[car]] = [i["stay"] for i in history["items"] if i["kind"] == "stay"]
        reservations = {i["reservation"]["reservation_id"]: i["reservation"]["status"]
                        for car in "ABC" for i in (await http.get(f"/parking/history/{vehicles[car]}")).json()["items"]
                        if i["kind"] == "reservation"}
        assert reservations == {kept["A"]["reservation_id"]: "completed", kept["C"]["reservation_id"]: "completed",
                                no_show["reservation_id"]: "no_show", cancelled["reservation_id"]: "cancelled"}
        sessions: dict[str, dict[str, Any]] = {}
        for car in "AB":
            history = await poll(http, f"/charging/history/{vehicles[car]}", lambda b: len(b["sessions"]) == 1, 30)
            [sessions[car]] = history["sessions"]
            assert sessions[car]["energy_wh"] == ENERGY_WH[car]
            assert stays[car]["session_ids"] == [sessions[car]["session_id"]]
        assert stays["C"]["session_ids"] == []

        billed = await poll(http, f"/payments/history/{account}", lambda b: len(b["invoices"]) == 3 and sum(
            p["status"] == "completed" for p in b["payments"]) == 3, 60)
        invoices = {car: next(i for i in billed["invoices"] if i["stay_id"] == stays[car]["stay_id"]) for car in "ABC"}
        for car, (lines, totals) in INVOICES.items():
            invoice = invoices[car]
            assert {line["type"]: line["amount"] for line in invoice["lines"]} == lines, (car, invoice["lines"])
            assert (invoice["net"], invoice["tax"], invoice["total"], invoice["currency"]) == (*totals, "EUR"), car
        payment = next(p for p in billed["payments"] if p["invoice_id"] == invoices["A"]["id"])
        refund = await http.post("/payments/refund", json={"payment_id": payment["id"], "amount": REFUND,
                                                           "reason": "the idle fee is waived"})
        assert refund.status_code == 201, refund.text
        documents = (await http.get(f"/payments/history/{account}")).json()
        [note] = documents["credit_notes"]
        assert (note["net"], note["tax"], note["total"], note["invoice_id"]) == (*CREDIT_NOTE, invoices["A"]["id"])

        # usage: the scenario's counts and Wh; the times from the records
        idle_a = whole_seconds(sessions["A"]["stopped_at"], stays["A"]["departed_at"])
        assert idle_a >= IDLE_S, "car A stayed idle in its bay after charging"
        occupied_s = sum(whole_seconds(s["arrived_at"], s["departed_at"]) for s in stays.values())
        idle_s = sum(whole_seconds(sessions[car]["stopped_at"], stays[car]["departed_at"]) for car in "AB") + sum(
            whole_seconds(s["energy_finished_at"], s["stopped_at"]) for s in sessions.values()
            if s["energy_finished_at"])
        blocked_s = sum(whole_seconds(stays[car]["arrived_at"], sessions[car]["started_at"]) for car in "AB")
        start, end = hour_of(began), hour_of(datetime.now(UTC)) + timedelta(hours=2)
        hours = int((end - start).total_seconds()) // 3600
        expected_usage = {
            **EXPECTED_COUNTS, "energy_kwh": "6.5", "occupied_hours": round(occupied_s / 3600, 3),
            "time_utilisation": round(occupied_s / (BAYS * hours * 3600), 4),
            "idle_minutes": round(idle_s / 60, 1), "blocked_minutes": round(blocked_s / 60, 1),
        }
        usage_query = {"from": start.isoformat(), "to": end.isoformat(), "site_id": "e2e-site"}

        async def usage() -> dict[str, Any]:
            answer = await http.get("/analytics/usage", params=usage_query)
            assert answer.status_code == 200, answer.text
            return answer.json()  # type: ignore[no-any-return]

        async def usage_figures() -> dict[str, Any]:
            total = (await usage())["total"]
            return {name: total[name] for name in expected_usage}

        assert await settled(usage_figures, expected_usage) == expected_usage, system.logs()

        # revenue: the invoices and the credit note of the payments API, to the cent, as computed by hand
        issued = [*invoices.values(), note]
        revenue_query = {"from": midnight_of(began).isoformat(),
                         "to": (midnight_of(datetime.now(UTC)) + timedelta(days=1)).isoformat(),
                         "site_id": "e2e-site"}
        from_documents = {
            "components": sum_by((ANALYTICS_COMPONENT[line["type"]], Decimal(line["amount"]))
                                  for i in invoices.values() for line in i["lines"] if line["type"] != "tax"),
            "refunds": {"refund": Decimal(note["net"])},
            "invoiced_net": sum(Decimal(i["net"]) for i in invoices.values()), "refunded_net": Decimal(note["net"]),
            "net": sum(Decimal(i["net"]) for i in invoices.values()) - Decimal(note["net"]),
            "tax": sum(Decimal(i["tax"]) for i in invoices.values()) - Decimal(note["tax"]),
            "total": sum(Decimal(i["total"]) for i in invoices.values()) - Decimal(note["total"]),
            "invoices": 3, "credit_notes": 1,
        }
        assert from_documents == EXPECTED_REVENUE

        async def revenue() -> dict[str, Any]:
            answer = await http.get("/analytics/revenue", params=revenue_query)
            assert answer.status_code == 200, answer.text
            return answer.json()  # type: ignore[no-any-return]

        async def revenue_figures() -> dict[str, Any]:
            periods = (await revenue())["periods"]
            assert {(p["site_id"], p["currency"]) for p in periods} <= {("e2e-site", "EUR")}, periods
            # by invoice date in the site's time zone (UTC here): the days the documents were issued
            assert sorted(p["period"] for p in periods) == sorted({at(d["issued_at"]).date().isoformat()
                                                                   for d in issued}), periods
            return {
                "components": sum_by((k, Decimal(v)) for p in periods for k, v in p["components"].items()),
                "refunds": sum_by((k, Decimal(v)) for p in periods for k, v in p["refunds"].items()),
                **{name: sum((Decimal(p[name]) for p in periods), Decimal(0))
                   for name in ("invoiced_net", "refunded_net", "net", "tax", "total")},
                **{name: sum(p[name] for p in periods) for name in ("invoices", "credit_notes")},
            }

        assert await settled(revenue_figures, EXPECTED_REVENUE) == EXPECTED_REVENUE, system.logs()

        # `evpark analytics rebuild`, as an operator runs it against this system's analytics database
        before = (await usage(), await revenue())
        rebuilt = await asyncio.to_thread(subprocess.run, [EVPARK, "analytics", "rebuild"],
                                          env={**os.environ, **system.env}, capture_output=True, timeout=60,
                                          cwd=tmp_path)
        assert rebuilt.returncode == 0, rebuilt.stderr.decode(errors="replace")
        assert "analytics rollups rebuilt from" in rebuilt.stdout.decode(), rebuilt.stdout
        assert (await usage(), await revenue()) == before
        assert await usage_figures() == expected_usage
        assert await revenue_figures() == EXPECTED_REVENUE


def sum_by(pairs: Any) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for key, amount in pairs:
        out[key] = out.get(key, Decimal(0)) + amount
    return out
