"""The gateway's rate limits: per caller and per route class, with the ``limits`` library.

A caller is its account (a verified token), its API key, or — on public routes and for failed
authentications — its client address. The address is the peer's, or, when the peer is one of
``EVPARK_TRUSTED_PROXIES``, the right-most address of ``X-Forwarded-For`` that is not a trusted
proxy (what a client puts to the left of it is not believed, so rotating it changes nothing).

Three classes have their own budget per minute: ``public`` (login, registration, key exchange;
and every failed authentication), ``read`` (GET, HEAD, OPTIONS) and ``write``. The counters are
a sliding window (``limits``' sliding-window counter, the smoothing of a token bucket that
``limits`` offers) in Redis when ``EVPARK_REDIS_URL`` is set, so every gateway replica shares
them, else in memory. When Redis is away the gateway serves rather than lock everybody out.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import structlog
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from cloud.platform.settings import CloudSettings

log = structlog.get_logger(__name__)


class RouteClass(StrEnum):
    PUBLIC = "public"
    READ = "read"
    WRITE = "write"


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def route_class(method: str, public: bool) -> RouteClass:
    if public:
        return RouteClass.PUBLIC
    return RouteClass.READ if method in READ_METHODS else RouteClass.WRITE


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    retry_after: int = 0
    """Seconds until the caller may try again (when not allowed)."""


def api_key_identity(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]


class ClientAddress:
    """Who the client is, by address, believing ``X-Forwarded-For`` only from trusted proxies."""

    def __init__(self, trusted: list[str]) -> None:
        self._trusted: list[IPv4Network | IPv6Network] = [ip_network(n, strict=False) for n in trusted]

    def _is_trusted(self, address: str) -> bool:
        try:
            parsed = ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self._trusted)

    def of(self, peer: str, forwarded_for: str | None) -> str:
        if not forwarded_for or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):  # the right-most entries were added by our own proxies
            if not self._is_trusted(hop):
                try:
                    return str(ip_address(hop))
                except ValueError:
                    return peer  # garbage where an address should be: the proxy's own address is all we know
        return hops[0] if hops else peer


class RateLimiter:
    def __init__(self, settings: CloudSettings, *, storage: Storage | None = None) -> None:
        if storage is None:
            uri = f"async+{settings.redis_url}" if settings.redis_url else "async+memory://"
            options = {"key_prefix": f"{settings.cache_prefix}ratelimit"} if settings.redis_url else {}
            made = storage_from_string(uri, **options)
            assert isinstance(made, Storage)
            storage = made
        self.storage: Storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[RouteClass, RateLimitItem] = {
            RouteClass.PUBLIC: RateLimitItemPerMinute(settings.rate_limit_public_per_minute),
            RouteClass.READ: RateLimitItemPerMinute(settings.rate_limit_per_minute),
            RouteClass.WRITE: RateLimitItemPerMinute(settings.rate_limit_writes_per_minute),
        }

    async def hit(self, kind: RouteClass, identity: str) -> Verdict:
        item = self._items[kind]
        try:
            if await self._limiter.hit(item, kind.value, identity):
                return Verdict(True, item.amount)
            stats = await self._limiter.get_window_stats(item, kind.value, identity)
        except Exception as exc:  # Redis away: serve rather than lock everybody out
            log.warning("rate limiter unavailable; request served unlimited", error=repr(exc))
            return Verdict(True, item.amount)
        return Verdict(False, item.amount, retry_after=max(1, math.ceil(stats.reset_time - time.time())))
