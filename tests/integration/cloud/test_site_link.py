"""A site's link state on the real Mosquitto: a real edge connects, stops, is killed or freezes; the
parking service (its MQTT link on SQLite and PostgreSQL) records it and publishes
``parking.site_online`` / ``parking.site_offline`` through its outbox within the documented bounds
(README, "Running it in production": a clean stop and a killed process within about a second, a
silent loss within 1.5 times the edge's keepalive)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cloud.parking import SPEC
from cloud.parking.repository import SqlParkingRepository
from cloud.parking.service import ParkingService
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.tables import outbox
from cloud.platform.unit_of_work import SqlUnitOfWork, sql_units_of_work
from edge import Edge, EdgeSettings
from mqtt import Topics
from tests.integration.cloud.conftest import migrations_of
from tests.support import services
from tests.support.identity import PRINCIPALS

pytestmark = pytest.mark.integration

ADMIN = PRINCIPALS["admin"]
EVPARK = str(Path(sys.executable).with_name("evpark"))
STOP_BOUND_S = 2.0
"""A clean stop or a killed process: the broker publishes at once; 2 s leaves room for a slow CI."""
SILENT_SLACK_S = 10.0
"""Beyond 1.5 keepalives (MQTT 3.1.1 §3.1.2.10), Mosquitto 2.0.11 was measured 0-6 s late with a 2 s
keepalive (its keepalive check is not exact to the second)."""


@dataclass
class Parking:
    service: ParkingService
    db: Database
    topic_root: str
    port: int

    async def link_events(self, site_id: str) -> list[dict[str, Any]]:
        """The parking.site_online / site_offline events of the site in the outbox, oldest first."""
        async with self.db.session() as session:
            rows = (await session.execute(select(outbox.c.name, outbox.c.payload, outbox.c.created_at)
                                          .where(outbox.c.name.in_(["parking.site_online", "parking.site_offline"]))
                                          .order_by(outbox.c.id))).all()
        found = []
        for name, payload, created_at in rows:
            body = json.loads(payload)["payload"]
            if body["site_id"] == site_id:
                found.append({"name": name, **body, "written_at": created_at})
        return found

    async def wait_events(self, site_id: str, count: int, within: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while True:
            events = await self.link_events(site_id)
            if len(events) >= count:
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} link events of {site_id} not written within {within} s: {events}")
            await asyncio.sleep(0.05)

    async def link(self, site_id: str) -> dict[str, Any]:
        return (await self.service.site(ADMIN, site_id)).model_dump(mode="json")["link"]  # type: ignore[no-any-return]


@pytest.fixture
async def parking(database_url: str, mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[Parking]:
    db = Database(database_url)
    await db.connect()
    await db.migrate(migrations_of("parking"))
    box = Outbox(db, source="parking", publishes=SPEC.publishes)
    service = ParkingService(sql_units_of_work(box, SqlParkingRepository), MemoryCache())
    link = MqttLink(
        service="parking", outbox=box, host=mosquitto[0], port=mosquitto[1], topics=Topics(topic_root),
        categories=SPEC.mqtt_categories, username="evpark-parking",
        handler=lambda tx, envelope: service.record_site_message(SqlUnitOfWork(tx, SqlParkingRepository(tx)),
                                                                 envelope),
        status_handler=lambda tx, site_id, status: service.record_link_status(
            SqlUnitOfWork(tx, SqlParkingRepository(tx)), site_id, status))
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    try:
        yield Parking(service, db, topic_root, mosquitto[1])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.close()


def edge_settings(tmp_path: Path, parking: Parking, site_id: str, **overrides: Any) -> EdgeSettings:
    values: dict[str, Any] = {"site_id": site_id, "data_dir": tmp_path / "edge", "ocpp_port": 0, "admin_port": 0,
                              "mqtt_port": parking.port, "mqtt_username": site_id,
                              "mqtt_topic_root": parking.topic_root, "heartbeat_interval": 120}
    values.update(overrides)
    return EdgeSettings(**values)


async def test_a_stopped_edge_is_offline_within_the_bound_and_online_again_when_it_returns(
        parking: Parking, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    async with Edge(edge_settings(tmp_path, parking, site_id)) as edge:
        await asyncio.wait_for(edge.uplink.connected.wait(), 10)
        [online] = await parking.wait_events(site_id, 1, within=10)
        assert (online["name"], online["reason"], online["offline_since"]) == ("parking.site_online", "connected",
                                                                                None)
        assert (await parking.link(site_id))["state"] == "online"
        stopping = time.monotonic()
    # the edge has stopped (its context exited): a clean DISCONNECT after its "stopped" status
    events = await parking.wait_events(site_id, 2, within=STOP_BOUND_S)
    offline = events[1]
    took = time.monotonic() - stopping
    assert (offline["name"], offline["reason"]) == ("parking.site_offline", "stopped"), events
    assert took < STOP_BOUND_S
    link = await parking.link(site_id)
    assert (link["state"], link["reason"]) == ("offline", "stopped")

    async with Edge(edge_settings(tmp_path, parking, site_id)) as edge:
        await asyncio.wait_for(edge.uplink.connected.wait(), 10)
        events = await parking.wait_events(site_id, 3, within=10)
        back = events[2]
        assert (back["name"], back["reason"]) == ("parking.site_online", "connected")
        assert back["offline_since"] == offline["since"]
        assert (await parking.link(site_id))["state"] == "online"
    assert len(await parking.wait_events(site_id, 4, within=STOP_BOUND_S)) == 4


def start_edge_process(tmp_path: Path, parking: Parking, site_id: str, *,
                       keepalive: int = 30) -> subprocess.Popen[bytes]:
    env = {**os.environ, "EVPARK_EDGE_SITE_ID": site_id, "EVPARK_EDGE_DATA_DIR": str(tmp_path / "edge"),
           "EVPARK_EDGE_OCPP_PORT": str(services.free_port()), "EVPARK_EDGE_ADMIN_PORT": "0",
           "EVPARK_EDGE_MQTT_PORT": str(parking.port), "EVPARK_EDGE_MQTT_USERNAME": site_id,
           "EVPARK_EDGE_MQTT_TOPIC_ROOT": parking.topic_root, "EVPARK_EDGE_MQTT_KEEPALIVE": str(keepalive)}
    log = (tmp_path / "edge.log").open("ab")
    return subprocess.Popen([EVPARK, "edge"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


def end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


async def test_a_killed_edge_is_offline_at_once_by_its_last_will(parking: Parking, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    process = start_edge_process(tmp_path, parking, site_id)
    try:
        await parking.wait_events(site_id, 1, within=30)
        process.kill()  # SIGKILL: no goodbye; the kernel closes the socket and the broker sends the will
        killed = time.monotonic()
        process.wait(10)
        events = await parking.wait_events(site_id, 2, within=STOP_BOUND_S)
        assert time.monotonic() - killed < STOP_BOUND_S
        assert (events[1]["name"], events[1]["reason"]) == ("parking.site_offline", "lost")
        assert (await parking.link(site_id))["state"] == "offline"
    finally:
        end(process)


async def test_an_edge_gone_silent_is_offline_within_one_and_a_half_keepalives_and_back_when_it_wakes(
        parking: Parking, tmp_path: Path) -> None:
    site_id = services.fresh_name("site-")
    keepalive = 2
    process = start_edge_process(tmp_path, parking, site_id, keepalive=keepalive)
    try:
        await parking.wait_events(site_id, 1, within=30)
        process.send_signal(signal.SIGSTOP)  # frozen: the TCP connection stays open, nothing is sent
        frozen = time.monotonic()
        events = await parking.wait_events(site_id, 2, within=1.5 * keepalive + SILENT_SLACK_S)
        took = time.monotonic() - frozen
        assert (events[1]["name"], events[1]["reason"]) == ("parking.site_offline", "lost")
        assert took >= keepalive, "not before the keepalive ran out"
        process.send_signal(signal.SIGCONT)
        events = await parking.wait_events(site_id, 3, within=20)
        assert (events[2]["name"], events[2]["reason"]) == ("parking.site_online", "connected")
        assert (await parking.link(site_id))["state"] == "online"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
        end(process)
