"""The store-and-forward MQTT link between the site and the cloud (aiomqtt).

On every (re)connection, with client id ``evpark-edge-<site_id>`` (``evpark-edge-<site_id>-<topic root>`` under
a topic root other than ``evpark``: two deployments sharing a broker must not take over each other's session)
and a persistent session (clean_session=False, so commands sent while the site was offline wait at the broker):

1. subscribe to the site's command topic (QoS 1);
2. publish its retained link status ``online`` (:mod:`mqtt.link`; the CONNECT carries the last
   will ``offline, lost``, and a clean stop publishes ``offline, stopped`` first);
3. queue a SiteHello (through the outbox, so it keeps the seq order);
4. drain the outbox in seq order: publish each envelope with QoS 1 and move its row out of the
   outbox only after the broker's PUBACK. Rows not acknowledged stay and are sent again on the
   next connection; the cloud drops repeats by envelope id;
5. every :data:`HIGH_WATER_EVERY` seconds, queue a ``site.high_water`` (the last ``category_seq``
   of each category, as in the hello).

A PUBACK is not the end of an envelope: a broker that crashes may lose what it acknowledged.
Acknowledged rows are kept (``outbox_sent``, for the retention window of the site file's
``[uplink]``) and queued again when the cloud, which checks each category's ``category_seq``
for holes, asks with a ``site.resend`` command (see mqtt/README.md, "Delivery").

Commands are handled one at a time, in arrival order, and acknowledged (PUBACK) only after
their effect and their result are committed to SQLite, so a crash in between makes the
broker deliver the command again (applying it is idempotent).

A lost connection is retried with jittered exponential back-off (:class:`edge.backoff.Backoff`, capped at
10 s by default); the back-off starts over after a connection that lasted :data:`STABLE_AFTER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import uuid
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.backoff import Backoff
from edge.metrics import MQTT_CONNECTED, OUTBOX_PUBLISHED
from edge.site import Site
from edge.store import OutboxRow
from mqtt.client import ack, enable_manual_ack
from mqtt.envelope import MalformedMessage, decode_command, envelope_bytes
from mqtt.link import LinkStatus
from mqtt.payloads import CommandStatus
from mqtt.topics import QOS, RETAINED_TYPES, Topics

log = structlog.get_logger(__name__)

STABLE_AFTER = 10.0
"""Seconds a connection must last before the reconnect back-off starts over."""

GOODBYE_TIMEOUT = 2.0
"""Seconds a stopping edge waits for the broker to take its "offline, stopped" status."""

HIGH_WATER_EVERY = 60.0
"""Seconds between two ``site.high_water`` reports while connected."""

_CHUNK = 256
"""Outbox rows published per turn of the event loop (a window is published in chunks)."""


def uplink_client_id(site_id: str, topic_root: str = "evpark") -> str:
    """The edge's MQTT client id. A broker lets one connection per client id live and hands it that id's
    persistent session (its subscriptions, its queued commands), so two edges of the same site id under
    different topic roots (staging and production on one broker, or tests side by side) must not share one.
    The default root keeps the id the edge has always used, so an upgraded site resumes its session."""
    return f"evpark-edge-{site_id}" if topic_root == "evpark" else f"evpark-edge-{site_id}-{topic_root}"


class Uplink:
    """Runs until cancelled: connect, subscribe, hello, drain and receive; reconnect on loss."""

    def __init__(self, site: Site, *, site_id: str, host: str, port: int, topic_root: str = "evpark",
                 username: str | None = None, password: str | None = None, tls: bool = False,
                 edge_version: str = "0", keepalive: int = 30, window: int = 1024,
                 backoff: Backoff | None = None, high_water_every: float = HIGH_WATER_EVERY) -> None:
        self._site = site
        self._store = site.store
        self.site_id = site_id
        self.client_id = uplink_client_id(site_id, topic_root)
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
        self._high_water_every = high_water_every
        self._connected_at: float | None = None
        self._routes: dict[str, tuple[str, bool]] = {}
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
        # The link's state for the cloud (mqtt.link): the will says "lost" if this connection ends
        # without a DISCONNECT; "online" goes out once connected, "stopped" before a clean stop.
        status = LinkStatus.for_connection(edge_version=self._edge_version)
        status_topic = self._topics.status(self.site_id)
        client = aiomqtt.Client(
            self._host, self._port, identifier=self.client_id, clean_session=False,
            username=self._username, password=self._password, tls_context=tls_context,
            keepalive=self._keepalive,
            will=aiomqtt.Will(status_topic, status.offline("lost").to_bytes(), qos=QOS, retain=True),
            # No paho limit: the relay's window bounds what is in flight. paho's default (20) would queue
            # the rest of a window, and rescan that queue at every PUBACK.
            max_inflight_messages=0,
        )
        enable_manual_ack(client)
        async with client:
            self._connected_at = asyncio.get_running_loop().time()
            await client.subscribe(self._topics.down(self.site_id), qos=QOS)
            MQTT_CONNECTED.set(1)
            self.connected.set()
            log.info("uplink.connected", broker=f"{self._host}:{self._port}", client_id=self.client_id,
                     outbox_backlog=self._store.outbox_backlog)
            await client.publish(status_topic, status.to_bytes(), qos=QOS, retain=True)
            await self._site.say_hello(self._edge_version)
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._drain(client), name=f"uplink.drain:{self.site_id}")
                    tasks.create_task(self._receive(client), name=f"uplink.receive:{self.site_id}")
                    tasks.create_task(self._report_high_water(), name=f"uplink.high_water:{self.site_id}")
            except asyncio.CancelledError:
                await self._say_goodbye(client, status_topic, status.offline("stopped"))
                raise

    async def _say_goodbye(self, client: aiomqtt.Client, topic: str, status: LinkStatus) -> None:
        """Tell the cloud the edge stops (a clean DISCONNECT discards the will), bounded: the edge
        is shutting down. If the connection is already gone the broker publishes the will instead;
        if the broker does not take the status within GOODBYE_TIMEOUT, the cloud keeps the site
        online until the edge's next connection (logged as uplink.goodbye_failed)."""
        try:
            async with asyncio.timeout(GOODBYE_TIMEOUT):
                await client.publish(topic, status.to_bytes(), qos=QOS, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning("uplink.goodbye_failed", error=str(exc) or repr(exc))

    # --- edge → cloud -------------------------------------------------------------------

    async def _report_high_water(self) -> None:
        while True:
            await asyncio.sleep(self._high_water_every)
            await self._site.report_high_water()

    async def _drain(self, client: aiomqtt.Client) -> None:
        wakeup = self._store.outbox_changed
        pubacks = _Pubacks(client)
        while True:
            wakeup.clear()  # before reading: a commit after this point sets it again
            rows = await self._store.outbox_batch(self._window, sending=True)
            if not rows:
                await wakeup.wait()
                continue
            # Publish a window of rows back to back (paho sends them in call order on one TCP
            # connection) and wait for all PUBACKs; forget only the acknowledged ones.
            acked, error = await self._publish(client, pubacks, rows)
            await self._store.delete_outbox(acked)
            OUTBOX_PUBLISHED.inc(len(acked))
            if error is not None:
                raise error

    async def _publish(self, client: aiomqtt.Client, pubacks: _Pubacks,
                       rows: list[OutboxRow]) -> tuple[list[int], BaseException | None]:
        """Publish ``rows`` in order with QoS 1; the seqs the broker acknowledged, and the first error.

        The envelope is written from the stored body as it is (:func:`mqtt.envelope.envelope_bytes`): its
        body model validated it when the row was written, and a row that a later contract would refuse
        still goes out, for the cloud to park, rather than wedge the outbox.
        """
        window = pubacks.open()
        error: BaseException | None = None
        paho = client._client
        for start in range(0, len(rows), _CHUNK):
            if start:
                await asyncio.sleep(0)  # let the chargers' messages (and the first PUBACKs) in
            for row in rows[start:start + _CHUNK]:
                try:
                    topic, retain = self._route(row.type)
                    payload = envelope_bytes(self.site_id, row.seq, row.type, row.body, id=row.envelope_id,
                                             ts=row.ts, store_id=self._store.store_id,
                                             category_seq=row.category_seq)
                    info = paho.publish(topic, payload, QOS, retain)
                except Exception as exc:  # a row that cannot be sent: the ones before it still count
                    error = exc
                    break
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    error = aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                    break
                window.expect(info.mid, row.seq)
            _quick_ack(paho)
            if error is not None:  # what was published before the failed row still counts
                break
        try:
            async with asyncio.timeout(client.timeout):
                await window.all_acknowledged()
        except TimeoutError:
            error = error or aiomqtt.MqttError("Operation timed out")
        return window.acked, error

    def _route(self, message_type: str) -> tuple[str, bool]:
        """The topic and retain flag of an envelope type (cached: one per type, not per row)."""
        route = self._routes.get(message_type)
        if route is None:
            route = self._routes[message_type] = (self._topics.up_for_type(self.site_id, message_type),
                                                  message_type in RETAINED_TYPES)
        return route

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


def _quick_ack(paho: mqtt.Client) -> None:
    """Have the broker's PUBACKs for this window acknowledged at once.

    A broker that leaves Nagle on (Mosquitto without ``set_tcp_nodelay``) holds back every PUBACK
    after the first until that one is ACKed, which our kernel delays by up to 40 ms when it has
    nothing to send: quick-ACK mode, re-armed for every window, avoids that stall. (Writing paho's
    queue from here, instead of leaving it to aiomqtt's writer callback, was tried and stalled
    deliveries for seconds after a broker restart: aiomqtt owns the socket's writes.)
    """
    sock = paho.socket()
    if _TCP_QUICKACK is not None and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _Window:
    """The PUBACKs of one window of relay publishes."""

    def __init__(self) -> None:
        self.waiting: dict[int, int] = {}  # paho message id -> outbox seq
        self.acked: list[int] = []
        self._done: asyncio.Future[None] | None = None

    def expect(self, mid: int, seq: int) -> None:
        self.waiting[mid] = seq

    def acknowledged(self, mid: int, ok: bool) -> bool:
        """Record the broker's answer to ``mid``; False when it is not one of this window's."""
        seq = self.waiting.pop(mid, None)
        if seq is None:
            return False
        if ok:
            self.acked.append(seq)
        if not self.waiting and self._done is not None and not self._done.done():
            self._done.set_result(None)
        return True

    async def all_acknowledged(self) -> None:
        if self.waiting:
            self._done = asyncio.get_running_loop().create_future()
            await self._done


class _Pubacks:
    """Hands the relay's PUBACKs to its open :class:`_Window`, straight from paho's on_publish.

    aiomqtt's ``publish`` costs a task, an Event, a ``wait_for`` and a scan of every pending call per
    message, and the relay waits for hundreds at a time; it publishes on the paho client underneath
    instead (as :mod:`mqtt.client` does for manual acks). PUBACKs of any other publish still reach
    aiomqtt's own callback. paho calls on_publish from ``loop_read``, which aiomqtt runs on the event loop.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client
        self._aiomqtt_on_publish: Callable[..., object] | None = self._paho.on_publish
        self._window = _Window()
        self._paho.on_publish = self._on_publish

    def open(self) -> _Window:
        self._window = _Window()
        return self._window

    def _on_publish(self, paho: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Properties) -> None:
        # A failure reason code exists in MQTT 5 only; such a row stays in the outbox.
        if not self._window.acknowledged(mid, not reason_code.is_failure) and self._aiomqtt_on_publish is not None:
            self._aiomqtt_on_publish(paho, userdata, mid, reason_code, properties)


def _readable_id(payload: bytes | str) -> tuple[uuid.UUID | None, str]:
    """The id and type of a command that failed validation, when they can still be read."""
    try:
        data = json.loads(payload)
        command_id = uuid.UUID(str(data["id"]))
    except (ValueError, TypeError, KeyError):
        return None, "unknown"
    command_type = data.get("type") if isinstance(data.get("type"), str) else "unknown"
    return command_id, command_type
