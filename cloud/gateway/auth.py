"""The gateway's check of who is asking, before anything is routed.

A request to a route that is not public must carry ``Authorization: Bearer <token>``: an access
token the gateway verifies (the same check every service makes again), or an API key of a machine
client (``evk_…``), which the gateway exchanges once at the accounts service for a short-lived
access token (cached until a minute before it expires) and forwards in its place, so the services
only ever see verified tokens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import structlog

from cloud.gateway.ratelimit import api_key_identity
from cloud.platform.identity import TokenVerifier, Unauthorized
from cloud.platform.ports import Cache

log = structlog.get_logger(__name__)

API_KEY_PREFIX = "evk_"
VERIFIED_TTL_S = 30.0
VERIFIED_MAX = 10_000


def _expiry(token: str) -> float:
    """The ``exp`` of a token already verified (its payload, read without checking it again)."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return 0.0


class AccountsUnavailable(RuntimeError):
    """The accounts service could not be asked to exchange an API key."""


class Authenticator:
    def __init__(self, verifier: TokenVerifier, cache: Cache, accounts_url: str | None) -> None:
        self._verifier = verifier
        self._cache = cache
        self._accounts_url = accounts_url
        self._verified: dict[str, tuple[str, float]] = {}

    async def check(self, token: str, client: httpx.AsyncClient) -> tuple[str, str]:
        """(the verified access token to send upstream, the caller's rate-limit identity: its account
        or its API key); raises Unauthorized or AccountsUnavailable.

        An access token verified once is remembered until it expires, at most ``VERIFIED_TTL_S``
        (the services verify it again on every request: this only spares the gateway the work)."""
        if token.startswith(API_KEY_PREFIX):
            return await self.token_to_forward(token, client), api_key_identity(token)
        now = time.time()
        known = self._verified.get(token)
        if known is not None and known[1] > now:
            return token, known[0]
        principal = await self._verifier.verify(token)
        identity = f"account:{principal.subject}"
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (identity, min(now + VERIFIED_TTL_S, _expiry(token)))
        return token, identity

    async def token_to_forward(self, token: str, client: httpx.AsyncClient) -> str:
        """The verified access token to send upstream; raises Unauthorized or AccountsUnavailable."""
        if not token.startswith(API_KEY_PREFIX):
            await self._verifier.verify(token)
            return token
        key = f"gateway:api-key:{hashlib.sha256(token.encode()).hexdigest()}"
        cached = await self._cache.get(key)
        if cached is not None:
            return cached.decode()
        if self._accounts_url is None:
            raise Unauthorized("API keys need the accounts service, and none is configured")
        try:
            answer = await client.post(f"{self._accounts_url}/auth/token", json={"api_key": token}, timeout=5.0)
        except httpx.HTTPError as exc:
            raise AccountsUnavailable(f"the accounts service is unreachable ({exc.__class__.__name__})") from exc
        if answer.status_code >= 500:
            raise AccountsUnavailable(f"the accounts service failed ({answer.status_code})")
        if answer.status_code != 200:
            detail = answer.json().get("detail") if answer.headers.get("content-type", "").endswith("json") else None
            raise Unauthorized(detail or "the API key is not valid")
        body = answer.json()
        access = str(body["access_token"])
        await self._verifier.verify(access)
        await self._cache.set(key, access.encode(), max(1.0, float(body.get("expires_in", 60)) - 60.0))
        return access
