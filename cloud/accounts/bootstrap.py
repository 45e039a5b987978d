"""Accounts the operator's tools create: the first admin, and the demo logins of ``evpark up --demo``.

Each function opens the accounts database itself (migrating it first), runs the same use cases
as the service, and closes it; the events it records go out through the outbox when the
service next runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog

from cloud.accounts import SPEC
from cloud.accounts.adapters import Argon2Passwords
from cloud.accounts.app import mail_for
from cloud.accounts.domain import ADMIN, DRIVER, OPERATOR, NewAccount
from cloud.accounts.repository import SqlAccountRepository
from cloud.accounts.service import AccountPolicy, AccountService, new_password
from cloud.platform.cache import MemoryCache
from cloud.platform.db import Database
from cloud.platform.identity import Principal
from cloud.platform.outbox import Outbox
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import sql_units_of_work

log = structlog.get_logger(__name__)

DEMO_OPERATOR = "operator@evpark.local"
DEMO_DRIVER = "driver@evpark.local"


class _NoTokens:
    """The CLI opens accounts; it never logs anybody in."""

    lifetime_seconds = int(timedelta(minutes=15).total_seconds())

    def issue(self, principal: Principal) -> str:
        raise RuntimeError("the accounts bootstrap issues no tokens")

    def jwks(self) -> dict[str, Any]:
        return {"keys": []}


@asynccontextmanager
async def _accounts(settings: CloudSettings) -> AsyncIterator[AccountService]:
    db = Database(settings.database_url_for(SPEC.name))
    await db.connect()
    cache = MemoryCache()
    try:
        assert SPEC.migrations is not None
        await db.migrate(SPEC.migrations)
        outbox = Outbox(db, source=SPEC.name, publishes=SPEC.publishes)
        yield AccountService(sql_units_of_work(outbox, SqlAccountRepository), passwords=Argon2Passwords(),
                             tokens=_NoTokens(), cache=cache, mail=mail_for(settings),
                             policy=AccountPolicy.from_settings(settings))
    finally:
        await cache.close()
        await db.close()


async def ensure_admin(settings: CloudSettings, email: str, *, password: str | None = None) -> str | None:
    """Create the admin account ``email`` if there is none; returns its password (the one given, or a
    generated one to show once), or None when the account existed already (it is left unchanged)."""
    async with _accounts(settings) as service:
        existing = await service.find(email)
        if existing is not None:
            if "admin" not in existing.roles:
                log.warning("the account exists but is no admin; left unchanged", email=existing.email)
            return None
        created = await service.provision(NewAccount(email=email, name="Administrator", password=password,
                                                     roles=frozenset({ADMIN}), email_verified=True))
        return created.password or password


async def ensure_demo_users(settings: CloudSettings, site_id: str) -> dict[str, str]:
    """A demo operator of ``site_id`` and a demo driver; returns email → password.

    Idempotent: the accounts are created once; on later calls each gets a fresh password (the
    old one is unknown, only its hash is kept), so the logins printed always work.
    """
    logins: dict[str, str] = {}
    async with _accounts(settings) as service:
        for email, name, roles, sites in ((DEMO_OPERATOR, "Demo operator", {OPERATOR}, {site_id}),
                                          (DEMO_DRIVER, "Demo driver", {DRIVER}, set())):
            existing = await service.find(email)
            if existing is None:
                created = await service.provision(NewAccount(email=email, name=name, roles=frozenset(roles),
                                                             sites=frozenset(sites), email_verified=True))
                assert created.password is not None
                logins[email] = created.password
            else:
                password = new_password()
                await service.set_password(email, password)
                if OPERATOR in roles and site_id not in existing.sites:
                    await service.grant_site(existing.account_id, site_id)
                logins[email] = password
    return logins
