"""A notification service killed mid-delivery (SIGKILL: no cleanup, no goodbye to the broker or the SMTP
server) and started again loses nothing and repeats at most the one e-mail in flight, with the same
Message-ID; the in-app list has each notification once.

The service runs as its users run it, its own process (``evpark serve notifications``) in production
mode: PostgreSQL and RabbitMQ under fresh names, a real aiosmtpd server that takes the first message and
holds its answer, and a JWKS endpoint of the test's key so the in-app list is read over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cloud.contracts import Event
from cloud.contracts.payments import PaymentCompleted
from cloud.notifications.channels import message_id
from cloud.notifications.domain import notification_id
from cloud.platform.rabbitmq import RabbitMQBus
from tests.e2e.harness import EVPARK
from tests.integration.cloud.test_notifications_delivery import NOW, TARIFF, Mailbox, driver, mailbox
from tests.integration.cloud.test_notifications_redelivery import session_events
from tests.support import services
from tests.support.identity import headers, ring
from tests.support.waiting import eventually

__all__ = ["mailbox"]

pytestmark = pytest.mark.integration

DRIVER = "acc-driver-a"
MESSAGE_ID_DOMAIN = "evpark.local"


# --- what the service runs on --------------------------------------------------------------------

@dataclass
class Place:
    """The service's state between its two lives: a fresh database, a fresh vhost, its folders and port."""

    folder: Path
    db_name: str
    vhost: str
    port: int
    jwks_url: str
    smtp_port: int

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"

    @property
    def database(self) -> str:
        return f"{self.db_name}_notifications"

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVPARK_")}  # only the test's own
        return inherited | {
            "EVPARK_ENV": "production",
            "EVPARK_DATA_DIR": str(self.folder / "data"),
            "EVPARK_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}_{{service}}",
            "EVPARK_AMQP_URL": self.amqp_url,
            "EVPARK_REDIS_URL": "redis://127.0.0.1:6379/0",
            "EVPARK_CACHE_PREFIX": f"{self.db_name}:",
            "EVPARK_NOTIFICATIONS_PORT": str(self.port),
            "EVPARK_JWKS_URL": self.jwks_url,
            "EVPARK_NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "EVPARK_NOTIFICATIONS_SMTP_PORT": str(self.smtp_port),
            "EVPARK_NOTIFICATIONS_SMTP_SECURITY": "none",
            "EVPARK_NOTIFICATIONS_MESSAGE_ID_DOMAIN": MESSAGE_ID_DOMAIN,
            # one e-mail in flight at a time: the "the one message in flight"
            "EVPARK_NOTIFICATIONS_CONCURRENCY": "1",
            # the restarted service takes the dead one's lease over after this (default 60 s)
            "EVPARK_NOTIFICATIONS_LEASE_SECONDS": "2",
            "EVPARK_NOTIFICATIONS_POLL_SECONDS": "0.1",
            "EVPARK_NOTIFICATIONS_RETRY_BASE_SECONDS": "0.5",
        }

    async def rows(self, sql: str) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.database}")
        try:
            return list(await connection.fetch(sql))
        finally:
            await connection.close()


def jwks_server() -> Iterator[str]:
    """The test key ring's public keys over HTTP, as the accounts service publishes its own."""
    body = json.dumps(ring().jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def place(tmp_path: Path, mailbox: Mailbox) -> AsyncIterator[Place]:
    for label, address in (("PostgreSQL", services.POSTGRES), ("RabbitMQ", services.RABBITMQ),
                           ("Redis", services.REDIS)):
        services.require(label, address)
    vhost = await asyncio.to_thread(services.create_rabbitmq_vhost)
    db_name = services.fresh_name("evpark_kill_")
    try:
        for jwks_url in jwks_server():
            yield Place(tmp_path, db_name, vhost, services.free_port(), jwks_url, mailbox.port)
    finally:
        await asyncio.to_thread(services.delete_rabbitmq_vhost, vhost)
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{db_name}_notifications" WITH (FORCE)')
        finally:
            await connection.close()


# --- the service as a process --------------------------------------------------------------------

@dataclass
class Service:
    process: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    async def kill(self) -> None:
        """SIGKILL: no lifespan exit, no consumer cancel, no connection closed by the service."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


@contextlib.asynccontextmanager
async def serving(place: Place, life: str) -> AsyncIterator[Service]:
    """``evpark serve notifications``, ready (consuming, delivering); killed when the block ends."""
    log = place.folder / f"notifications-{life}.log"
    with log.open("ab") as handle:
        process = await asyncio.create_subprocess_exec(EVPARK, "serve", "notifications", env=place.env(),
                                                       stdout=handle, stderr=asyncio.subprocess.STDOUT,
                                                       cwd=place.folder)
    service = Service(process, log)
    try:
        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"the service exited with {process.returncode}:\n{service.tail()}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"http://127.0.0.1:{place.port}/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, within=30, interval=0.1, what=f"the {life} service ready")
        yield service
    finally:
        await service.kill()


# --- the test ------------------------------------------------------------------------------------

def expected(events: list[Event], channel: str) -> dict[str, str]:
    """notification id -> kind, for the driver's notification of each event on ``channel``."""
    return {notification_id(str(e.id), DRIVER, channel, e.name): e.name for e in events}


async def publish(place: Place, events: list[Event]) -> None:
    bus = RabbitMQBus(place.amqp_url, service="test-producers")
    await bus.start()
    try:
        for event in events:
            await bus.publish(event)  # returns once the broker confirmed it (routed to the durable queue)
    finally:
        await bus.close()


@pytest.mark.timeout(90)  # about 15 s alone; two process starts and rabbitmqctl slow down on busy cores
async def test_a_service_killed_mid_delivery_loses_nothing_and_repeats_only_the_message_in_flight(
        place: Place, mailbox: Mailbox) -> None:
    session = session_events()
    sentinel = Event.of(PaymentCompleted(payment_id="p-10", account_id=DRIVER, amount=Decimal("1.00"),
                                         currency="EUR", completed_at=NOW), source="test")
    everything = [*session, sentinel]
    emails = {message_id(nid, MESSAGE_ID_DOMAIN): nid for nid in expected(everything, "email")}  # Message-ID -> id

    async with serving(place, "first") as first:
        await publish(place, [Event.of(driver(), source="test"), Event.of(TARIFF, source="test")])

        async def recipient_known() -> bool:
            return bool(await place.rows(f"SELECT 1 FROM notification_recipients WHERE account_id = '{DRIVER}'"))

        await eventually(recipient_known, what="the driver's address taken in")
        mailbox.hold.clear()  # the server takes the message, but its 250 does not come: a kill meanwhile
        await publish(place, session)
        await eventually(lambda: len(mailbox.messages) == 1, what="the first e-mail at the SMTP server")
        in_flight = mailbox.ids()[0]
        assert in_flight in emails
        leased = await place.rows("SELECT q.notification_id, n.state FROM notification_queue q "
                                  "JOIN notifications n ON n.id = q.notification_id WHERE q.lease_until IS NOT NULL")
        assert [(r["notification_id"], r["state"]) for r in leased] == [(emails[in_flight], "pending")]
        assert not await place.rows("SELECT 1 FROM notifications WHERE channel = 'email' AND state = 'sent'")
        await first.kill()

    await publish(place, [sentinel])  # while no service runs: the durable queue keeps it
    async with serving(place, "second") as second:
        mailbox.hold.set()

        async def all_sent() -> bool:
            states = await place.rows("SELECT state FROM notifications WHERE channel = 'email'")
            queued = await place.rows("SELECT 1 FROM notification_queue")
            return len(states) == len(emails) and {r["state"] for r in states} == {"sent"} and not queued

        try:
            await eventually(all_sent, within=30, interval=0.1, what="every e-mail recorded sent")
        except AssertionError as failure:
            states = await place.rows("SELECT kind, state, attempts, last_error FROM notifications "
                                      "WHERE channel = 'email' ORDER BY kind")
            raise AssertionError(f"{failure}: {[tuple(r) for r in states]}\n{second.tail()}") from None
        await eventually(lambda: set(mailbox.ids()) == set(emails), what="every e-mail at the SMTP server")

        arrived = Counter(mailbox.ids())
        assert set(arrived) == set(emails)  # nothing lost, nothing unexpected
        # The server took the one in flight but never said so: the service cannot know it arrived, so it sends it
        # again, once, with the same Message-ID (a receiver drops the repeat). Every other one exactly once.
        assert arrived[in_flight] == 2
        copies = {(str(m["To"]), str(m["Subject"])) for m in mailbox.messages if m["Message-ID"] == in_flight}
        assert len(copies) == 1  # the repeat is the same message
        assert {mid: n for mid, n in arrived.items() if mid != in_flight} == dict.fromkeys(set(emails) - {in_flight}, 1)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{place.port}", timeout=10) as client:
            answer = await client.get("/notifications", headers=headers("driver_a"), params={"limit": 100})
        assert answer.status_code == 200, answer.text
        in_app = [(item["id"], item["kind"]) for item in answer.json()["items"]]
        assert sorted(in_app) == sorted(expected(everything, "in_app").items())  # each notification once
