"""Production mode end to end (PostgreSQL, RabbitMQ, Redis, the shared Mosquitto, every part its own
process; and ``evpark up`` on its embedded broker): the site's link state on
``GET /parking/sites/{siteId}``, and ``parking.site_offline``
on the real bus within the documented bound when the site's edge process stops."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from tests.e2e.conftest import drop_databases, forget_edge_session, production
from tests.e2e.harness import System
from tests.support import services

OFFLINE_BOUND_S = 3.0
"""README, "Link state": a clean stop is offline within about a second; the event then goes out
through the parking service's outbox and RabbitMQ."""


async def poll(client: httpx.AsyncClient, path: str, until: Any, limit_s: float = 30.0) -> Any:
    body: Any = None
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        response = await client.get(path)
        if response.status_code == 200:
            body = response.json()
            if until(body):
                return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never matched; last answer: {body}")


async def offline_event(queue: aio_pika.abc.AbstractQueue, after: datetime) -> dict[str, Any]:
    """The first parking.site_offline of e2e-site the cloud learned of after ``after``."""
    async with queue.iterator() as messages:
        async for message in messages:
            async with message.process():
                event = json.loads(message.body)["payload"]
                if message.routing_key == "parking.site_offline" and event["site_id"] == "e2e-site" \
                        and datetime.fromisoformat(event["since"]) >= after:
                    return event  # type: ignore[no-any-return]
    raise AssertionError("the queue iterator ended")


async def test_a_stopped_edge_is_published_as_site_offline_and_shown_on_the_site(tmp_path: Path) -> None:
    for label, address in (("PostgreSQL", services.POSTGRES), ("RabbitMQ", services.RABBITMQ),
                           ("Redis", services.REDIS), ("Mosquitto", services.MOSQUITTO)):
        services.require(label, address)
    name = services.fresh_name("e")
    vhost = services.create_rabbitmq_vhost()
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    system = production(tmp_path, mqtt_port=services.MOSQUITTO[1], amqp_url=amqp_url, name=name)
    try:
        await asyncio.to_thread(system.wait_healthy, 120)
        connection = await aio_pika.connect_robust(amqp_url)
        async with connection, httpx.AsyncClient(base_url=system.gateway, headers=system.headers,
                                                 timeout=5) as http:
            channel = await connection.channel()
            exchange = await channel.declare_exchange("parking.events", aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await channel.declare_queue(exclusive=True)
            for routing_key in ("parking.site_online", "parking.site_offline"):  # '*' would be a whole word
                await queue.bind(exchange, routing_key=routing_key)

            site = await poll(http, "/parking/sites/e2e-site", lambda b: b["link"]["state"] == "online")
            assert site["link"]["reason"] == "connected" and site["registered_at"] is None

            edge = next(p for p in system.processes if p.name == "edge")
            stopped, stopped_at = time.monotonic(), datetime.now(UTC)
            await asyncio.to_thread(edge.stop)  # SIGTERM: the edge says goodbye, then disconnects
            try:
                offline = await asyncio.wait_for(offline_event(queue, stopped_at), OFFLINE_BOUND_S + 15)
            except TimeoutError:
                raise AssertionError(f"no parking.site_offline on the bus\n{system.logs()}") from None
            took = time.monotonic() - stopped
            # "stopped" (its goodbye); "lost" only if an edge of another test run with the same client id
            # on the shared broker knocked it off just before (tests/integration/cloud/test_site_link.py
            # proves "stopped" on a site of its own)
            assert offline["reason"] in ("stopped", "lost"), offline
            assert took < OFFLINE_BOUND_S + 1.0, f"site_offline took {took:.1f} s after the edge was told to stop"
            site = (await http.get("/parking/sites/e2e-site")).json()
            assert (site["link"]["state"], site["link"]["reason"]) == ("offline", offline["reason"])
    finally:
        await asyncio.to_thread(system.stop)
        await forget_edge_session(services.MOSQUITTO[1], system.topic_root)
        services.delete_rabbitmq_vhost(vhost)
        await drop_databases(name)


async def test_a_running_edge_is_online_on_both_run_modes(system: System) -> None:
    site_id = "demo-site" if system.topic_root == "evpark" else "e2e-site"  # evpark up's site, or production's
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=5) as http:
        site = await poll(http, f"/parking/sites/{site_id}", lambda b: b["link"]["state"] == "online")
    assert site["link"]["reason"] == "connected" and site["link"]["connected_at"] is not None
