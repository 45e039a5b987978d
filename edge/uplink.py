"""The store-and-forward MQTT link between the site and the cloud (aiomqtt).

On every (re)connection, with client id ``evpark-edge-<site_id>`` and a persistent session
(clean_session=False, so commands sent while the site was offline wait at the broker):

1. subscribe to the site's command topic (QoS 1);
2. queue a SiteHello (through the outbox, so it keeps the seq order);
3. drain the outbox in seq order: publish each envelope with QoS 1 and delete its row only
   after the broker's PUBACK. Rows not acknowledged stay and are sent again on the next
   connection; the cloud drops repeats by envelope id.

Commands are handled one at a time, in arrival order, and acknowledged (PUBACK) only after
their effect and their result are committed to SQLite, so a crash in between makes the
broker deliver the command again (applying it is idempotent).

A lost connection is retried with jittered exponential back-off (:class:`Backoff`, capped at
10 s by default); the back-off starts over after a connection that lasted :data:`STABLE_AFTER`.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import uuid
from typing import Any

import aiomqtt
import structlog

from edge.metrics import MQTT_CONNECTED, OUTBOX_PUBLISHED
from edge.site import Site
from edge.store import OutboxRow
from mqtt.client import ack, enable_manual_ack
from mqtt.envelope import Envelope, MalformedMessage, decode_command, parse_body
from mqtt.payloads import CommandStatus
from mqtt.topics import QOS, RETAINED_TYPES, Topics

log = structlog.get_logger(__name__)

STABLE_AFTER = 10.0
"""Seconds a connection must last before the reconnect back-off starts over."""


class Backoff:
    """Exponential back-off with "equal jitter": half fixed, half random, capped."""

    def __init__(self, initial: float = 0.5, cap: float = 10.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2 ** self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not crypto


class Uplink:
    """Runs until cancelled: connect, subscribe, hello, drain and receive; reconnect on loss."""

    def __init__(self, site: Site, *, site_id: str, host: str, port: int, topic_root: str = "evpark",
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 edge_version: str = "0", keepalive: int = 30, window: int = 256,
                 backoff: Backoff | None = None) -> None:
        self._site = site
        self._store = site.store
        self.site_id = site_id
        self.client_id = f"evpark-edge-{site_id}"
        self._host = host
        self._port = port
        self._topics = Topics(topic_root)
        self._username = username
        self._password = password
        self._tls = tls
        self._edge_version = edge_version
        self._keepalive = keepalive
        self._window = window
        self._backoff = backoff or Backoff()
        self._connected_at: float | None = None
        self.connected = asyncio.Event()
        """Set while connected and subscribed; tests and health checks may wait on it."""

    async def run(self) -> None:
        tls_context = ssl.create_default_context() if self._tls else None
        loop = asyncio.get_running_loop()
        while True:
            self._connected_at = None
            try:
                await self._session(tls_context)
            except* aiomqtt.MqttError as group:
                log.warning("uplink.disconnected", broker=f"{self._host}:{self._port}",
                            error="; ".join(str(e) for e in group.exceptions))
            finally:
                self.connected.clear()
                MQTT_CONNECTED.set(0)
            if self._connected_at is not None and loop.time() - self._connected_at >= STABLE_AFTER:
                # Start over only after a connection that lasted: a broker that accepts and then
                # drops us at once (ACL, a second edge with our client id) must not get hammered.
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("uplink.reconnecting", in_seconds=round(delay, 2))
            await asyncio.sleep(delay)

    async def _session(self, tls_context: ssl.SSLContext | None) -> None:
        client = aiomqtt.Client(
            self._host, self._port, identifier=self.client_id, clean_session=False,
            username=self._username, password=self._password, tls_context=tls_context,
            keepalive=self._keepalive,
        )
        client.pending_calls_threshold = self._window + 8  # our publish window is intended
        enable_manual_ack(client)
        async with client:
            self._connected_at = asyncio.get_running_loop().time()
            await client.subscribe(self._topics.down(self.site_id), qos=QOS)
            MQTT_CONNECTED.set(1)
            self.connected.set()
            log.info("uplink.connected", broker=f"{self._host}:{self._port}", client_id=self.client_id,
                     outbox_backlog=self._store.outbox_backlog)
            await self._site.say_hello(self._edge_version)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._drain(client), name=f"uplink.drain:{self.site_id}")
                tasks.create_task(self._receive(client), name=f"uplink.receive:{self.site_id}")

    # --- edge → cloud -------------------------------------------------------------------

    async def _drain(self, client: aiomqtt.Client) -> None:
        wakeup = self._store.outbox_changed
        while True:
            wakeup.clear()  # before reading: a commit after this point sets it again
            rows = await self._store.outbox_batch(self._window)
            if not rows:
                await wakeup.wait()
                continue
            # Publish a window of rows back to back (paho sends them in call order on one TCP
            # connection) and wait for all PUBACKs; forget only the acknowledged ones.
            results = await asyncio.gather(*(self._publish(client, row) for row in rows), return_exceptions=True)
            acked = [row.seq for row, result in zip(rows, results, strict=True) if result is None]
            await self._store.delete_outbox(acked)
            OUTBOX_PUBLISHED.inc(len(acked))
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _publish(self, client: aiomqtt.Client, row: OutboxRow) -> None:
        try:
            envelope = Envelope.wrap(self.site_id, row.seq, parse_body(row.type, row.body), id=row.envelope_id,
                                     ts=row.ts)
        except MalformedMessage as exc:
            # The body was valid when it was written; a contract change since must not wedge the
            # outbox. Send it as it is and let the cloud park it.
            log.error("outbox.row_no_longer_valid", seq=row.seq, type=row.type, error=str(exc))
            envelope = Envelope(id=row.envelope_id, site_id=self.site_id, seq=row.seq, ts=row.ts, type=row.type,
                                body=row.body)
        await client.publish(self._topics.up_for_type(self.site_id, row.type), envelope.to_bytes(), qos=QOS,
                             retain=row.type in RETAINED_TYPES)

    # --- cloud → edge -------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._handle_command(message.payload)
            # Acknowledge in receive order (MQTT 3.1.1 §4.6), only once the effect and the result
            # are committed. If that commit fails, the exception ends this connection without the
            # PUBACK and the broker delivers the command again on the next one.
            ack(client, message)

    async def _handle_command(self, payload: Any) -> None:
        """Apply one command and queue its result. Raises only if nothing could be stored."""
        if isinstance(payload, bytes | bytearray):
            payload = bytes(payload)
        elif not isinstance(payload, str):
            log.warning("command.malformed", error="empty or non-text payload")
            return
        try:
            command = decode_command(payload)
        except MalformedMessage as exc:
            command_id, command_type = _readable_id(payload)
            log.warning("command.malformed", error=str(exc), command_id=str(command_id) if command_id else None)
            if command_id is not None:
                await self._site.answer_command(command_id, command_type, CommandStatus.REJECTED,
                                                f"malformed command: {exc}")
            return
        try:
            await self._site.handle_command(command)
        except Exception as exc:
            log.exception("command.failed", command_id=str(command.id), command_type=command.type)
            await self._site.answer_command(command.id, command.type, CommandStatus.FAILED, f"failed: {exc!r}")


def _readable_id(payload: bytes | str) -> tuple[uuid.UUID | None, str]:
    """The id and type of a command that failed validation, when they can still be read."""
    try:
        data = json.loads(payload)
        command_id = uuid.UUID(str(data["id"]))
    except (ValueError, TypeError, KeyError):
        return None, "unknown"
    command_type = data.get("type") if isinstance(data.get("type"), str) else "unknown"
    return command_id, command_type
