"""Charger admission: which charger may open an OCPP connection, with which credentials
(OCPP-NOTES "Security profiles"), and the operator's changes of a charger's Security Profile and key.

The OCPP server and the admin API reach them through :class:`edge.site.Site`, which keeps the method names.
"""

from __future__ import annotations

import asyncio
import enum
from datetime import datetime
from typing import Protocol

import structlog

from edge.security import basic_credentials, hash_key, valid_key, verify_key
from edge.store import Store

log = structlog.get_logger("edge.site")  # the site's log, as before the split of edge.site


class Admission(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # HTTP 404
    UNAUTHORIZED = "unauthorized"  # HTTP 401


class AdmissionSite(Protocol):
    """What admission reaches of the site (implemented by :class:`edge.site.Site`)."""

    store: Store
    accept_unknown_chargers: bool
    min_security_profile: int

    def now(self) -> datetime: ...


class ChargerAdmission:
    """The site's admission rules for chargers."""

    def __init__(self, site: AdmissionSite) -> None:
        self.site = site

    async def may_connect(self, charger_id: str) -> bool:
        """Whether a charger id may open an OCPP connection at all (else HTTP 404 at the handshake)."""
        if self.site.accept_unknown_chargers:
            return True
        return await self.site.store.get_charger(charger_id) is not None

    async def admit(self, charger_id: str, authorization: str | None, *, tls: bool,
                    certificate_cn: str | None = None) -> Admission:
        """The handshake decision (OCPP-NOTES "Security profiles"): unknown → 404; a charger below
        ``min_security_profile`` → 401; a charger with profile 1 or 2 must send HTTP Basic
        ``<id>:<AuthorizationKey>``, profile 2 over TLS; a profile 3 charger must present, over TLS, a client
        certificate of the site's charger CA (checked by the TLS handshake) whose subject CN is its id.

        ``certificate_cn`` is the subject common name of the verified client certificate, if any. A new
        AuthorizationKey the charger accepted replaces the old one at its first use.
        """
        charger = await self.site.store.get_charger(charger_id)
        if charger is None:
            if not self.site.accept_unknown_chargers:
                return Admission.UNKNOWN
            return Admission.OK if self.site.min_security_profile == 0 else Admission.UNAUTHORIZED
        if charger.security_profile < self.site.min_security_profile:
            return Admission.UNAUTHORIZED  # e.g. a profile 0 charger anyone could impersonate
        if charger.security_profile == 0:
            return Admission.OK
        if charger.security_profile >= 3:
            return Admission.OK if tls and certificate_cn == charger_id else Admission.UNAUTHORIZED
        credentials = basic_credentials(authorization)
        if credentials is None or credentials[0] != charger_id or charger.auth_key_hash is None:
            return Admission.UNAUTHORIZED
        if charger.security_profile >= 2 and not tls:
            return Admission.UNAUTHORIZED  # never downgraded to plain ws://
        if await asyncio.to_thread(verify_key, credentials[1], charger.auth_key_hash):
            return Admission.OK
        if charger.next_auth_key_hash is not None and \
                await asyncio.to_thread(verify_key, credentials[1], charger.next_auth_key_hash):
            async with self.site.store.transaction() as tx:
                await tx.promote_next_auth_key(charger_id, charger.next_auth_key_hash)
            log.info("charger.auth_key_adopted", charger_id=charger_id)
            return Admission.OK
        return Admission.UNAUTHORIZED

    async def set_security_profile(self, charger_id: str, security_profile: int) -> None:
        """Raise a charger's Security Profile (registers the id if new). Profile 3 needs no key (its client
        certificate names it); profiles 1 and 2 need a key stored first (:meth:`set_auth_key`). Never lowered."""
        if security_profile not in (1, 2, 3):
            raise ValueError("security_profile must be 1, 2 or 3")
        async with self.site.store.transaction() as tx:
            current = await tx.get_charger(charger_id)
            if current is not None and current.security_profile > security_profile:
                raise ValueError(f"charger {charger_id!r} uses profile {current.security_profile}; "
                                 "a profile is never downgraded")
            key = current.auth_key_hash if current is not None else None
            if security_profile < 3 and key is None:
                raise ValueError(f"charger {charger_id!r} has no AuthorizationKey: set one with its profile")
            await tx.set_charger_security(charger_id, security_profile=security_profile, auth_key_hash=key,
                                          now=self.site.now())
        log.info("charger.security_profile_set", charger_id=charger_id, security_profile=security_profile)

    async def set_auth_key(self, charger_id: str, key: str, security_profile: int) -> None:
        """Store a charger's AuthorizationKey for Security Profile 1 or 2 (registers the id if new)."""
        if security_profile not in (1, 2):
            raise ValueError("security_profile must be 1 (Basic auth) or 2 (TLS + Basic auth)")
        if not valid_key(key):
            raise ValueError("the AuthorizationKey must be 16 to 40 printable characters")
        hashed = await asyncio.to_thread(hash_key, key)
        async with self.site.store.transaction() as tx:
            current = await tx.get_charger(charger_id)
            if current is not None and current.security_profile > security_profile:
                raise ValueError(f"charger {charger_id!r} uses profile {current.security_profile}; "
                                 "a profile is never downgraded")
            await tx.set_charger_security(charger_id, security_profile=security_profile, auth_key_hash=hashed,
                                          now=self.site.now())
        log.info("charger.auth_key_set", charger_id=charger_id, security_profile=security_profile)
