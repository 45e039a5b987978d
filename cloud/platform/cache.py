"""The two :class:`~cloud.platform.ports.Cache` adapters: in-process (:class:`MemoryCache`) and Redis.

Both behave the same where a caller can tell: values are ``bytes``; a TTL is in seconds
(fractions allowed, must be positive; ``None`` keeps the value until it is overwritten or
deleted, and a ``set`` without TTL clears an earlier one, as Redis ``SET`` does);
:meth:`incr` is a fixed-window counter: the TTL is set when the counter is created and is
not extended by later increments, and ``get`` of a counter returns its decimal bytes.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

log = structlog.get_logger(__name__)


def _check(value: bytes, ttl_seconds: float | None) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"cache values are bytes, not {type(value).__name__}")
    _check_ttl(ttl_seconds)


def _check_ttl(ttl_seconds: float | None) -> None:
    if ttl_seconds is not None and not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds!r}")


@dataclass(slots=True)
class _Entry:
    value: bytes
    expires_at: float | None


class MemoryCache:
    """An in-process TTL cache, bounded to ``max_entries`` (least recently used go first).

    Expired entries are dropped when read and swept on every write, so they never hold
    memory for long. Every method runs without awaiting, so each is atomic under asyncio
    (``incr`` cannot lose an update); it is not meant to be shared between threads.
    """

    def __init__(self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._expiries: list[tuple[float, str]] = []  # heap; stale items are skipped when popped

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key, self._clock())
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        _check(value, ttl_seconds)
        now = self._clock()
        self._put(key, _Entry(value, None if ttl_seconds is None else now + ttl_seconds), now)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def delete_many(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def incr(self, key: str, ttl_seconds: float) -> int:
        _check_ttl(ttl_seconds)
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            count, expires_at = 1, now + ttl_seconds
        else:
            try:
                count = int(entry.value) + 1
            except ValueError:
                raise ValueError(f"cache key {key!r} does not hold a counter") from None
            # Like EXPIRE NX: a value that had no TTL gets one, a running window keeps its end.
            expires_at = entry.expires_at if entry.expires_at is not None else now + ttl_seconds
        self._put(key, _Entry(str(count).encode(), expires_at), now)
        return count

    async def close(self) -> None:
        self._entries.clear()
        self._expiries.clear()

    async def healthy(self) -> bool:
        return True

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _put(self, key: str, entry: _Entry, now: float) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        if entry.expires_at is not None:
            heapq.heappush(self._expiries, (entry.expires_at, key))
        self._sweep(now)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def _sweep(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, key = heapq.heappop(self._expiries)
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at == expires_at:
                del self._entries[key]
        if len(self._expiries) > 2 * len(self._entries) + 64:  # many overwritten TTLs: rebuild
            self._expiries = [(e.expires_at, k) for k, e in self._entries.items() if e.expires_at is not None]
            heapq.heapify(self._expiries)


class RedisCache:
    """The Redis adapter; every key is stored under ``prefix`` so deployments and tests can share a server.

    Errors of an unreachable Redis are raised (``redis.exceptions.RedisError``) after
    ``timeout`` seconds; whether a cache miss is acceptable then is the caller's decision.
    """

    def __init__(self, url: str, prefix: str = "evpark:", *, timeout: float = 2.0) -> None:
        self._prefix = prefix
        # No connection is made here: the pool connects on the first command.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def _key(self, key: str) -> str:
        return f"{self._prefix}{key}"

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._key(key))
        if value is None or isinstance(value, bytes):
            return value
        raise TypeError("the Redis client decodes responses; RedisCache needs raw bytes")

    async def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        _check(value, ttl_seconds)
        await self._redis.set(self._key(key), value, px=None if ttl_seconds is None else _millis(ttl_seconds))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._key(key))

    async def delete_many(self, keys: Iterable[str]) -> None:
        """One ``DEL k1 k2 …`` for every key (none: no command)."""
        names = [self._key(key) for key in dict.fromkeys(keys)]
        if names:
            await self._redis.delete(*names)

    async def incr(self, key: str, ttl_seconds: float) -> int:
        _check_ttl(ttl_seconds)
        name = self._key(key)
        # One MULTI/EXEC: the counter never exists without its TTL, and NX sets the TTL only
        # on the increment that created it (needs Redis >= 7.0).
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.pexpire(name, _millis(ttl_seconds), nx=True)
            try:
                count, _ = await pipe.execute()
            except ResponseError as exc:
                raise ValueError(f"cache key {key!r} does not hold a counter: {exc}") from exc
        return int(count)

    async def close(self) -> None:
        await self._redis.aclose()

    async def healthy(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError) as exc:
            log.warning("redis unhealthy", error=repr(exc))
            return False


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))
