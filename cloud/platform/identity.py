"""Who is asking: signed access tokens, verified by every service itself.

The accounts service issues short-lived JWTs signed with one of its keys (:class:`KeyRing`;
each key has an id, ``kid``, so keys rotate: the newest signs, the older ones stay published
until the tokens they signed have expired). Every service verifies the token again with
:class:`TokenVerifier`, against the public keys at the issuer's ``/.well-known/jwks.json``, so a
service reached without the gateway refuses an anonymous or forged request just the same. Any
OIDC issuer can replace the built-in accounts by settings: its JWKS URL, issuer, audience, and
the claims that hold roles and site scopes.

Exception tree::

    Unauthorized        401  no token, or one that is expired, forged, of another issuer or audience
    Forbidden           403  a valid token whose roles do not allow the action at all
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, Request
from jwt.algorithms import OKPAlgorithm

from cloud.contracts.identity import (
    ADMIN,
    DRIVER,
    OPERATOR,
    ROLES,
    SITE_SCOPED,
    TECHNICIAN,
    Forbidden,
    Principal,
    Unauthorized,
)

log = structlog.get_logger(__name__)

__all__ = ["ADMIN", "DRIVER", "OPERATOR", "ROLES", "SITE_SCOPED", "TECHNICIAN", "CurrentUser", "Forbidden",
           "KeyRing", "Principal", "TokenVerifier", "Unauthorized", "access_claims", "current_user",
           "principal_from_claims"]


# --- signing (the accounts service) --------------------------------------------------------------


@dataclass
class KeyRing:
    """Ed25519 signing keys by id; the active one signs, all are published (JWKS)."""

    keys: dict[str, Ed25519PrivateKey]
    active: str

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise ValueError(f"the active signing key {self.active!r} is not among {sorted(self.keys)}")

    @classmethod
    def load(cls, folder: Path, active: str | None = None) -> KeyRing:
        """Every ``<kid>.pem`` (PKCS#8 Ed25519 private key) of ``folder``; ``active`` signs
        (default: the newest file)."""
        files = sorted(folder.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name))
        if not files:
            raise ValueError(f"no signing keys (<kid>.pem) in {folder}")
        keys: dict[str, Ed25519PrivateKey] = {}
        for path in files:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path}: an Ed25519 private key (PKCS#8 PEM) is expected")
            keys[path.stem] = key
        return cls(keys, active or files[-1].stem)

    @classmethod
    def create(cls, folder: Path, kid: str | None = None) -> KeyRing:
        """Write a new key into ``folder`` (mode 0600) and load the ring with it active."""
        folder.mkdir(parents=True, exist_ok=True)
        kid = kid or datetime.now(UTC).strftime("k%Y%m%d%H%M%S")
        path = folder / f"{kid}.pem"
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.touch(mode=0o600)
        path.write_bytes(pem)
        return cls.load(folder, kid)

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self.keys[self.active], algorithm="EdDSA", headers={"kid": self.active})

    def jwks(self) -> dict[str, Any]:
        published = []
        for kid, key in sorted(self.keys.items()):
            public = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
            published.append({**public, "kid": kid, "use": "sig", "alg": "EdDSA"})
        return {"keys": published}


def access_claims(principal: Principal, *, issuer: str, audience: str, lifetime: timedelta,
                  now: datetime | None = None, roles_claim: str = "roles",
                  sites_claim: str = "sites") -> dict[str, Any]:
    issued = now or datetime.now(UTC)
    return {"iss": issuer, "aud": audience, "sub": principal.subject, "iat": int(issued.timestamp()),
            "nbf": int(issued.timestamp()), "exp": int((issued + lifetime).timestamp()), "jti": uuid.uuid4().hex,
            roles_claim: sorted(principal.roles), sites_claim: sorted(principal.sites),
            "email_verified": principal.email_verified, **({"name": principal.name} if principal.name else {})}


# --- verifying (every service) -------------------------------------------------------------------


@dataclass
class TokenVerifier:
    """Verifies access tokens against the issuer's published keys.

    ``jwks`` is either the key set itself (tests, or an issuer in the same process) or fetched
    from ``jwks_url`` and cached; a token with a key id not in the cache refreshes it (at most
    once per ``refresh_seconds``), so a rotated-in key is picked up without a restart.
    """

    issuer: str
    audience: str
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    algorithms: Sequence[str] = ("EdDSA", "RS256", "ES256")
    roles_claim: str = "roles"
    sites_claim: str = "sites"
    leeway_seconds: float = 30.0
    refresh_seconds: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    _keys: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _fetched_at: float = field(default=float("-inf"), init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.jwks is not None:
            self._keys = _parse_jwks(self.jwks)
        elif not self.jwks_url:
            raise ValueError("a TokenVerifier needs the issuer's JWKS or its URL")
        if "none" in {a.lower() for a in self.algorithms}:
            raise ValueError("unsigned tokens (alg none) are never accepted")

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        kid = header.get("kid")
        if header.get("alg") not in self.algorithms:
            raise Unauthorized(f"token algorithm {header.get('alg')!r} is not accepted")
        key = await self._key(kid)
        try:
            claims = jwt.decode(token, key, algorithms=list(self.algorithms), audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway_seconds,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired; refresh it or log in again") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return principal_from_claims(claims, roles_claim=self.roles_claim, sites_claim=self.sites_claim)

    async def _key(self, kid: str | None) -> Any:
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise Unauthorized("the token names no key (kid)")
        if kid not in self._keys and self.jwks_url:
            await self._refresh()
        if kid not in self._keys:
            raise Unauthorized(f"the token was signed with an unknown key {kid!r}")
        return self._keys[kid]

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.refresh_seconds and self._keys:
                return
            assert self.jwks_url is not None
            try:
                async with httpx.AsyncClient(transport=self.transport, timeout=5.0) as client:
                    response = await client.get(self.jwks_url)
                    response.raise_for_status()
                    self._keys = _parse_jwks(response.json())
                self._fetched_at = time.monotonic()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("JWKS unavailable", url=self.jwks_url, error=repr(exc))
                self._fetched_at = time.monotonic() - self.refresh_seconds + 2.0  # retry soon, not per request


def _parse_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for entry in jwks.get("keys", []):
        try:
            keys[str(entry.get("kid", ""))] = jwt.PyJWK.from_dict(dict(entry)).key
        except jwt.PyJWTError as exc:
            log.warning("JWKS entry skipped", kid=entry.get("kid"), error=str(exc))
    return keys


def principal_from_claims(claims: Mapping[str, Any], *, roles_claim: str = "roles",
                          sites_claim: str = "sites") -> Principal:
    roles = _claim(claims, roles_claim)
    sites = _claim(claims, sites_claim)
    return Principal(subject=str(claims["sub"]), roles=frozenset(r for r in roles if r in ROLES),
                     sites=frozenset(sites), email_verified=bool(claims.get("email_verified", False)),
                     name=claims.get("name"))


def _claim(claims: Mapping[str, Any], path: str) -> list[str]:
    """A list claim, possibly nested (``realm_access.roles`` for Keycloak)."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []


# --- the FastAPI dependency ----------------------------------------------------------------------


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_user(request: Request) -> Principal:
    """The verified caller; 401 without a valid token."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <access token>' (POST /auth/login gives one)")
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


CurrentUser = Annotated[Principal, Depends(current_user)]
"""A route's verified caller: ``async def route(user: CurrentUser)``."""
