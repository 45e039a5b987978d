"""The store-and-forward uplink against a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import aiomqtt
import pytest

from edge import Edge, EdgeSettings
from edge.uplink import uplink_client_id
from mqtt.envelope import Command, CommandResult, Envelope, decode_envelope
from mqtt.payloads import AuthListEntry, AuthListUpdate, CommandStatus, IdTagStatus
from mqtt.topics import QOS, Topics
from tests.support import services
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration


class Subscriber:
    """Collects every envelope of one site, reconnecting (same session) after a broker restart."""

    def __init__(self, port: int, topic: str, *, persistent: bool = False) -> None:
        self.port = port
        self.topic = topic
        self.client_id = services.fresh_name("evpark-test-sub-")
        self.persistent = persistent
        self.envelopes: list[Envelope] = []
        self.subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            while True:
                try:
                    async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.client_id,
                                              clean_session=not self.persistent) as client:
                        await client.subscribe(self.topic, qos=QOS)
                        self.subscribed.set()
                        async for message in client.messages:
                            assert isinstance(message.payload, bytes)
                            self.envelopes.append(decode_envelope(message.payload))
                            self._changed.set()
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.1)
        finally:
            self._changed.set()  # a waiter sees at once that this task ended

    def check_alive(self) -> None:
        """Fail loudly if the collecting task died: what it collected would be stale."""
        if self.task is not None and self.task.done() and not self.task.cancelled():
            error = self.task.exception()
            raise AssertionError(f"the test subscriber died: {error!r}") from error

    async def wait_for(self, predicate: Callable[[list[Envelope]], bool], within: float = 15) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate(self.envelopes):
                    self.check_alive()
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            self.check_alive()
            got = [(e.seq, e.type, e.body.get("info")) for e in self.envelopes]
            raise AssertionError(f"condition not met within {within} s; received {len(got)}: {got}") from None

    def unique(self) -> list[Envelope]:
        """Envelopes in arrival order, repeats (same id, QoS 1 at least once) dropped."""
        seen: set[object] = set()
        unique = []
        for envelope in self.envelopes:
            if envelope.id not in seen:
                seen.add(envelope.id)
                unique.append(envelope)
        return unique


@contextlib.asynccontextmanager
async def subscribed(port: int, topic: str, *, persistent: bool = False) -> AsyncIterator[Subscriber]:
    subscriber = Subscriber(port, topic, persistent=persistent)
    task = subscriber.task = asyncio.create_task(subscriber.run(), name="test-subscriber")
    try:
        ready = asyncio.ensure_future(subscriber.subscribed.wait())
        try:
            async with asyncio.timeout(20):
                await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        subscriber.check_alive()
        assert subscriber.subscribed.is_set()
        yield subscriber
        subscriber.check_alive()  # what the test looked at was collected by a live task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if persistent:
            await _forget_session(port, subscriber.client_id)


async def _forget_session(port: int, client_id: str) -> None:
    """Drop a persistent session from the broker (connect once with clean_session=True)."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=True):
            pass


@pytest.fixture
def site_on_shared_broker(make_settings: Callable[..., EdgeSettings], mosquitto: tuple[str, int],
                          topic_root: str) -> EdgeSettings:
    return make_settings(mqtt_host=mosquitto[0], mqtt_port=mosquitto[1], mqtt_topic_root=topic_root)


@pytest.fixture
async def forget_edge_session(site_on_shared_broker: EdgeSettings) -> AsyncIterator[None]:
    yield
    await _forget_session(site_on_shared_broker.mqtt_port, uplink_client_id(site_on_shared_broker.site_id,
                                                                              site_on_shared_broker.mqtt_topic_root))


async def produce_status_events(edge: Edge, charger_id: str, first: int, count: int, pause: float = 0) -> None:
    for n in range(first, first + count):
        await edge.site.connector_status(charger_id, 1, status="Charging", error_code="NoError",
                                         info=f"event-{n}", timestamp=None)
        if pause:
            await asyncio.sleep(pause)


async def outbox_drained(edge: Edge, within: float = 20) -> None:
    """Wait until every outbox row was acknowledged by the broker (and so deleted).

    The edge adds rows of its own at any time (the open-sessions report and the high-water
    marks after connecting), so "drained" is one moment when nothing was waiting, not a state
    asserted again afterwards."""
    async def drained() -> bool:
        return not await edge.store.outbox_batch() and edge.store.outbox_backlog == 0

    await poll_until(drained, within=within)


def infos(envelopes: list[Envelope]) -> list[str]:
    return [e.body["info"] for e in envelopes if e.type == "charger.status"]


async def test_outbox_is_kept_while_offline_then_drained_in_seq_order_and_deleted_after_puback(
        site_on_shared_broker: EdgeSettings, offline_port: int, forget_edge_session: None) -> None:
    online = site_on_shared_broker
    offline = online.model_copy(update={"mqtt_port": offline_port})
    async with Edge(offline) as edge:
        await edge.store.register_charger("CP-1")
        await produce_status_events(edge, "CP-1", 0, 40)
        await asyncio.sleep(0.3)
        assert edge.store.outbox_backlog == 40
        assert len(await edge.store.outbox_batch(1000)) == 40  # nothing is dropped without a PUBACK
    topic = f"{online.mqtt_topic_root}/sites/{online.site_id}/up/#"
    async with subscribed(online.mqtt_port, topic) as subscriber, Edge(online) as edge:
        # The hello's PUBACK (its row deleted) does not mean the subscriber has it yet: wait for it too.
        await subscriber.wait_for(lambda envelopes: len(infos(envelopes)) == 40
                                  and any(e.type == "site.hello" for e in envelopes))
        await outbox_drained(edge)  # the hello's row goes once its PUBACK is in

    received = subscriber.unique()
    assert infos(received) == [f"event-{n}" for n in range(40)]
    seqs = [e.seq for e in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert received[-1].type == "site.hello"  # queued on connect, after the backlog
    assert received[-1].body["authlist_version"] == 0
    assert {e.site_id for e in received} == {online.site_id}


async def test_authlist_update_command_is_applied_and_answered(site_on_shared_broker: EdgeSettings,
                                                               forget_edge_session: None) -> None:
    settings = site_on_shared_broker
    topics = Topics(settings.mqtt_topic_root)
    update = AuthListUpdate(version=3, full=True, entries=[AuthListEntry(id_tag="TAG-1", status=IdTagStatus.ACCEPTED)])
    command = Command.new(settings.site_id, update)
    async with subscribed(settings.mqtt_port, topics.up(settings.site_id, "result")) as subscriber, \
            Edge(settings) as edge:
        async with asyncio.timeout(20):
            await edge.uplink.connected.wait()
        async with aiomqtt.Client("127.0.0.1", settings.mqtt_port) as cloud:
            await cloud.publish(topics.down(settings.site_id), command.to_bytes(), qos=QOS)
            await cloud.publish(topics.down(settings.site_id), command.to_bytes(), qos=QOS)  # redelivery
        await subscriber.wait_for(lambda envelopes: len(envelopes) >= 2)
        assert await edge.store.authlist_version() == 3
        assert [e.id_tag for e in await edge.store.auth_entries()] == ["TAG-1"]

    results = [CommandResult.model_validate(e.body) for e in subscriber.unique()]
    assert [(r.command_id, r.status) for r in results] == [(command.id, CommandStatus.ACCEPTED)] * 2
    assert results[0].data == {"authlist_version": 3}


async def test_expired_and_malformed_commands_are_answered_and_not_applied(
        site_on_shared_broker: EdgeSettings, forget_edge_session: None) -> None:
    settings = site_on_shared_broker
    topics = Topics(settings.mqtt_topic_root)
    stale = Command.new(settings.site_id,
                        AuthListUpdate(version=5, full=True,
                                       entries=[AuthListEntry(id_tag="TAG-1", status=IdTagStatus.ACCEPTED)]),
                        ttl=timedelta(minutes=1), now=datetime.now(UTC) - timedelta(minutes=2))
    malformed = b'{"id": "0b7f3c1e-4a59-4f0e-9d2a-0b6f6a1c9e11", "type": "authlist.update", "body": {}}'
    async with subscribed(settings.mqtt_port, topics.up(settings.site_id, "result")) as subscriber, \
            Edge(settings) as edge:
        async with asyncio.timeout(20):
            await edge.uplink.connected.wait()
        async with aiomqtt.Client("127.0.0.1", settings.mqtt_port) as cloud:
            await cloud.publish(topics.down(settings.site_id), stale.to_bytes(), qos=QOS)
            await cloud.publish(topics.down(settings.site_id), b"\x00 not json", qos=QOS)
            await cloud.publish(topics.down(settings.site_id), malformed, qos=QOS)
        await subscriber.wait_for(lambda envelopes: len(envelopes) >= 2)
        await asyncio.sleep(0.2)
        assert await edge.store.authlist_version() == 0
        assert await edge.store.auth_entries() == []

    results = [CommandResult.model_validate(e.body) for e in subscriber.unique()]
    assert [(str(r.command_id), r.status) for r in results] == [
        (str(stale.id), CommandStatus.EXPIRED), ("0b7f3c1e-4a59-4f0e-9d2a-0b6f6a1c9e11", CommandStatus.REJECTED)]


async def test_no_event_is_lost_or_reordered_when_the_broker_restarts(
        make_settings: Callable[..., EdgeSettings], private_mosquitto: services.PrivateMosquitto,
        topic_root: str) -> None:
    # Mosquitto started as root drops to the `mosquitto` user, which cannot write the fixture's
    # 0700 temp folder: its persistence (and so the subscriber's session) would not survive the
    # restart. Let it write, so the test proves what it claims rather than a race.
    private_mosquitto.folder.chmod(0o777)
    settings = make_settings(mqtt_port=private_mosquitto.port, mqtt_topic_root=topic_root)
    topic = f"{topic_root}/sites/{settings.site_id}/up/#"
    async with subscribed(private_mosquitto.port, topic, persistent=True) as subscriber, \
            Edge(settings) as edge:
        await edge.store.register_charger("CP-1")
        async with asyncio.timeout(20):
            await edge.uplink.connected.wait()
        await produce_status_events(edge, "CP-1", 0, 30, pause=0.01)
        await asyncio.to_thread(private_mosquitto.stop)
        await produce_status_events(edge, "CP-1", 30, 30, pause=0.01)  # the site keeps working offline
        assert edge.store.outbox_backlog > 0
        await asyncio.to_thread(private_mosquitto.start)
        await produce_status_events(edge, "CP-1", 60, 30, pause=0.01)
        await subscriber.wait_for(lambda envelopes: len(set(infos(envelopes))) == 90, within=30)

    received = subscriber.unique()
    assert infos(received) == [f"event-{n}" for n in range(90)]
    seqs = [e.seq for e in received]
    assert seqs == sorted(seqs)
    assert sum(e.type == "site.hello" for e in received) >= 2  # one per connection


async def test_a_command_is_acknowledged_once_applied_so_a_restarted_edge_does_not_get_it_again(
        site_on_shared_broker: EdgeSettings, forget_edge_session: None) -> None:
    settings = site_on_shared_broker
    topics = Topics(settings.mqtt_topic_root)
    command = Command.new(settings.site_id, AuthListUpdate(version=1, full=True, entries=[]))
    async with subscribed(settings.mqtt_port, f"{settings.mqtt_topic_root}/sites/{settings.site_id}/up/#") \
            as subscriber:
        async with Edge(settings) as edge:
            async with asyncio.timeout(20):
                await edge.uplink.connected.wait()
            async with aiomqtt.Client("127.0.0.1", settings.mqtt_port) as cloud:
                await cloud.publish(topics.down(settings.site_id), command.to_bytes(), qos=QOS)
            await subscriber.wait_for(lambda envelopes: any(e.type == "command.result" for e in envelopes))
        async with Edge(settings) as edge:  # same client id, same persistent session
            await subscriber.wait_for(lambda envelopes: sum(e.type == "site.hello" for e in envelopes) == 2)
            await asyncio.sleep(0.5)

    assert sum(e.type == "command.result" for e in subscriber.unique()) == 1


async def test_outbox_rows_stay_until_the_broker_acknowledges_them(
        make_settings: Callable[..., EdgeSettings], private_mosquitto: services.PrivateMosquitto,
        topic_root: str) -> None:
    settings = make_settings(mqtt_port=private_mosquitto.port, mqtt_topic_root=topic_root)
    process = private_mosquitto.process
    assert process is not None
    async with subscribed(private_mosquitto.port, f"{topic_root}/sites/{settings.site_id}/up/charger") \
            as subscriber, Edge(settings) as edge:
        await edge.store.register_charger("CP-1")
        async with asyncio.timeout(20):
            await edge.uplink.connected.wait()
        await outbox_drained(edge)  # the hello
        process.send_signal(signal.SIGSTOP)  # the connection stays up, but no PUBACK comes
        try:
            await produce_status_events(edge, "CP-1", 0, 5)
            await asyncio.sleep(0.5)
            assert [row.body.get("info") for row in await edge.store.outbox_batch()
                    if row.type == "charger.status"] == [f"event-{n}" for n in range(5)]
        finally:
            process.send_signal(signal.SIGCONT)
        await subscriber.wait_for(lambda envelopes: len(infos(envelopes)) == 5)
        await outbox_drained(edge)
