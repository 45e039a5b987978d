"""The cache contract, proven on both adapters: the in-process cache and real Redis."""

from __future__ import annotations

import asyncio

import pytest

from cloud.platform.cache import RedisCache
from cloud.platform.ports import Cache
from tests.support import services

TTL = 0.2
PAST_TTL = 0.35


async def test_a_value_set_is_read_back_until_deleted(cache: Cache) -> None:
    assert await cache.get("bay:17") is None

    await cache.set("bay:17", b"occupied")
    assert await cache.get("bay:17") == b"occupied"
    await cache.set("bay:17", b"free")
    assert await cache.get("bay:17") == b"free"

    await cache.delete("bay:17")
    assert await cache.get("bay:17") is None
    await cache.delete("bay:17")  # deleting a missing key is fine


async def test_a_value_expires_after_its_ttl(cache: Cache) -> None:
    await cache.set("status:veh-1", b"{}", ttl_seconds=TTL)
    assert await cache.get("status:veh-1") == b"{}"

    await asyncio.sleep(PAST_TTL)

    assert await cache.get("status:veh-1") is None


async def test_setting_a_value_without_ttl_clears_the_earlier_ttl(cache: Cache) -> None:
    await cache.set("k", b"short-lived", ttl_seconds=TTL)
    await cache.set("k", b"kept")

    await asyncio.sleep(PAST_TTL)

    assert await cache.get("k") == b"kept"


async def test_incr_counts_within_a_fixed_window_that_later_increments_do_not_extend(cache: Cache) -> None:
    assert [await cache.incr("ratelimit:1.2.3.4", 0.4) for _ in range(3)] == [1, 2, 3]
    assert await cache.get("ratelimit:1.2.3.4") == b"3"

    await asyncio.sleep(0.25)
    assert await cache.incr("ratelimit:1.2.3.4", 0.4) == 4  # does not move the window's end
    await asyncio.sleep(0.25)

    assert await cache.incr("ratelimit:1.2.3.4", 0.4) == 1  # a new window


async def test_concurrent_increments_are_all_counted(cache: Cache) -> None:
    counts = await asyncio.gather(*(cache.incr("hits", 10) for _ in range(50)))

    assert sorted(counts) == list(range(1, 51))


async def test_incr_of_a_value_that_is_not_a_counter_is_refused(cache: Cache) -> None:
    await cache.set("name", b"garage")

    with pytest.raises(ValueError):
        await cache.incr("name", 10)


async def test_bad_values_and_ttls_are_refused(cache: Cache) -> None:
    with pytest.raises(TypeError):
        await cache.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await cache.set("k", b"v", ttl_seconds=0)
    with pytest.raises(ValueError):
        await cache.incr("k", -1)


async def test_a_reachable_cache_is_healthy(cache: Cache) -> None:
    assert await cache.healthy()


@pytest.mark.integration
async def test_redis_keys_live_under_the_prefix_so_caches_do_not_see_each_other(
        redis_cache: RedisCache, redis_url: str, cache_prefix: str) -> None:
    other = RedisCache(redis_url, prefix=cache_prefix + "other:")
    try:
        await redis_cache.set("shared-name", b"mine")
        assert await other.get("shared-name") is None
    finally:
        await other.close()


async def test_an_unreachable_redis_is_unhealthy_not_hanging() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{services.free_port()}/0", timeout=1.0)
    try:
        assert not await asyncio.wait_for(cache.healthy(), 5)
    finally:
        await cache.close()
