"""What only the RabbitMQ adapter has: a wire format, undecodable bodies, and a connection to lose."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import aio_pika
import pytest
from yarl import URL

from cloud.platform.ports import Event
from cloud.platform.rabbitmq import ERROR_HEADER, RabbitMQBus
from tests.integration.platform.bus_harness import RabbitMQHarness, Recorder, eventually

pytestmark = pytest.mark.integration


def close_connections_of_vhost(url: str) -> None:
    """Make the broker drop every connection of this test's own vhost (``-p``: nobody else's)."""
    vhost = URL(url).path.lstrip("/")
    assert vhost.startswith("evpark-test-"), "refusing to close connections outside a test vhost"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found")
    subprocess.run([ctl, "-q", "close_all_connections", "-p", vhost, "evpark test: simulated outage"],
                   check=True, capture_output=True, timeout=30)


async def publish_until_accepted(rabbitmq_bus: RabbitMQBus, event: Event, within: float = 20.0) -> None:
    """What the outbox relay does while the broker is away: keep the event, try again."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await rabbitmq_bus.publish(event)
            return
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_an_event_goes_out_persistent_with_its_id_name_and_json_body(rabbitmq: RabbitMQHarness) -> None:
    consumer = await rabbitmq.bus()
    await consumer.subscribe("q.wire", ["vehicle.registered"], Recorder())
    await rabbitmq.stop(consumer)
    publisher = await rabbitmq.bus()
    event = Event(name="vehicle.registered", source="vehicles", payload={"vehicle_id": "veh-9"})

    await publisher.publish(event)

    assert await rabbitmq.depth("q.wire") == 1, "confirmed means queued"
    connection = await aio_pika.connect(rabbitmq.url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("q.wire", durable=True)
        message = await queue.get(no_ack=True)
        exchange = await channel.declare_exchange("vehicle.events", aio_pika.ExchangeType.TOPIC, passive=True)
    finally:
        await connection.close()
    assert exchange.name == "vehicle.events"
    assert message.exchange == "vehicle.events" and message.routing_key == "vehicle.registered"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (message.message_id, message.type, message.content_type) == (
        str(event.id), "vehicle.registered", "application/json")
    assert Event.model_validate_json(message.body) == event


async def test_an_undecodable_message_is_parked_with_its_error_and_never_reaches_the_handler(
        rabbitmq: RabbitMQHarness) -> None:
    bus = await rabbitmq.bus()
    recorder = Recorder()
    await bus.subscribe("q.garbage", ["vehicle.*"], recorder)
    connection = await aio_pika.connect(rabbitmq.url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange("vehicle.events")
        await exchange.publish(aio_pika.Message(b'{"name": 42', message_id="raw-1"), routing_key="vehicle.oops")
    finally:
        await connection.close()

    await eventually(lambda: rabbitmq.parked("q.garbage"), what="the message parked")

    [parked] = await rabbitmq.parked("q.garbage")
    assert parked.body == b'{"name": 42' and parked.event_id == "raw-1"
    assert "undecodable event" in parked.error
    assert recorder.calls == []
    follow_up = Event(name="vehicle.registered")
    await bus.publish(follow_up)
    await eventually(lambda: recorder.handled == [follow_up], what="the next event handled")


async def test_a_consumer_keeps_consuming_after_the_broker_drops_its_connection(rabbitmq: RabbitMQHarness) -> None:
    bus = await rabbitmq.bus()
    recorder = Recorder()
    await bus.subscribe("q.survivor", ["charging.*"], recorder)
    before = Event(name="charging.session_started")
    await bus.publish(before)
    await eventually(lambda: recorder.handled == [before], what="the first event")

    await asyncio.to_thread(close_connections_of_vhost, rabbitmq.url)  # returns once they are closed

    after = Event(name="charging.session_completed")
    await publish_until_accepted(bus, after)
    await eventually(lambda: recorder.handled == [before, after], within=20, what="the event after the outage")
    assert await bus.healthy()


async def test_an_event_in_flight_when_the_connection_drops_is_delivered_again(rabbitmq: RabbitMQHarness) -> None:
    bus = await rabbitmq.bus()
    started = asyncio.Event()
    calls: list[Event] = []

    async def slow_handler(event: Event) -> None:
        calls.append(event)
        if len(calls) == 1:
            started.set()
            await asyncio.sleep(60)  # still working when the connection goes

    await bus.subscribe("q.in-flight", ["payment.*"], slow_handler)
    event = Event(name="payment.completed")
    await bus.publish(event)
    await asyncio.wait_for(started.wait(), 10)

    await asyncio.to_thread(close_connections_of_vhost, rabbitmq.url)

    await eventually(lambda: len(calls) == 2, within=20, what="the redelivery")
    assert calls[1].id == event.id
    await rabbitmq.stop(bus)
    assert await rabbitmq.depth("q.in-flight") == 0, "acked after the redelivery was handled"
    assert await rabbitmq.parked("q.in-flight") == []


async def test_a_parked_message_carries_the_error_header(rabbitmq: RabbitMQHarness) -> None:
    bus = await rabbitmq.bus(max_attempts=2)
    await bus.subscribe("q.headers", ["vehicle.*"], Recorder(always_fail=True))
    await bus.publish(Event(name="vehicle.registered"))

    await eventually(lambda: rabbitmq.parked("q.headers"), what="the message parked")

    connection = await aio_pika.connect(rabbitmq.url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("q.headers.parked", durable=True)
        message = await queue.get(no_ack=True)
    finally:
        await connection.close()
    assert message.headers["x-evpark-attempts"] == 2
    assert message.headers["x-evpark-queue"] == "q.headers"
    assert "handler failed 2 times" in str(message.headers[ERROR_HEADER])
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


async def test_the_messages_waiting_for_a_stalled_consumer_are_its_lag(rabbitmq: RabbitMQHarness) -> None:
    bus = await rabbitmq.bus(prefetch=1)
    release = asyncio.Event()

    async def stalled(_event: Event) -> None:
        await release.wait()

    await bus.subscribe("q.lag", ["vehicle.*"], stalled)
    assert await bus.waiting(["q.lag"]) == {"q.lag": 0}
    for _ in range(4):
        await bus.publish(Event(name="vehicle.registered"))

    # one is in the stalled handler's hands (unacked, prefetch 1); three wait at the broker
    await eventually(lambda: _waiting_is(bus, 3), what="three messages waiting")
    assert await bus.waiting(["q.lag", "q.nobody-declared"]) == {"q.lag": 3, "q.nobody-declared": None}
    assert await bus.healthy(), "asking for a queue that does not exist costs no channel of the bus"
    release.set()
    await eventually(lambda: _waiting_is(bus, 0), what="the queue drained")


async def _waiting_is(bus: RabbitMQBus, count: int) -> bool:
    return await bus.waiting(["q.lag"]) == {"q.lag": count}
