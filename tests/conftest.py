from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import services

E2E_GROUP = "e2e"
E2E_TIMEOUT_S = 300
"""An end-to-end test's bound, its system's start and stop included, unless it sets its own."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """How `make test` spreads the tests over its xdist workers (``--dist loadgroup``): a test file's tests
    stay together, as under ``loadfile``; every end-to-end test, each of which starts a whole system of a
    dozen processes, goes to one worker, first, so that two such systems never start at once on 2 cores
    (they did, and their start-ups took 30 to 50 s and pushed timing bounds over)."""
    def end_to_end(item: pytest.Item) -> bool:
        return item.nodeid.startswith("tests/e2e/") or item.get_closest_marker("e2e") is not None

    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(E2E_GROUP if end_to_end(item) else item.nodeid.split("::")[0]))
        if end_to_end(item) and item.get_closest_marker("timeout") is None:
            # the 120 s default covers fixtures too: a dozen processes starting on a busy machine took 76 s
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))
    items.sort(key=lambda item: not end_to_end(item))  # stable: e2e first, the rest as collected


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
