from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import services


@pytest.fixture
def topic_root() -> str:
    """A fresh MQTT topic root, so tests on the shared Mosquitto never see each other."""
    return services.fresh_name("evpark-test-")


@pytest.fixture
def mosquitto() -> tuple[str, int]:
    services.require("Mosquitto", services.MOSQUITTO)
    return services.MOSQUITTO


@pytest.fixture
def private_mosquitto() -> Iterator[services.PrivateMosquitto]:
    with services.private_mosquitto() as broker:
        yield broker


@pytest.fixture
def redis_url() -> str:
    services.require("Redis", services.REDIS)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def postgres_dsn() -> str:
    """Server DSN (no database); tests create databases with fresh names."""
    services.require("PostgreSQL", services.POSTGRES)
    return "postgresql+asyncpg://postgres@127.0.0.1:5432"


@pytest.fixture
async def rabbitmq_url() -> AsyncIterator[str]:
    """An AMQP URL on a fresh vhost of the real RabbitMQ, deleted afterwards."""
    services.require("RabbitMQ", services.RABBITMQ)
    vhost = services.create_rabbitmq_vhost()
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        services.delete_rabbitmq_vhost(vhost)
