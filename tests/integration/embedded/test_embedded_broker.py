"""The embedded broker of `evpark up` keeps queued QoS 1 messages across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt

from evpark.broker import EmbeddedBroker
from tests.support.services import free_port


async def receive(client: aiomqtt.Client, count: int) -> list[bytes]:
    got: list[bytes] = []
    async for message in client.messages:
        got.append(bytes(message.payload))  # type: ignore[arg-type]
        if len(got) == count:
            break
    return got


async def test_messages_queued_for_a_persistent_session_survive_a_broker_restart(tmp_path: Path) -> None:
    port = free_port()
    async with EmbeddedBroker("127.0.0.1", port, tmp_path):
        async with aiomqtt.Client("127.0.0.1", port, identifier="cloud", clean_session=False,
                                  username="evpark") as subscriber:
            await subscriber.subscribe("evpark/sites/+/up/#", qos=1)
        async with aiomqtt.Client("127.0.0.1", port, identifier="edge", username="site") as publisher:
            await publisher.publish("evpark/sites/s1/up/session", b"before restart", qos=1)
    async with EmbeddedBroker("127.0.0.1", port, tmp_path):
        async with aiomqtt.Client("127.0.0.1", port, identifier="edge", username="site") as publisher:
            await publisher.publish("evpark/sites/s1/up/session", b"after restart", qos=1)
        async with aiomqtt.Client("127.0.0.1", port, identifier="cloud", clean_session=False,
                                  username="evpark") as subscriber:
            got = await asyncio.wait_for(receive(subscriber, 2), 10)
    assert got == [b"before restart", b"after restart"]
