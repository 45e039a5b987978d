"""MemoryCache specifics the shared contract cannot show: bounded size and the sweep of expired entries."""

from __future__ import annotations

from cloud.platform.cache import MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_least_recently_used_entry_goes_first_when_the_cache_is_full() -> None:
    cache = MemoryCache(max_entries=3)
    for key in ("a", "b", "c"):
        await cache.set(key, key.encode())
    await cache.get("a")  # used: now "b" is the oldest

    await cache.set("d", b"d")

    assert len(cache) == 3
    assert await cache.get("b") is None
    assert [await cache.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]


async def test_expired_entries_are_swept_on_write_without_being_read() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    for n in range(100):
        await cache.set(f"session:{n}", b"x", ttl_seconds=5)
    clock.now += 6

    await cache.set("fresh", b"y")

    assert len(cache) == 1


async def test_expired_entries_make_room_before_live_ones_are_evicted() -> None:
    clock = Clock()
    cache = MemoryCache(max_entries=2, clock=clock)
    await cache.set("old", b"1", ttl_seconds=1)
    await cache.set("keep", b"2")
    clock.now += 2

    await cache.set("new", b"3")

    assert await cache.get("keep") == b"2"
    assert await cache.get("new") == b"3"


async def test_a_counter_window_ends_at_its_first_increment_plus_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    assert await cache.incr("w", 60) == 1
    clock.now += 59.9
    assert await cache.incr("w", 60) == 2
    clock.now += 0.1

    assert await cache.incr("w", 60) == 1


async def test_incr_of_a_value_without_ttl_gives_it_one_like_expire_nx() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    await cache.set("n", b"41")

    assert await cache.incr("n", 10) == 42
    clock.now += 10

    assert await cache.get("n") is None


async def test_overwriting_keys_with_ttls_many_times_keeps_the_cache_correct() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    for n in range(1000):
        await cache.set("hot", str(n).encode(), ttl_seconds=100 + n)
        clock.now += 0.01

    assert await cache.get("hot") == b"999"
    clock.now += 50
    assert await cache.get("hot") == b"999"
    clock.now += 1100
    assert await cache.get("hot") is None
