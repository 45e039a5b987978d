"""The parking service's bay usage, site view and power limit, through its REST API.

Each test runs the real parking app (SQLite and PostgreSQL) with its MQTT link on the real
Mosquitto; a fake site's edge publishes envelopes and answers commands on the wire. The API is
called as an admin (who sees and changes every site) unless a test says otherwise; who may do
what is in ``test_parking_access.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from fastapi import FastAPI

from cloud.parking import domain
from cloud.parking.app import build_app as build_parking
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.ports import Event
from cloud.platform.settings import CloudSettings
from mqtt import (
    BayUsage,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    InventoryBay,
    InventoryCharger,
    OutboxDropped,
    SetPowerLimit,
    SiteInventory,
    Topics,
    decode_command,
)
from tests.support.identity import headers, trust_test_tokens
from tests.support.services import PrivateMosquitto

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
USAGE_EVENTS = {"parking.bay_idle_started", "parking.bay_idle_ended", "parking.bay_overstay_started",
                "parking.bay_overstay_ended"}


@dataclass
class Parking:
    api: httpx.AsyncClient
    events: list[Event]
    topics: Topics
    broker: tuple[str, int]
    app: FastAPI


@contextlib.asynccontextmanager
async def running_parking(database_url: str, broker: tuple[str, int], topic_root: str,
                          tmp_path: Path) -> AsyncIterator[Parking]:
    settings = CloudSettings(database_url=database_url, mqtt_host=broker[0], mqtt_port=broker[1],
                             mqtt_username="evpark-cloud", mqtt_topic_root=topic_root, data_dir=tmp_path)
    bus = InProcessBus()
    await bus.start()
    captured: list[Event] = []

    async def capture(event: Event) -> None:
        captured.append(event)

    await bus.subscribe("test-parking-events", ["parking.*"], capture)
    app = build_parking(settings, bus=bus, cache=MemoryCache())
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://parking",
                                  headers=headers("admin")) as api:
            trust_test_tokens(app)
            await asyncio.wait_for(app.state.mqtt_link.connected.wait(), 15)
            yield Parking(api, captured, Topics(topic_root), broker, app)
    finally:
        await bus.close()


@pytest.fixture
async def parking(database_url: str, mosquitto: tuple[str, int], topic_root: str,
                  tmp_path: Path) -> AsyncIterator[Parking]:
    async with running_parking(database_url, mosquitto, topic_root, tmp_path) as running:
        yield running


class FakeSite:
    """Plays a site's edge on the wire: publishes envelopes, receives commands, answers them."""

    def __init__(self, client: aiomqtt.Client, topics: Topics, site_id: str) -> None:
        self.client, self.topics, self.site_id, self.seq = client, topics, site_id, 0

    def wrap(self, body: Any, ts: datetime | None = None) -> Envelope:
        self.seq += 1
        return Envelope.wrap(self.site_id, self.seq, body, ts=ts)

    async def publish(self, *envelopes: Envelope) -> None:
        for envelope in envelopes:
            await self.client.publish(self.topics.up_for_type(self.site_id, envelope.type), envelope.to_bytes(),
                                      qos=1)

    async def send(self, body: Any, ts: datetime | None = None) -> Envelope:
        envelope = self.wrap(body, ts)
        await self.publish(envelope)
        return envelope

    async def next_command(self, within_s: float = 10.0) -> Command:
        async def first() -> Command:
            async for message in self.client.messages:
                return decode_command(message.payload)  # type: ignore[arg-type]
            raise AssertionError("the subscription ended")

        return await asyncio.wait_for(first(), within_s)

    async def answer(self, command: Command, status: CommandStatus, detail: str | None = None,
                     data: dict[str, Any] | None = None) -> None:
        await self.send(CommandResult(command_id=command.id, command_type=command.type, status=status,
                                      detail=detail, data=data or {}))


@contextlib.asynccontextmanager
async def fake_site(parking: Parking, site_id: str, **client_options: Any) -> AsyncIterator[FakeSite]:
    async with aiomqtt.Client(*parking.broker, username=site_id, **client_options) as client:
        await client.subscribe(parking.topics.down(site_id), qos=1)
        yield FakeSite(client, parking.topics, site_id)


def inventory(power_limit_a: float | None = 32.0) -> SiteInventory:
    return SiteInventory(
        bays=[InventoryBay(bay_id="EV-1", type="ev", charger_id="CP-1", connector_id=1),
              InventoryBay(bay_id="EV-2", type="ev", charger_id="CP-1", connector_id=2),
              InventoryBay(bay_id="R-1", type="regular")],
        chargers=[InventoryCharger(charger_id="CP-1", connectors=2, max_power_w=22_000)],
        power_limit_a=power_limit_a, phases=3, voltage=230.0)


def usage(bay_id: str, state: str, since: datetime, transaction_id: int | None = None) -> BayUsage:
    connector = {"EV-1": 1, "EV-2": 2}.get(bay_id, 1)
    return BayUsage(bay_id=bay_id, charger_id="CP-1", connector_id=connector, state=state,  # type: ignore[arg-type]
                    since=since, transaction_id=transaction_id)


async def until(api: httpx.AsyncClient, path: str, predicate: Callable[[Any], bool], *,
                params: Any = None, limit_s: float = 15.0) -> Any:
    """GET ``path`` until it answers 200 with a body ``predicate`` accepts; returns that body."""
    deadline = asyncio.get_running_loop().time() + limit_s
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        response = await api.get(path, params=params)
        if response.status_code == 200:
            last = response.json()
            if predicate(last):
                return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"GET {path} never matched; last answer: {last}")


async def eventually(condition: Callable[[], bool] | Callable[[], Awaitable[bool]], limit_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def usage_events(parking: Parking, bay_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [(e.name, e.payload) for e in parking.events
            if e.name in USAGE_EVENTS and (bay_id is None or e.payload["bay_id"] == bay_id)]


def parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- bay usage ------------------------------------------------------------------------------


async def test_bay_usage_is_listed_filtered_and_announced(parking: Parking) -> None:
    api = parking.api
    async with fake_site(parking, "site-u") as site:  # an edge before MQTT contract 1.1: its words translated
        await site.send(inventory())
        await site.send(usage("EV-1", "idle", T0), ts=T0)
        await site.send(usage("EV-1", "charging", T0 + 5 * MIN, 41), ts=T0 + 5 * MIN)
        await site.send(usage("EV-2", "overstay", T0 + 10 * MIN, 40), ts=T0 + 10 * MIN)
        body = await until(api, "/parking/sites/site-u/bays",
                           lambda b: {x["bay_id"]: x["usage"] for x in b["bays"]} ==
                           {"EV-1": "charging", "EV-2": "idle", "R-1": None})
        ev1 = next(b for b in body["bays"] if b["bay_id"] == "EV-1")
        assert parse(ev1["usage_since"]) == T0 + 5 * MIN
        assert ev1["usage_transaction_id"] == 41
        assert ev1["state"] == "unknown", "usage does not pretend to be the occupancy sensor"

        overstay = (await api.get("/parking/sites/site-u/bays", params={"usage": "idle"})).json()
        assert [(b["bay_id"], b["usage_transaction_id"]) for b in overstay["bays"]] == [("EV-2", 40)]
        blocking = (await api.get("/parking/sites/site-u/bays", params=[("usage", "blocked"), ("usage", "idle")]))
        assert [b["bay_id"] for b in blocking.json()["bays"]] == ["EV-2"]
        charging = (await api.get("/parking/sites/site-u/bays?usage=charging")).json()
        assert [b["bay_id"] for b in charging["bays"]] == ["EV-1"]
        bad = await api.get("/parking/sites/site-u/bays", params={"usage": "parked"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert any("usage" in error["field"] for error in bad.json()["errors"])

        await eventually(lambda: len(usage_events(parking)) == 3)
        assert [(name, payload["bay_id"]) for name, payload in usage_events(parking)] == [
            ("parking.bay_idle_started", "EV-1"), ("parking.bay_idle_ended", "EV-1"),
            ("parking.bay_overstay_started", "EV-2")]
        idle_ended = usage_events(parking)[1][1]
        assert (idle_ended["duration_s"], idle_ended["next_state"]) == (300, "charging")
        assert (idle_ended["charger_id"], idle_ended["connector_id"]) == ("CP-1", 1)

        await site.send(usage("EV-2", "free", T0 + 40 * MIN), ts=T0 + 40 * MIN)
        await eventually(lambda: len(usage_events(parking)) == 4)
        name, ended = usage_events(parking)[3]
        assert name == "parking.bay_overstay_ended"
        assert (ended["transaction_id"], ended["duration_s"], ended["next_state"]) == (40, 30 * 60, "free")
        assert parse(ended["started_at"]) == T0 + 10 * MIN and parse(ended["ended_at"]) == T0 + 40 * MIN
        assert (await api.get("/parking/sites/site-u/bays", params={"usage": "idle"})).json()["bays"] == []


async def test_a_redelivered_or_older_bay_usage_changes_nothing(parking: Parking) -> None:
    async with fake_site(parking, "site-r") as site:
        await site.send(inventory())
        overstay = site.wrap(usage("EV-1", "overstay", T0 + 60 * MIN, 41), ts=T0 + 60 * MIN)
        left = site.wrap(usage("EV-1", "free", T0 + 90 * MIN), ts=T0 + 90 * MIN)
        backlog = site.wrap(usage("EV-1", "idle", T0), ts=T0)  # replayed from the site's outbox, late
        marker = site.wrap(usage("EV-2", "idle", T0 + 95 * MIN), ts=T0 + 95 * MIN)
        # each delivered again, as after a lost PUBACK; then the old backlog; then a marker
        await site.publish(overstay, left, overstay, left, backlog, overstay, marker)
        await eventually(lambda: any(p["bay_id"] == "EV-2" for _, p in usage_events(parking)))
        bays = (await parking.api.get("/parking/sites/site-r/bays")).json()["bays"]
        ev1 = next(b for b in bays if b["bay_id"] == "EV-1")
        assert (ev1["usage"], parse(ev1["usage_since"]), ev1["usage_transaction_id"]) == ("free", T0 + 90 * MIN, None)
        assert [name for name, _ in usage_events(parking, "EV-1")] == [
            "parking.bay_overstay_started", "parking.bay_overstay_ended"], "each period announced once"


# --- the site view ----------------------------------------------------------------------------


async def test_the_site_view_shows_inventory_power_and_uplink_drops(parking: Parking) -> None:
    api = parking.api
    for path in ("/parking/sites/nowhere", "/parking/sites/nowhere/power-limit"):
        unknown = await api.get(path)
        assert unknown.status_code == 404, path
        assert unknown.headers["content-type"].startswith("application/problem+json")
        assert unknown.json()["code"] == "unknown_site"
    put = await api.put("/parking/sites/nowhere/power-limit", json={"limit_a": 40})
    assert (put.status_code, put.json()["code"]) == (404, "unknown_site")

    async with fake_site(parking, "site-d") as site:
        await site.send(inventory(power_limit_a=32.0), ts=T0)
        view = await until(api, "/parking/sites/site-d", lambda v: v["inventory"]["received_at"] is not None)
        assert (view["inventory"]["bays"], view["inventory"]["chargers"]) == (3, 1)
        assert parse(view["inventory"]["received_at"]) == T0
        assert view["power"] == {"limit_a": 32.0, "phases": 3, "voltage": 230.0, "applied_limit_a": 32.0,
                                 "request_status": None}
        assert view["uplink_drops"] == {"total": 0, "last": None}
        assert view["last_seen_at"] is not None

        newer = site.wrap(OutboxDropped(policy="drop_oldest_telemetry", dropped=120,
                                        by_type={"session.meter": 100, "bay.occupancy": 20}, first_seq=10,
                                        last_seq=129, backlog=5_000, backlog_bytes=2_000_000, at=T0 + 120 * MIN))
        older = site.wrap(OutboxDropped(policy="refuse_new", dropped=5, by_type={"session.meter": 5}, backlog=10,
                                        backlog_bytes=100, at=T0 + 60 * MIN))
        marker = site.wrap(usage("EV-1", "idle", T0 + 130 * MIN), ts=T0 + 130 * MIN)
        await site.publish(newer, older, newer, marker)  # the newer report redelivered once
        await eventually(lambda: bool(usage_events(parking, "EV-1")))
        drops = (await api.get("/parking/sites/site-d")).json()["uplink_drops"]
        assert drops["total"] == 125, "every report counts once; a redelivery does not"
        assert drops["last"] == {"at": drops["last"]["at"], "policy": "drop_oldest_telemetry", "dropped": 120,
                                 "by_type": {"session.meter": 100, "bay.occupancy": 20}, "first_seq": 10,
                                 "last_seq": 129, "backlog": 5_000, "backlog_bytes": 2_000_000}
        assert parse(drops["last"]["at"]) == T0 + 120 * MIN, "a late older report does not replace the latest"

        # an inventory older than the one mirrored (replayed backlog) changes nothing
        await site.send(inventory(power_limit_a=16.0), ts=T0 - 60 * MIN)
        await site.send(usage("EV-1", "charging", T0 + 131 * MIN, 3), ts=T0 + 131 * MIN)
        await until(api, "/parking/sites/site-d/bays", lambda b: b["bays"][0]["usage"] == "charging")
        assert (await api.get("/parking/sites/site-d")).json()["power"]["limit_a"] == 32.0


# --- the power limit ----------------------------------------------------------------------------


async def test_a_power_limit_goes_to_the_site_and_its_answer_settles_it(parking: Parking) -> None:
    api = parking.api
    async with fake_site(parking, "site-p") as site:
        await site.send(inventory(power_limit_a=32.0))
        await until(api, "/parking/sites/site-p", lambda v: v["power"]["limit_a"] == 32.0)
        before = (await api.get("/parking/sites/site-p/power-limit")).json()
        assert (before["status"], before["requested"], before["applied"]["limit_a"]) == (None, None, 32.0)
        assert before["applied"]["source"] == "inventory"

        put = await api.put("/parking/sites/site-p/power-limit", json={"limit_a": 40})
        assert put.status_code == 202, put.text
        assert put.headers["location"] == "/parking/sites/site-p/power-limit"
        state = put.json()
        assert state["status"] == "pending"
        assert (state["requested"]["limit_a"], state["requested"]["limit_w"]) == (40.0, None)
        command = await site.next_command()
        assert str(command.id) == state["command"]["command_id"]
        assert command.type == "site.set_power_limit"
        assert SetPowerLimit.model_validate(command.body) == SetPowerLimit(limit_a=40.0)
        assert command.expires_at - command.issued_at == timedelta(minutes=10)

        again = await api.put("/parking/sites/site-p/power-limit", json={"limit_a": 40})
        assert again.json()["command"]["command_id"] == str(command.id), "a retried PUT is the same request"
        with pytest.raises(TimeoutError):
            await site.next_command(within_s=1.0)
        sent = await until(api, "/parking/sites/site-p/power-limit", lambda s: s["command"]["sent_at"] is not None)
        assert (sent["status"], sent["command"]["attempts"]) == ("pending", 1)

        await site.answer(command, CommandStatus.ACCEPTED, data={"limit_a": 40.0})
        done = await until(api, "/parking/sites/site-p/power-limit", lambda s: s["status"] == "accepted")
        assert (done["applied"]["limit_a"], done["applied"]["source"]) == (40.0, "command")
        assert done["settled_at"] is not None and done["detail"] is None
        view = (await api.get("/parking/sites/site-p")).json()["power"]
        assert (view["applied_limit_a"], view["request_status"], view["limit_a"]) == (40.0, "accepted", 32.0)

        watts = await api.put("/parking/sites/site-p/power-limit", json={"limit_w": 27600})
        assert watts.status_code == 202
        command_w = await site.next_command()
        assert command_w.id != command.id
        assert command_w.body == {"limit_a": None, "limit_w": 27600.0}
        await site.answer(command_w, CommandStatus.REJECTED, detail="below the minimum current of the site")
        rejected = await until(api, "/parking/sites/site-p/power-limit", lambda s: s["status"] == "rejected")
        assert rejected["detail"] == "below the minimum current of the site"
        assert rejected["requested"]["limit_w"] == 27600.0
        assert rejected["applied"]["limit_a"] == 40.0, "a rejected limit was not applied"

        # a late answer to the older command does not reopen the newer request
        await site.answer(command, CommandStatus.FAILED, detail="late")
        await site.send(usage("EV-1", "idle", T0))
        await eventually(lambda: bool(usage_events(parking, "EV-1")))
        assert (await api.get("/parking/sites/site-p/power-limit")).json()["status"] == "rejected"


async def test_a_malformed_power_limit_is_a_422_problem_naming_the_field(parking: Parking) -> None:
    api = parking.api
    async with fake_site(parking, "site-m") as site:
        await site.send(inventory())
        await until(api, "/parking/sites/site-m", lambda v: True)
        cases: list[tuple[dict[str, Any], set[str]]] = [
            ({}, {"limit_a", "limit_w"}),
            ({"limit_a": 40, "limit_w": 27600}, {"limit_a", "limit_w"}),
            ({"limit_a": 0}, {"limit_a"}),
            ({"limit_a": "forty"}, {"limit_a"}),
            ({"limit_a": True}, {"limit_a"}),
            ({"limit_w": -1}, {"limit_w"}),
            ({"limit_a": None, "limit_w": None}, {"limit_a", "limit_w"}),
            ({"limit_a": 40, "colour": "red"}, {"colour"}),
        ]
        for body, fields in cases:
            response = await api.put("/parking/sites/site-m/power-limit", json=body)
            assert response.status_code == 422, body
            assert response.headers["content-type"].startswith("application/problem+json"), body
            problem = response.json()
            assert {error["field"] for error in problem["errors"]} == fields, body
            assert all(field in problem["detail"] for field in fields), body
        not_json = await api.put("/parking/sites/site-m/power-limit", content=b"limit_a=40",
                                 headers={"content-type": "application/json"})
        assert not_json.status_code == 422
        assert not_json.headers["content-type"].startswith("application/problem+json")

        state = (await api.get("/parking/sites/site-m/power-limit")).json()
        assert (state["status"], state["requested"], state["command"]) == (None, None, None)
        with pytest.raises(TimeoutError):
            await site.next_command(within_s=1.0)


async def test_an_unanswered_command_is_replaced_by_a_fresh_one_after_it_expires(
        parking: Parking, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(domain, "COMMAND_TTL", timedelta(seconds=1))
    api = parking.api
    async with fake_site(parking, "site-x") as site:
        await site.send(inventory())
        await until(api, "/parking/sites/site-x", lambda v: True)
        await api.put("/parking/sites/site-x/power-limit", json={"limit_a": 25})
        first = await site.next_command()
        second = await site.next_command(within_s=15)  # no answer: a fresh command after expiry
        assert second.id != first.id
        assert second.body == first.body == {"limit_a": 25.0, "limit_w": None}
        assert second.issued_at >= first.expires_at
        state = (await api.get("/parking/sites/site-x/power-limit")).json()
        assert (state["status"], state["command"]["command_id"]) == ("pending", str(second.id))

        await site.answer(first, CommandStatus.EXPIRED, detail="command expired")  # late, for the old one
        await asyncio.sleep(1.1)  # the second has expired by now as well
        await site.answer(second, CommandStatus.EXPIRED, detail="command expired")
        third = await site.next_command(within_s=15)
        assert third.id not in {first.id, second.id}
        await site.answer(third, CommandStatus.ACCEPTED, data={"limit_a": 25.0})
        # a command is counted once it went out, in a transaction after its publish: the edge's answer can be
        # settled first (under load it was, with the count still 2)
        done = await until(api, "/parking/sites/site-x/power-limit",
                           lambda s: s["status"] == "accepted" and s["command"]["attempts"] == 3)
        assert done["command"]["command_id"] == str(third.id)
        assert done["applied"]["limit_a"] == 25.0


async def test_a_limit_requested_while_mqtt_is_down_is_sent_when_it_is_back(
        database_url: str, private_mosquitto: PrivateMosquitto, topic_root: str, tmp_path: Path) -> None:
    broker = ("127.0.0.1", private_mosquitto.port)
    async with running_parking(database_url, broker, topic_root, tmp_path) as parking:
        api = parking.api
        session = {"identifier": f"fake-site-{topic_root}", "clean_session": False}
        async with fake_site(parking, "site-o", **session) as site:
            await site.send(inventory())
            await until(api, "/parking/sites/site-o", lambda v: True)

        private_mosquitto.stop()
        await eventually(lambda: not parking.app.state.mqtt_link.connected.is_set())
        put = await api.put("/parking/sites/site-o/power-limit", json={"limit_a": 20})
        assert put.status_code == 202
        command_id = put.json()["command"]["command_id"]
        await asyncio.sleep(2.0)
        waiting = (await api.get("/parking/sites/site-o/power-limit")).json()
        assert waiting["status"] == "pending"
        assert waiting["command"]["sent_at"] is None and waiting["command"]["attempts"] == 0, "kept, not lost"

        private_mosquitto.start()
        async with fake_site(parking, "site-o", **session) as site:
            command = await site.next_command(within_s=20)
            assert str(command.id) == command_id
            assert command.body == {"limit_a": 20.0, "limit_w": None}
            await site.answer(command, CommandStatus.ACCEPTED, data={"limit_a": 20.0})
            done = await until(api, "/parking/sites/site-o/power-limit", lambda s: s["status"] == "accepted")
        assert done["command"]["attempts"] == 1
        assert done["applied"]["limit_a"] == 20.0
