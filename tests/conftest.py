from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.support import services

E2E_GROUP = "e2e"
E2E_TIMEOUT_S = 300
"""An end-to-end test's bound, its system's start and stop included, unless it sets its own."""


def _end_to_end(nodeid: str) -> bool:
    return nodeid.startswith("tests/e2e/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """End-to-end tests first (the scheduler below keeps them on one worker), each with its own bound."""
    for item in items:
        if _end_to_end(item.nodeid) and item.get_closest_marker("timeout") is None:
            # the 120 s default covers fixtures too: a dozen processes starting on a busy machine took 76 s
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))
    items.sort(key=lambda item: not _end_to_end(item.nodeid))  # stable: e2e first, the rest as collected


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """How `make test` spreads the tests over its xdist workers: a test file's tests stay together (as under
    ``--dist loadfile``), and every end-to-end test, each of which starts a whole system of a dozen
    processes, goes to one worker, so that two such systems never start at once on 2 cores (they did, and
    their start-ups took 30 to 76 s and pushed timing bounds over). ``--dist loadgroup`` with
    ``xdist_group`` markers cannot do it on pytest 9: xdist 3.8 writes the group into ``item._nodeid``,
    which pytest 9 no longer reads, so every test was its own group."""
    from xdist.scheduler import LoadScopeScheduling

    class FilesAndEndToEnd(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return E2E_GROUP if _end_to_end(nodeid) else nodeid.split("::", 1)[0]

    return FilesAndEndToEnd(config, log)


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
