"""The accounts service's storage: domain objects in and out of its tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from cloud.accounts import models
from cloud.accounts.domain import (
    Account,
    AccountPage,
    ApiKey,
    EmailTaken,
    LinkPurpose,
    LinkToken,
    RefreshFamily,
    RefreshToken,
)
from cloud.platform.outbox import Transaction


class AccountRepository(Protocol):
    async def get(self, account_id: str) -> Account | None: ...

    async def find_by_email(self, email: str) -> Account | None:
        """The account with this normalised email."""

    async def add(self, account: Account) -> None:
        """Store a new account; :class:`EmailTaken` when its email has one already (also under a race)."""

    async def save(self, account: Account) -> None:
        """Store the changes of an existing account (roles and sites included)."""

    async def page(self, *, limit: int, offset: int, role: str | None = None) -> AccountPage:
        """Accounts by creation time, then email; only those with ``role`` when given."""

    async def add_family(self, family: RefreshFamily) -> None: ...

    async def get_family(self, family_id: str) -> RefreshFamily | None: ...

    async def revoke_family(self, family_id: str, now: datetime) -> None: ...

    async def revoke_families_of(self, account_id: str, now: datetime) -> None:
        """Revoke every refresh token family of the account."""

    async def add_refresh_token(self, token: RefreshToken) -> None: ...

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None: ...

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used; False when it already was (two requests raced with one token)."""

    async def add_link_token(self, token: LinkToken) -> None: ...

    async def get_link_token(self, token_hash: str) -> LinkToken | None: ...

    async def use_link_token(self, token_hash: str, now: datetime) -> bool:
        """Mark the token used; False when it already was."""

    async def use_link_tokens_of(self, account_id: str, purpose: LinkPurpose, now: datetime) -> None:
        """Mark every unused token of the account for ``purpose`` used."""

    async def add_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key(self, api_key_id: str) -> ApiKey | None: ...

    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...

    async def save_api_key(self, key: ApiKey) -> None: ...


class SqlAccountRepository:
    """:class:`AccountRepository` over a platform transaction."""

    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session

    # --- accounts -----------------------------------------------------------------------------

    async def get(self, account_id: str) -> Account | None:
        row = await self._session.get(models.Account, account_id)
        return None if row is None else (await self._accounts([row]))[0]

    async def find_by_email(self, email: str) -> Account | None:
        row = (await self._session.execute(
            select(models.Account).where(col(models.Account.email) == email))).scalars().first()
        return None if row is None else (await self._accounts([row]))[0]

    async def add(self, account: Account) -> None:
        self._session.add(models.Account(id=account.account_id, email=account.email, name=account.name,
                                         password_hash=account.password_hash, email_verified=account.email_verified,
                                         disabled=account.disabled, language=account.language,
                                         time_zone=account.time_zone, created_at=account.created_at,
                                         updated_at=account.updated_at))
        try:
            # The unique email index decides a race between two registrations; the loser's
            # transaction is rolled back when EmailTaken leaves the unit of work.
            await self._session.flush()
        except IntegrityError:
            raise EmailTaken(account.email) from None
        await self._add_scopes(account.account_id, account.roles, account.sites)

    async def save(self, account: Account) -> None:
        row = await self._session.get(models.Account, account.account_id)
        if row is None:
            raise LookupError(f"no account {account.account_id!r} to save")
        before = (await self._accounts([row]))[0]
        row.email, row.name, row.password_hash = account.email, account.name, account.password_hash
        row.email_verified, row.disabled = account.email_verified, account.disabled
        row.language, row.time_zone, row.updated_at = account.language, account.time_zone, account.updated_at
        if gone := before.roles - account.roles:
            await self._session.execute(delete(models.AccountRole).where(
                col(models.AccountRole.account_id) == account.account_id, col(models.AccountRole.role).in_(gone)))
        if gone := before.sites - account.sites:
            await self._session.execute(delete(models.AccountSite).where(
                col(models.AccountSite.account_id) == account.account_id, col(models.AccountSite.site_id).in_(gone)))
        await self._add_scopes(account.account_id, account.roles - before.roles, account.sites - before.sites)

    async def page(self, *, limit: int, offset: int, role: str | None = None) -> AccountPage:
        query = select(models.Account)
        count = select(func.count()).select_from(models.Account)
        if role is not None:
            holders = select(models.AccountRole.account_id).where(col(models.AccountRole.role) == role)
            query = query.where(col(models.Account.id).in_(holders))
            count = count.where(col(models.Account.id).in_(holders))
        rows = (await self._session.execute(query.order_by(col(models.Account.created_at), col(models.Account.email))
                                            .limit(limit).offset(offset))).scalars().all()
        return AccountPage(accounts=await self._accounts(rows), total=await self._session.scalar(count) or 0)

    async def _add_scopes(self, account_id: str, roles: Iterable[str], sites: Iterable[str]) -> None:
        self._session.add_all([models.AccountRole(account_id=account_id, role=r) for r in sorted(roles)])
        self._session.add_all([models.AccountSite(account_id=account_id, site_id=s) for s in sorted(sites)])
        await self._session.flush()

    async def _accounts(self, rows: Sequence[models.Account]) -> list[Account]:
        ids = [row.id for row in rows]
        roles: dict[str, set[str]] = {i: set() for i in ids}
        sites: dict[str, set[str]] = {i: set() for i in ids}
        if ids:
            for role in (await self._session.execute(
                    select(models.AccountRole).where(col(models.AccountRole.account_id).in_(ids)))).scalars():
                roles[role.account_id].add(role.role)
            for site in (await self._session.execute(
                    select(models.AccountSite).where(col(models.AccountSite.account_id).in_(ids)))).scalars():
                sites[site.account_id].add(site.site_id)
        return [Account(account_id=row.id, email=row.email, name=row.name, password_hash=row.password_hash,
                        roles=frozenset(roles[row.id]), sites=frozenset(sites[row.id]), created_at=row.created_at,
                        updated_at=row.updated_at, email_verified=row.email_verified, disabled=row.disabled,
                        language=row.language, time_zone=row.time_zone) for row in rows]

    # --- refresh tokens -----------------------------------------------------------------------

    async def add_family(self, family: RefreshFamily) -> None:
        self._session.add(models.RefreshFamily(id=family.family_id, account_id=family.account_id,
                                               created_at=family.created_at, revoked_at=family.revoked_at))
        await self._session.flush()

    async def get_family(self, family_id: str) -> RefreshFamily | None:
        row = await self._session.get(models.RefreshFamily, family_id)
        return None if row is None else RefreshFamily(family_id=row.id, account_id=row.account_id,
                                                      created_at=row.created_at, revoked_at=row.revoked_at)

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        await self._session.execute(update(models.RefreshFamily)
                                    .where(col(models.RefreshFamily.id) == family_id,
                                           col(models.RefreshFamily.revoked_at).is_(None))
                                    .values(revoked_at=now))

    async def revoke_families_of(self, account_id: str, now: datetime) -> None:
        await self._session.execute(update(models.RefreshFamily)
                                    .where(col(models.RefreshFamily.account_id) == account_id,
                                           col(models.RefreshFamily.revoked_at).is_(None))
                                    .values(revoked_at=now))

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self._session.add(models.RefreshToken(token_hash=token.token_hash, family_id=token.family_id,
                                              account_id=token.account_id, issued_at=token.issued_at,
                                              expires_at=token.expires_at, used_at=token.used_at))
        await self._session.flush()

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        row = await self._session.get(models.RefreshToken, token_hash)
        return None if row is None else RefreshToken(token_hash=row.token_hash, family_id=row.family_id,
                                                     account_id=row.account_id, issued_at=row.issued_at,
                                                     expires_at=row.expires_at, used_at=row.used_at)

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        # Conditional, so that of two requests racing with one token only one rotates it.
        result = await self._session.execute(update(models.RefreshToken)
                                             .where(col(models.RefreshToken.token_hash) == token_hash,
                                                    col(models.RefreshToken.used_at).is_(None))
                                             .values(used_at=now))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # --- link tokens --------------------------------------------------------------------------

    async def add_link_token(self, token: LinkToken) -> None:
        self._session.add(models.LinkToken(token_hash=token.token_hash, account_id=token.account_id,
                                           purpose=token.purpose.value, created_at=token.created_at,
                                           expires_at=token.expires_at, used_at=token.used_at))
        await self._session.flush()

    async def get_link_token(self, token_hash: str) -> LinkToken | None:
        row = await self._session.get(models.LinkToken, token_hash)
        return None if row is None else LinkToken(token_hash=row.token_hash, account_id=row.account_id,
                                                  purpose=LinkPurpose(row.purpose), created_at=row.created_at,
                                                  expires_at=row.expires_at, used_at=row.used_at)

    async def use_link_token(self, token_hash: str, now: datetime) -> bool:
        result = await self._session.execute(update(models.LinkToken)
                                             .where(col(models.LinkToken.token_hash) == token_hash,
                                                    col(models.LinkToken.used_at).is_(None))
                                             .values(used_at=now))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def use_link_tokens_of(self, account_id: str, purpose: LinkPurpose, now: datetime) -> None:
        await self._session.execute(update(models.LinkToken)
                                    .where(col(models.LinkToken.account_id) == account_id,
                                           col(models.LinkToken.purpose) == purpose.value,
                                           col(models.LinkToken.used_at).is_(None))
                                    .values(used_at=now))

    # --- API keys -----------------------------------------------------------------------------

    async def add_api_key(self, key: ApiKey) -> None:
        self._session.add(models.ApiKey(id=key.api_key_id, account_id=key.account_id, name=key.name,
                                        key_hash=key.key_hash, created_at=key.created_at, revoked_at=key.revoked_at))
        await self._session.flush()

    async def get_api_key(self, api_key_id: str) -> ApiKey | None:
        row = await self._session.get(models.ApiKey, api_key_id)
        return None if row is None else _api_key(row)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        row = (await self._session.execute(
            select(models.ApiKey).where(col(models.ApiKey.key_hash) == key_hash))).scalars().first()
        return None if row is None else _api_key(row)

    async def save_api_key(self, key: ApiKey) -> None:
        row = await self._session.get(models.ApiKey, key.api_key_id)
        if row is None:
            raise LookupError(f"no API key {key.api_key_id!r} to save")
        row.name, row.revoked_at = key.name, key.revoked_at
        await self._session.flush()


def _api_key(row: models.ApiKey) -> ApiKey:
    return ApiKey(api_key_id=row.id, account_id=row.account_id, name=row.name, key_hash=row.key_hash,
                  created_at=row.created_at, revoked_at=row.revoked_at)
