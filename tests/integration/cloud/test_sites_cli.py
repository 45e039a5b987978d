"""``evpark sites add|list|remove`` on the parking database (SQLite and PostgreSQL), and the files it
writes on a real Mosquitto started with the production configuration: two sites added with it
cannot read or write each other's topics, and neither can take the cloud's MQTT session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from typer.testing import CliRunner

from cloud.parking import SPEC, bootstrap
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.settings import CloudSettings
from evpark.broker_access import BrokerFiles
from evpark.cli import app
from mqtt import BayOccupancy, Envelope, Topics
from tests.support.production_broker import production_broker
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration

TOPICS = Topics()  # the production root, as `evpark sites add` writes the ACL for it
CLOUD_PASSWORD = "password-of-parking"


@dataclass
class Cli:
    env: dict[str, str]
    password_file: Path
    acl_file: Path

    def run(self, *args: str) -> Any:
        return CliRunner().invoke(app, ["sites", *args], env=self.env, catch_exceptions=False)

    def add(self, site_id: str) -> str:
        """Add the site; its broker password, as printed once."""
        result = self.run("add", site_id, "--password-file", str(self.password_file), "--acl-file", str(self.acl_file))
        assert result.exit_code == 0, result.output
        found = re.search(r'^mqtt_password = (".*?")', result.output, re.MULTILINE)
        assert found, result.output
        return str(json.loads(found.group(1)))

    def listed(self) -> list[dict[str, Any]]:
        result = self.run("list", "--json")
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines() if line.strip()]


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    broker = tmp_path / "broker"
    broker.mkdir()
    return Cli({"EVPARK_DATABASE_URL": database_url, "EVPARK_DATA_DIR": str(tmp_path / "data"),
                "EVPARK_MQTT_TOPIC_ROOT": "evpark"}, broker / "passwd", broker / "acl.conf")


@dataclass
class Site:
    """A site's client (paho, MQTT 3.1.1) that records what it receives."""

    client: paho.Client
    received: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_args: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10)


@contextlib.contextmanager
def site_client(port: int, site_id: str, password: str, *, client_id: str | None = None) -> Iterator[Site]:
    inner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or site_id, protocol=paho.MQTTv311)
    inner.username_pw_set(site_id, password)
    site = Site(inner)
    connected = threading.Event()
    answers: list[Any] = []

    def on_connect(_c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        answers.append(reason)
        connected.set()

    inner.on_connect = on_connect
    inner.on_message = lambda _c, _u, message: site.received.put((message.topic, bytes(message.payload)))
    inner.connect("127.0.0.1", port, keepalive=30)
    inner.loop_start()
    try:
        assert connected.wait(10) and not answers[0].is_failure, \
            f"{site_id} could not log in with the password `evpark sites add` printed: {answers}"
        yield site
    finally:
        inner.disconnect()
        inner.loop_stop()


def bay(site_id: str, seq: int, bay_id: str) -> bytes:
    return Envelope.wrap(site_id, seq, BayOccupancy(bay_id=bay_id, state="occupied",
                                                    changed_at=datetime(2026, 12, 1, 10, tzinfo=UTC))).to_bytes()


class CloudLink:
    """The parking service's real MQTT link, as user evpark-parking, recording what it handles and
    whether it ever lost its connection."""

    def __init__(self, link: MqttLink) -> None:
        self.link = link
        self.handled: list[tuple[str, str]] = []
        self.disconnected = False

    async def watch(self) -> None:
        await self.link.connected.wait()
        while True:
            if not self.link.connected.is_set():
                self.disconnected = True
            await asyncio.sleep(0.005)

    async def wait_handled(self, item: tuple[str, str], within: float = 10) -> None:
        assert await poll_until(lambda: item in self.handled, within=within, interval=0.02), \
            f"{item} not handled within {within} s: {self.handled}"


@contextlib.asynccontextmanager
async def cloud_link(database_url: str, port: int) -> AsyncIterator[CloudLink]:
    db = Database(database_url)
    await db.connect()
    box = Outbox(db, source="parking", publishes=SPEC.publishes)
    recorded: list[tuple[str, str]] = []

    async def handler(_tx: Any, envelope: Envelope) -> None:
        recorded.append((envelope.site_id, envelope.body["bay_id"]))

    link = MqttLink(service="parking", outbox=box, host="127.0.0.1", port=port, topics=TOPICS,
                    categories=["bay"], handler=handler, username="evpark-parking", password=CLOUD_PASSWORD)
    cloud = CloudLink(link)
    cloud.handled = recorded
    tasks = [asyncio.create_task(link.run()), asyncio.create_task(cloud.watch())]
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        yield cloud
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()


async def test_two_sites_added_with_the_cli_use_only_their_own_topics_and_cannot_take_the_cloud_session(
        cli: Cli, database_url: str, tmp_path: Path) -> None:
    password_a = await asyncio.to_thread(cli.add, "garage-a")  # the CLI runs its own event loop
    password_b = await asyncio.to_thread(cli.add, "garage-b")
    assert password_a != password_b
    BrokerFiles(cli.password_file, cli.acl_file).add_user("evpark-parking", CLOUD_PASSWORD)
    listed = await asyncio.to_thread(cli.listed)
    assert [(s["site_id"], s["registered_at"] is not None) for s in listed] == [("garage-a", True),
                                                                                ("garage-b", True)]
    with production_broker(cli.password_file.parent, password_file=cli.password_file,
                           acl_file=cli.acl_file) as broker:
        async with cloud_link(database_url, broker.port) as cloud:
            with site_client(broker.port, "garage-a", password_a) as a, \
                    site_client(broker.port, "garage-b", password_b) as b:
                a.subscribe(TOPICS.down("garage-a"))
                b.subscribe(TOPICS.down("garage-b"))
                # each site's own uplink reaches the cloud
                await asyncio.to_thread(a.publish, TOPICS.up("garage-a", "bay"), bay("garage-a", 1, "A-own"))
                await cloud.wait_handled(("garage-a", "A-own"))
                # A writing into B's uplink is dropped by the broker (the cloud never sees it)
                await asyncio.to_thread(a.publish, TOPICS.up("garage-b", "bay"), bay("garage-b", 1, "A-forged"))
                await asyncio.to_thread(b.publish, TOPICS.up("garage-b", "bay"), bay("garage-b", 2, "B-own"))
                await cloud.wait_handled(("garage-b", "B-own"))
                # A reading B's commands, by name or wildcard, gets nothing
                a.subscribe(TOPICS.down("garage-b"))
                a.subscribe("evpark/#")
                command = json.dumps({"for": "garage-b"}).encode()
                with site_client(broker.port, "garage-a", password_a, client_id="garage-a-2") as a2:
                    a2.publish(TOPICS.down("garage-b"), b"a-commands-b")  # nor may a site send commands
                await asyncio.sleep(0.3)
                assert b.received.empty(), "a site published a command to another site"

                # A takes the cloud service's client id (and its username as client id): the broker
                # gives A its own id, the cloud stays connected and goes on receiving B's messages
                for n, stolen in enumerate((cloud.link.client_id, "evpark-parking"), start=3):
                    with site_client(broker.port, "garage-a", password_a, client_id=stolen):
                        await asyncio.to_thread(b.publish, TOPICS.up("garage-b", "bay"),
                                                bay("garage-b", n, f"B-while-A-is-{stolen}"))
                        await cloud.wait_handled(("garage-b", f"B-while-A-is-{stolen}"))
                assert not cloud.disconnected, "a site took the cloud service's session"
                assert ("garage-b", "A-forged") not in cloud.handled
                seen_by_a = []
                while not a.received.empty():
                    seen_by_a.append(a.received.get())
                assert all(topic.startswith("evpark/sites/garage-a/") for topic, _ in seen_by_a), seen_by_a
                assert command not in [payload for _, payload in seen_by_a]


def test_remove_deletes_the_sites_broker_user_so_it_can_no_longer_log_in(cli: Cli, tmp_path: Path) -> None:
    password = cli.add("garage-gone")
    kept = cli.add("garage-kept")
    with production_broker(cli.password_file.parent, password_file=cli.password_file,
                           acl_file=cli.acl_file) as broker:
        result = cli.run("remove", "garage-gone", "--password-file", str(cli.password_file),
                         "--acl-file", str(cli.acl_file))
        assert result.exit_code == 0, result.output
        broker.reload()
        with pytest.raises(AssertionError, match="could not log in"), \
                site_client(broker.port, "garage-gone", password):
            pass
        with site_client(broker.port, "garage-kept", kept):
            pass
    assert [s["site_id"] for s in cli.listed()] == ["garage-kept"]
    assert "garage-gone" not in cli.acl_file.read_text()


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    files = ("--password-file", str(cli.password_file), "--acl-file", str(cli.acl_file))
    for bad in ("a/b", "+", "x" * 65, "evpark-charging"):
        result = cli.run("add", bad, *files)
        assert result.exit_code == 2, result.output
        assert "site_id:" in result.output
    assert not cli.password_file.exists() and not cli.acl_file.exists()

    cli.add("garage-1")
    before = (cli.password_file.read_text(), cli.acl_file.read_text())
    again = cli.run("add", "garage-1", *files)
    assert again.exit_code == 2 and "site_id:" in again.output and "exists already" in again.output
    assert (cli.password_file.read_text(), cli.acl_file.read_text()) == before, "the password was not replaced"

    missing = tmp_path / "no-such-folder" / "passwd"
    unwritable = cli.run("add", "garage-2", "--password-file", str(missing), "--acl-file", str(cli.acl_file))
    assert unwritable.exit_code == 1 and str(missing) in unwritable.output
    folder = cli.run("add", "garage-2", "--password-file", str(cli.password_file), "--acl-file", str(tmp_path))
    assert folder.exit_code == 1 and "is a folder" in folder.output
    assert [s["site_id"] for s in cli.listed()] == ["garage-1"], "nothing registered without its credentials"


async def test_a_site_is_registered_only_if_its_credentials_were_written(database_url: str, tmp_path: Path) -> None:
    settings = CloudSettings(database_url=database_url, data_dir=tmp_path)

    async def failing(_site_id: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await bootstrap.add_site(settings, "garage-x", failing)
    assert await bootstrap.list_sites(settings) == []


async def test_a_site_known_from_its_messages_is_listed_and_can_be_registered(database_url: str,
                                                                             tmp_path: Path) -> None:
    from cloud.parking.repository import SqlParkingRepository
    from cloud.parking.service import ParkingService
    from cloud.platform.cache import MemoryCache
    from cloud.platform.unit_of_work import SqlUnitOfWork, sql_units_of_work
    from mqtt import SiteHello

    settings = CloudSettings(database_url=database_url, data_dir=tmp_path)
    assert await bootstrap.list_sites(settings) == []  # creates the schema
    db = Database(database_url)
    await db.connect()
    try:
        box = Outbox(db, source="parking", publishes=SPEC.publishes)
        parking = ParkingService(sql_units_of_work(box, SqlParkingRepository), MemoryCache())
        async with box.transaction() as tx:
            await parking.record_site_message(SqlUnitOfWork(tx, SqlParkingRepository(tx)), Envelope.wrap(
                "old-site", 1, SiteHello(edge_version="t", authlist_version=0)))
    finally:
        await db.close()
    [listed] = await bootstrap.list_sites(settings)
    assert (listed.site_id, listed.registered_at, listed.link.state) == ("old-site", None, "online")

    provisioned: list[str] = []

    async def provision(site_id: str) -> None:
        provisioned.append(site_id)

    await bootstrap.add_site(settings, "old-site", provision)
    [listed] = await bootstrap.list_sites(settings)
    assert listed.registered_at is not None and provisioned == ["old-site"]
