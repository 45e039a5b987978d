from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cloud.platform.cache import MemoryCache, RedisCache
from cloud.platform.ports import Cache
from tests.integration.platform.bus_harness import BusHarness, InProcessHarness, RabbitMQHarness
from tests.support import services


@pytest.fixture(params=["in-process", pytest.param("rabbitmq", marks=pytest.mark.integration)])
def bus_url(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded bus; an AMQP URL on a fresh vhost for RabbitMQ."""
    if request.param == "rabbitmq":
        return str(request.getfixturevalue("rabbitmq_url"))
    return None


@pytest.fixture
async def harness(bus_url: str | None) -> AsyncIterator[BusHarness]:
    the_harness: BusHarness = InProcessHarness() if bus_url is None else RabbitMQHarness(bus_url)
    try:
        yield the_harness
    finally:
        await the_harness.close()


@pytest.fixture
async def rabbitmq(rabbitmq_url: str) -> AsyncIterator[RabbitMQHarness]:
    the_harness = RabbitMQHarness(rabbitmq_url)
    try:
        yield the_harness
    finally:
        await the_harness.close()


@pytest.fixture
def cache_prefix() -> str:
    return services.fresh_name("evpark-test-") + ":"


@pytest.fixture
async def redis_cache(redis_url: str, cache_prefix: str) -> AsyncIterator[RedisCache]:
    cache = RedisCache(redis_url, prefix=cache_prefix)
    try:
        yield cache
    finally:
        await cache.close()
        cleaner = aioredis.Redis.from_url(redis_url)
        try:
            keys = [key async for key in cleaner.scan_iter(match=f"{cache_prefix}*")]
            if keys:
                await cleaner.delete(*keys)
        finally:
            await cleaner.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "redis":
        redis_cache: RedisCache = request.getfixturevalue("redis_cache")
        return redis_cache
    return MemoryCache()
