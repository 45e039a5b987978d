"""The gateway's check of who is asking, before anything is routed.

A request to a route that is not public must carry ``Authorization: Bearer <token>``: an access
token the gateway verifies (the same check every service makes again), or an API key of a machine
client (``evk_…``), which the gateway exchanges once at the accounts service for a short-lived
access token (cached until a minute before it expires) and forwards in its place, so the services
only ever see verified tokens.
"""

from __future__ import annotations

import hashlib

import httpx
import structlog

from cloud.platform.identity import TokenVerifier, Unauthorized
from cloud.platform.ports import Cache

log = structlog.get_logger(__name__)

API_KEY_PREFIX = "evk_"


class AccountsUnavailable(RuntimeError):
    """The accounts service could not be asked to exchange an API key."""


class Authenticator:
    def __init__(self, verifier: TokenVerifier, cache: Cache, accounts_url: str | None) -> None:
        self._verifier = verifier
        self._cache = cache
        self._accounts_url = accounts_url

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
        if answer.status_code != 200:
            detail = answer.json().get("detail") if answer.headers.get("content-type", "").endswith("json") else None
            raise Unauthorized(detail or "the API key is not valid")
        body = answer.json()
        access = str(body["access_token"])
        await self._verifier.verify(access)
        await self._cache.set(key, access.encode(), max(1.0, float(body.get("expires_in", 60)) - 60.0))
        return access
