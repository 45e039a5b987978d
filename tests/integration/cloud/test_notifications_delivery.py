"""Notification delivery against real receivers: an aiosmtpd SMTP server (one that refuses the first
attempts, one that bounces), an HTTP webhook receiver that verifies the signature (one that answers 500
until the dead letter), apprise's json:// target; redelivery of every event producing no second
message, and a service stopped mid-delivery repeating only the one in flight with the same Message-ID.
Both run modes (SQLite + in-process bus, PostgreSQL + RabbitMQ)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from cloud.contracts import Event, EventBody
from cloud.contracts.accounts import AccountRegistered, AccountUpdated, PasswordResetRequested
from cloud.contracts.charging import ChargerFaulted, ChargerOffline, EnergyFinished
from cloud.contracts.payments import PaymentCompleted, PaymentFailed, TariffChanged
from cloud.notifications.app import build_app
from cloud.notifications.domain import verify
from cloud.notifications.settings import NotificationSettings
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.ports import EventBus
from cloud.platform.rabbitmq import RabbitMQBus
from cloud.platform.settings import CloudSettings
from tests.support import services
from tests.support.identity import headers, trust_test_tokens
from tests.support.services import free_port
from tests.support.waiting import eventually

SECRET, OLD_SECRET = "whsec-new", "whsec-old"
NOW = datetime.now(UTC).replace(microsecond=0)


# --- real receivers ------------------------------------------------------------------------------

class Mailbox:
    """An aiosmtpd handler: refuses DATA with 451 ``refuse`` times, bounces bounce@... (and the addresses in
    ``unknown``) at RCPT with 550, refuses the message for reject@... at DATA with 554, refuses the sender
    with 553 while ``sender_refused``, can hold the answer."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.refused = 0
        self.messages: list[Message] = []
        self.asked: list[str] = []
        """Every recipient the server was asked to take."""
        self.unknown: set[str] = set()
        self.sender_refused = False
        self.hold = threading.Event()
        self.hold.set()
        self.port = 0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.sender_refused:
            return "553 5.7.1 sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.asked.append(address)
        if address.startswith("bounce@") or address in self.unknown:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(r.startswith("reject@") for r in envelope.rcpt_tos):
            return "554 5.7.1 message refused"
        if self.refused < self.refuse:
            self.refused += 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        # the message is here, the answer is not (a crash before recording); set from the test's thread
        while not self.hold.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return "250 OK"

    def ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.messages]

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


@dataclass
class Receiver:
    """A real HTTP server: verifies the signature with ``secret`` (the deployment's new one), answers ``status``."""

    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    url: str = ""
    secret: str = SECRET


def http_receiver(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            signed = self.headers.get("Evpark-Signature", "")
            if verify(signed, body, receiver.secret, int(time.time())):
                receiver.received.append({"body": json.loads(body), "event_id": self.headers["Evpark-Event-Id"],
                                          "host": self.headers["Host"], "signature": signed, "raw": body})
            else:
                receiver.bad_signatures += 1
            self.send_response(receiver.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # many senders at once (the bench)
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        box.hold.set()
        controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from http_receiver(Receiver())


# --- the service under test ----------------------------------------------------------------------

@dataclass
class Notifier:
    client: httpx.AsyncClient
    bus: EventBus
    url: str
    app: Any

    async def publish(self, *bodies: EventBody, events: list[Event] | None = None) -> list[Event]:
        sent = events or [Event.of(body, source="test") for body in bodies]
        for event in sent:
            await self.bus.publish(event)
        return sent

    async def rows(self, sql: str) -> list[Any]:
        db = Database(self.url)
        await db.connect()
        try:
            async with db.engine.connect() as conn:
                return list(await conn.execute(text(sql)))
        finally:
            await db.close()

    async def state(self, kind: str, channel: str) -> list[tuple[str, int]]:
        return [(r.state, r.attempts) for r in await self.rows(
            f"SELECT state, attempts FROM notifications WHERE kind = '{kind}' AND channel = '{channel}'")]

    async def claimed(self) -> int:
        return len(await self.rows("SELECT * FROM inbox"))


@dataclass
class Place:
    """Where a service keeps its state between two runs (a restart)."""

    production: bool
    tmp_path: Path
    db_name: str = field(default_factory=lambda: services.fresh_name("evpark_it_"))
    vhost: str = ""

    @property
    def url(self) -> str:
        return (f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}_{{service}}" if self.production
                else f"sqlite+aiosqlite:///{self.tmp_path}/{{service}}.db")

    async def open(self) -> None:
        if self.production:
            self.vhost = await asyncio.to_thread(services.create_rabbitmq_vhost)

    async def drop(self) -> None:
        if not self.production:
            return
        await asyncio.to_thread(services.delete_rabbitmq_vhost, self.vhost)
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{self.db_name}_notifications" WITH (FORCE)')
        finally:
            await connection.close()


@asynccontextmanager
async def running(place: Place, chosen: NotificationSettings, clock: Any = None, *,
                  env: Literal["development", "production"] = "development",
                  resolve: Any = None) -> AsyncIterator[Notifier]:
    """``env="production"`` (with a production place): the production rules too (webhook addresses)."""
    amqp = f"amqp://guest:guest@127.0.0.1:5672/{place.vhost}" if place.production else ""
    settings = CloudSettings(database_url=place.url, amqp_url=amqp, mqtt_port=free_port(), data_dir=place.tmp_path,
                             env=env)
    bus: EventBus = RabbitMQBus(amqp, service="test-producers") if place.production else InProcessBus()
    await bus.start()
    app = build_app(settings, bus=None if place.production else bus, cache=MemoryCache(), notifications=chosen,
                    clock=clock, resolve=resolve)
    try:
        async with app.router.lifespan_context(app):
            trust_test_tokens(app)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://n",
                                         timeout=30) as client:
                yield Notifier(client, bus, place.url.replace("{service}", "notifications"), app)
    finally:
        await bus.close()


@asynccontextmanager
async def started(tmp_path: Path, production: bool, chosen: NotificationSettings,
                  clock: Any = None, **options: Any) -> AsyncIterator[Notifier]:
    place = Place(production, tmp_path)
    await place.open()
    try:
        async with running(place, chosen, clock, **options) as n:
            yield n
    finally:
        await place.drop()


def fast(**overrides: Any) -> NotificationSettings:
    """Retries in tens of milliseconds instead of hours, 4 attempts."""
    base: dict[str, Any] = {"max_attempts": 4, "retry_base_seconds": 0.05, "poll_seconds": 0.05,
                            "lease_seconds": 30, "debounce_seconds": 120, "webhook_secrets": [SECRET, OLD_SECRET]}
    return NotificationSettings(**(base | overrides))


def smtp(box: Mailbox, **overrides: Any) -> NotificationSettings:
    return fast(smtp_host="127.0.0.1", smtp_port=box.port, smtp_security="none", **overrides)


@pytest.fixture(params=["embedded", "production"])
def mode(request: pytest.FixtureRequest) -> bool:
    production = request.param == "production"
    if production:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
    return production


def driver(account_id: str = "acc-driver-a", *, language: str = "en", zone: str = "Europe/Berlin",
           mail: str = "driver-a@example.org") -> AccountRegistered:
    return AccountRegistered(account_id=account_id, email=mail, name="Ada", language=language, time_zone=zone,
                             roles=["driver"])


def operator() -> AccountRegistered:
    return AccountRegistered(account_id="acc-operator-1", email="op1@example.org", name="Olga", roles=["operator"],
                             sites=["site-1"])


TARIFF = TariffChanged(site_id="site-1", currency="EUR", version=1, changed_at=NOW, tariff={
    "currency": "EUR", "elements": [{"components": [
        {"type": "energy", "price": "0.30"}, {"type": "idle", "price": "0.25", "grace_minutes": 12}]}]})


def finished(session: str = "s-1", owner: str = "acc-driver-a") -> EnergyFinished:
    return EnergyFinished(session_id=session, site_id="site-1", transaction_id=7, charger_id="cp-1",
                          owner_id=owner, energy_wh=23_456, started_at=NOW - timedelta(hours=1),
                          energy_finished_at=NOW, trigger="suspended_ev")


async def known(n: Notifier, count: int) -> None:
    async def enough() -> bool:
        return await n.claimed() >= count

    await eventually(enough, what=f"{count} events taken in")


def state_is(n: Notifier, kind: str, channel: str, expected: list[tuple[str, int]]) -> Any:
    async def check() -> bool:
        return await n.state(kind, channel) == expected

    return check


# --- e-mail ---------------------------------------------------------------------------------------

async def test_an_email_refused_twice_arrives_once_after_the_retries(mode: bool, tmp_path: Path,
                                                                    mailbox: Mailbox) -> None:
    mailbox.refuse = 2
    async with started(tmp_path, mode, smtp(mailbox)) as n:
        await n.publish(driver(), TARIFF)
        await known(n, 2)
        await n.publish(finished())
        await eventually(lambda: len(mailbox.messages) == 1, what="the e-mail delivered")
        await eventually(state_is(n, "charging.energy_finished", "email", [("sent", 3)]), what="recorded sent")
        message = mailbox.messages[0]
        assert mailbox.refused == 2
        assert message["To"] == "driver-a@example.org"
        assert message["Subject"] == "Charging complete — please move your car"
        parts = {part.get_content_type(): part.get_payload(decode=True).decode()  # type: ignore[union-attr]
                 for part in message.walk() if not part.is_multipart()}
        assert set(parts) == {"text/plain", "text/html"}
        assert "move within 12 minutes or an idle fee of 0.25 EUR/min starts at" in parts["text/plain"]
        assert "23.46 kWh" in parts["text/plain"] and "<p>Hello Ada" in parts["text/html"]
        await asyncio.sleep(0.3)  # nothing more comes: no second copy after the retries
        assert len(mailbox.messages) == 1


def paid(n: int, account: str = "acc-driver-a") -> PaymentCompleted:
    return PaymentCompleted(payment_id=f"p-{n}", account_id=account, amount=Decimal("4.20"), currency="EUR",
                            completed_at=NOW)


async def email_of(n: Notifier, kind: str, source: str) -> tuple[str, int, str | None] | None:
    rows = await n.rows(f"SELECT state, attempts, last_error FROM notifications WHERE kind = '{kind}' "
                        f"AND channel = 'email' AND source_event_id = '{source}'")
    return (rows[0].state, rows[0].attempts, rows[0].last_error) if rows else None


async def bounce_shown(n: Notifier) -> dict[str, Any] | None:
    answer = await n.client.get("/notifications/preferences", headers=headers("driver_a"))
    assert answer.status_code == 200, answer.text
    return answer.json()["email_bounce"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("address, refusal", [
    ("bounce@example.org", "550 5.1.1 no such user"),  # at RCPT
    ("reject@example.org", "554 5.7.1 message refused"),  # at DATA, a code outside 550-553
])
async def test_a_bounced_address_is_marked_and_skipped_until_the_accounts_email_changes(
        mode: bool, tmp_path: Path, mailbox: Mailbox, address: str, refusal: str) -> None:
    async with started(tmp_path, mode, smtp(mailbox)) as n:
        await n.publish(driver(mail=address))
        await known(n, 1)
        [failing] = await n.publish(PaymentFailed(payment_id="p-1", account_id="acc-driver-a",
                                                  amount=Decimal("12.50"), currency="EUR", reason="declined",
                                                  failed_at=NOW))
        await eventually(state_is(n, "payment.failed", "email", [("failed", 1)]), what="the bounce, not retried")
        failed = (await n.client.get("/notifications/failed", headers=headers("admin"))).json()["items"]
        assert [(f["kind"], f["attempts"], f["last_error"]) for f in failed] == [
            ("payment.failed", 1, f"bounced: {refusal}")]
        assert mailbox.messages == []
        shown = await bounce_shown(n)
        assert shown is not None and (shown["address"], shown["reason"]) == (address, refusal)
        asked = len(mailbox.asked)

        # every later e-mail to the address is skipped, recorded failed; in-app still comes
        [receipt] = await n.publish(paid(2))

        async def skipped() -> bool:
            return await email_of(n, "payment.completed", str(receipt.id)) == (
                "failed", 1, f"address bounced: {refusal}")

        await eventually(skipped, what="the receipt's e-mail skipped")
        inbox = (await n.client.get("/notifications", headers=headers("driver_a"))).json()["items"]
        assert sorted(i["kind"] for i in inbox) == ["payment.completed", "payment.failed"]
        assert len(mailbox.asked) == asked, "the mail server was not asked again"

        # a change of name keeps the mark; a change of address clears it
        same = driver(mail=address.upper()).model_dump() | {"name": "Ada L."}
        await n.publish(AccountUpdated(**same))
        await known(n, 4)
        assert await bounce_shown(n) is not None
        await n.publish(AccountUpdated(**(same | {"email": "ada.new@example.org"})))
        await known(n, 5)
        assert await bounce_shown(n) is None
        await n.publish(paid(3))
        await eventually(lambda: [str(m["To"]) for m in mailbox.messages] == ["ada.new@example.org"],
                         what="the next e-mail, to the new address")
        assert str(failing.id) != str(receipt.id)


async def test_a_refused_sender_is_this_services_setting_retried_and_the_address_not_marked(
        tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.sender_refused = True
    async with started(tmp_path, False, smtp(mailbox)) as n:
        await n.publish(driver())
        await known(n, 1)
        await n.publish(paid(1))
        await eventually(state_is(n, "payment.completed", "email", [("failed", 4)]), what="every attempt, then dead")
        failed = (await n.client.get("/notifications/failed", headers=headers("admin"))).json()["items"]
        assert [f["last_error"] for f in failed] == ["553 5.7.1 sender not allowed"]
        assert await bounce_shown(n) is None


async def test_a_requested_link_still_goes_to_a_bounced_address_and_clears_the_mark_when_it_gets_through(
        mode: bool, tmp_path: Path, mailbox: Mailbox) -> None:
    mailbox.unknown.add("ada@example.org")
    async with started(tmp_path, mode, smtp(mailbox)) as n:
        await n.publish(driver(mail="ada@example.org"))
        await known(n, 1)
        await n.publish(paid(1))
        await eventually(lambda: bounce_shown(n), what="the address marked")
        mailbox.unknown.clear()  # the mailbox exists again; the driver asks for a password reset
        await n.publish(PasswordResetRequested(account_id="acc-driver-a", email="ada@example.org", name="Ada",
                                               url="https://evpark.example/reset?t=abc", expires_at=NOW))
        await eventually(lambda: mailbox.subjects() == ["Reset your password"], what="the link, tried and taken")

        async def cleared() -> bool:
            return await bounce_shown(n) is None

        await eventually(cleared, what="the mark cleared")
        await n.publish(paid(2))
        await eventually(lambda: len(mailbox.messages) == 2, what="the receipt, by e-mail again")


async def test_embedded_email_goes_to_files_in_the_data_directory(tmp_path: Path) -> None:
    async with started(tmp_path, False, fast()) as n:
        await n.publish(PasswordResetRequested(account_id="acc-x", email="x@example.org", name="Xia", language="de",
                                               url="https://evpark.example/reset?t=abc", expires_at=NOW))
        await eventually(lambda: len(list((tmp_path / "mail").glob("*.eml"))) == 1, what="the mail file")
        message = email.message_from_bytes(next((tmp_path / "mail").glob("*.eml")).read_bytes(),
                                           policy=email.policy.default)
        assert message["Subject"] == "Passwort zurücksetzen" and message["To"] == "x@example.org"
        plain = message.get_body(("plain",))
        assert plain is not None and "https://evpark.example/reset?t=abc" in plain.get_content()

        async def link_forgotten() -> bool:
            return [r.variables for r in await n.rows("SELECT variables FROM notifications")] == ["{}"]

        await eventually(link_forgotten, what="the single-use link not kept after sending")


# --- webhooks and push ---------------------------------------------------------------------------

async def test_operator_alerts_reach_a_verifying_webhook_once_debounced(mode: bool, tmp_path: Path,
                                                                       receiver: Receiver) -> None:
    async with started(tmp_path, mode, fast(webhook_urls=[receiver.url])) as n:
        await n.publish(operator())
        await known(n, 1)
        flaps = [ChargerOffline(site_id="site-1", charger_id="cp-1", since=NOW + timedelta(seconds=i))
                 for i in range(4)]
        await n.publish(*flaps)
        await known(n, 5)
        await eventually(lambda: len(receiver.received) == 1, what="the alert at the webhook")
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 1 and receiver.bad_signatures == 0  # a flapping charger: one alert
        hook = receiver.received[0]
        assert hook["body"]["type"] == "charging.charger_offline" and hook["body"]["data"]["charger_id"] == "cp-1"
        assert hook["event_id"] == hook["body"]["id"]
        inbox = await n.client.get("/notifications", headers=headers("operator_1"))
        assert [i["kind"] for i in inbox.json()["items"]] == ["charging.charger_offline"]


async def test_a_webhook_answering_500_is_retried_then_dead_lettered_and_can_be_retried(
        mode: bool, tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 500
    async with started(tmp_path, mode, fast(webhook_urls=[receiver.url])) as n:
        await n.publish(ChargerFaulted(site_id="site-1", charger_id="cp-2", connector_id=1,
                                       error_code="GroundFailure", faulted_at=NOW))
        await eventually(state_is(n, "charging.charger_faulted", "webhook", [("failed", 4)]), what="the dead letter")
        assert len(receiver.received) == 4  # every attempt reached it, signed
        failed = (await n.client.get("/notifications/failed", headers=headers("operator_1"))).json()["items"]
        assert [(f["channel"], f["attempts"], f["last_error"]) for f in failed] == [("webhook", 4, "HTTP 500")]
        assert (await n.client.get("/notifications/failed", headers=headers("operator_2"))).json()["items"] == []
        receiver.status = 204
        retried = await n.client.post(f"/notifications/failed/{failed[0]['id']}/retry", headers=headers("admin"))
        assert retried.status_code == 200, retried.text
        await eventually(state_is(n, "charging.charger_faulted", "webhook", [("sent", 1)]), what="sent")
        assert len({r["event_id"] for r in receiver.received}) == 1  # the same event id every time
        again = await n.client.post(f"/notifications/failed/{failed[0]['id']}/retry", headers=headers("admin"))
        assert again.status_code == 409


async def test_push_through_apprise_json_reaches_a_real_receiver(tmp_path: Path) -> None:
    for hook in http_receiver(Receiver()):
        target = hook.url.replace("http://", "json://")
        async with started(tmp_path, False, fast(apprise_urls=[target])) as n:
            await n.publish(ChargerFaulted(site_id="site-1", charger_id="cp-9", connector_id=0, error_code="Other",
                                           faulted_at=NOW))
            await eventually(state_is(n, "charging.charger_faulted", "push", [("sent", 1)]), what="pushed")
        assert hook.bad_signatures == 1  # apprise posts its own JSON (unsigned): it arrived, once
