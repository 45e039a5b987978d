"""The cache contract, proven on both adapters: the in-process cache and real Redis."""

from __future__ import annotations

import asyncio

import pytest

from cloud.platform.cache import RedisCache
from cloud.platform.ports import Cache
from tests.support import services

TTL = 0.5  # long enough that a loaded machine reads the value back before it expires
PAST_TTL = 0.65


async def test_a_value_set_is_read_back_until_deleted(cache: Cache) -> None:
    assert await cache.get("bay:17") is None

    await cache.set("bay:17", b"occupied")
    assert await cache.get("bay:17") == b"occupied"
    await cache.set("bay:17", b"free")
    assert await cache.get("bay:17") == b"free"

    await cache.delete("bay:17")
    assert await cache.get("bay:17") is None
    await cache.delete("bay:17")  # deleting a missing key is fine


async def test_delete_many_drops_every_key_given_and_no_other(cache: Cache) -> None:
    for key in ("status:a", "status:b", "status:c"):
        await cache.set(key, b"x")

    await cache.delete_many(["status:a", "status:b", "status:a", "status:missing"])
    await cache.delete_many([])  # nothing to delete: no error

    assert [await cache.get(k) for k in ("status:a", "status:b", "status:c")] == [None, None, b"x"]


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
    window = 1.0
    loop = asyncio.get_running_loop()
    before_first = loop.time()  # the window starts after this ...
    assert await cache.incr("ratelimit:1.2.3.4", window) == 1
    after_first = loop.time()  # ... and before this
    assert [await cache.incr("ratelimit:1.2.3.4", window) for _ in range(2)] == [2, 3]
    assert await cache.get("ratelimit:1.2.3.4") == b"3"

    await asyncio.sleep(max(0.0, before_first + 0.3 - loop.time()))  # 0.7 s before the window ends
    assert await cache.incr("ratelimit:1.2.3.4", window) == 4  # does not move the window's end
    # Past the window's end for sure, and before the end a moved window would have (the fourth
    # increment + window, ~0.25 s later): a late wake-up on a loaded machine can only hide a bug, never fail.
    await asyncio.sleep(max(0.0, after_first + window + 0.05 - loop.time()))

    assert await cache.incr("ratelimit:1.2.3.4", window) == 1  # a new window


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
