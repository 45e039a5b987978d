"""Adapters of the accounts service's ports: argon2 passwords, signed access tokens, the mail folder."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pwdlib import PasswordHash

from cloud.platform.identity import KeyRing, Principal, access_claims
from cloud.platform.settings import CloudSettings

log = structlog.get_logger(__name__)


class Argon2Passwords:
    """argon2id with pwdlib's recommended parameters, in worker threads.

    Each hash takes about half a second of CPU and 64 MiB, so at most ``concurrency`` run at
    once: a burst of logins queues instead of exhausting the memory of the process.
    """

    def __init__(self, *, concurrency: int | None = None, hasher: PasswordHash | None = None) -> None:
        self._hasher = hasher or PasswordHash.recommended()
        self._slots = asyncio.Semaphore(concurrency or max(2, os.cpu_count() or 2))

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        async with self._slots:
            valid, updated = await asyncio.to_thread(self._hasher.verify_and_update, password, hashed)
        return valid, updated


class SignedAccessTokens:
    """Access tokens signed by the key ring's active key (EdDSA, with its ``kid``)."""

    def __init__(self, ring: KeyRing, *, issuer: str, audience: str, lifetime: timedelta,
                 roles_claim: str = "roles", sites_claim: str = "sites") -> None:
        self._ring = ring
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime
        self._roles_claim = roles_claim
        self._sites_claim = sites_claim

    @classmethod
    def from_settings(cls, ring: KeyRing, settings: CloudSettings) -> SignedAccessTokens:
        return cls(ring, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                   lifetime=timedelta(minutes=settings.access_token_minutes),
                   roles_claim=settings.jwt_roles_claim, sites_claim=settings.jwt_sites_claim)

    @property
    def lifetime_seconds(self) -> int:
        return int(self._lifetime.total_seconds())

    def issue(self, principal: Principal) -> str:
        return self._ring.sign(access_claims(principal, issuer=self._issuer, audience=self._audience,
                                             lifetime=self._lifetime, roles_claim=self._roles_claim,
                                             sites_claim=self._sites_claim))

    def jwks(self) -> dict[str, Any]:
        return self._ring.jwks()


class MailFolder:
    """E-mail on embedded defaults: each message is a file in ``folder`` (mode 0600: it holds a token)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, to: str, subject: str, url: str, expires_at: datetime) -> None:
        sent = datetime.now(UTC)
        text = (f"To: {to}\nSubject: {subject}\nDate: {sent.isoformat()}\n\n{url}\n\n"
                f"The link works once, until {expires_at.isoformat()}.\n")
        path = self.folder / f"{sent.strftime('%Y%m%dT%H%M%S.%f')}-{uuid.uuid4().hex[:8]}.txt"
        await asyncio.to_thread(_write_private, path, text)
        log.info("mail written", to=to, subject=subject, path=str(path))


class NoMail:
    """Production: the notification service delivers links from the events alone."""

    async def send(self, to: str, subject: str, url: str, expires_at: datetime) -> None:
        return None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


class SigningKeysMissing(RuntimeError):
    pass


def signing_keys(settings: CloudSettings) -> KeyRing:
    """The key ring of ``settings.signing_keys_dir()``; in development a first key is created there.

    Production refuses to start without keys: a key made up on start would differ per replica
    and per restart, and every token issued before would stop verifying.
    """
    folder = settings.signing_keys_dir()
    active = settings.jwt_active_kid or None
    if folder.is_dir() and any(folder.glob("*.pem")):
        return KeyRing.load(folder, active)
    if settings.env == "production":
        raise SigningKeysMissing(
            f"no signing keys in {folder}: set EVPARK_JWT_KEYS_DIR to a folder with at least one <kid>.pem "
            "(an Ed25519 private key, PKCS#8 PEM; e.g. `openssl genpkey -algorithm ed25519 -out k1.pem`)")
    ring = KeyRing.create(folder, active)
    log.info("signing key created", folder=str(folder), kid=ring.active)
    return ring
