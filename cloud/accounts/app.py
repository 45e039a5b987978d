"""Composition root of the accounts service."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.accounts import SPEC
from cloud.accounts.adapters import Argon2Passwords, MailFolder, NoMail, SignedAccessTokens, signing_keys
from cloud.accounts.api import router
from cloud.accounts.repository import SqlAccountRepository
from cloud.accounts.service import AccountPolicy, AccountService, LinkMail
from cloud.platform.identity import TokenVerifier
from cloud.platform.ports import Cache, EventBus
from cloud.platform.runtime import Platform
from cloud.platform.service_app import service_app
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work


def mail_for(settings: CloudSettings) -> LinkMail:
    """On embedded defaults e-mail is files in the data folder; in production only the events carry links."""
    return MailFolder(settings.data_dir / "mail") if settings.env == "development" else NoMail()


def build_app(settings: CloudSettings, *, bus: EventBus | None = None, cache: Cache | None = None) -> FastAPI:
    ring = signing_keys(settings)  # before anything connects: production without keys refuses to start

    async def wire(platform: Platform) -> tuple[object, None]:
        tokens = SignedAccessTokens.from_settings(ring, settings)
        # This service is the issuer: it verifies its own tokens with its own public keys.
        platform.verifier = TokenVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                                          jwks=ring.jwks(), roles_claim=settings.jwt_roles_claim,
                                          sites_claim=settings.jwt_sites_claim)
        service = AccountService(sql_units_of_work(platform.outbox, SqlAccountRepository),
                                 passwords=Argon2Passwords(), tokens=tokens, cache=platform.cache,
                                 mail=mail_for(settings), policy=AccountPolicy.from_settings(settings))
        return service, None  # no MQTT link: accounts reads no site messages

    return service_app(SPEC, settings, wire=wire, router=router, bus=bus, cache=cache)
