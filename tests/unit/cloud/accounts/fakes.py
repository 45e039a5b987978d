"""In-memory stand-ins for the accounts service's ports, for unit tests of its use cases."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta

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


class InMemoryAccountRepository:
    """:class:`~cloud.accounts.repository.AccountRepository` in dicts; hands out copies, as a database would."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.families: dict[str, RefreshFamily] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.link_tokens: dict[str, LinkToken] = {}
        self.api_keys: dict[str, ApiKey] = {}

    async def get(self, account_id: str) -> Account | None:
        return copy.deepcopy(self.accounts.get(account_id))

    async def find_by_email(self, email: str) -> Account | None:
        found = [a for a in self.accounts.values() if a.email == email]
        return copy.deepcopy(found[0]) if found else None

    async def add(self, account: Account) -> None:
        if any(a.email == account.email for a in self.accounts.values()):
            raise EmailTaken(account.email)
        self.accounts[account.account_id] = copy.deepcopy(account)

    async def save(self, account: Account) -> None:
        assert account.account_id in self.accounts
        self.accounts[account.account_id] = copy.deepcopy(account)

    async def page(self, *, limit: int, offset: int, role: str | None = None) -> AccountPage:
        matching = sorted((a for a in self.accounts.values() if role is None or role in a.roles),
                          key=lambda a: (a.created_at, a.email))
        return AccountPage(accounts=copy.deepcopy(matching[offset:offset + limit]), total=len(matching))

    async def add_family(self, family: RefreshFamily) -> None:
        self.families[family.family_id] = copy.deepcopy(family)

    async def get_family(self, family_id: str) -> RefreshFamily | None:
        return copy.deepcopy(self.families.get(family_id))

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        family = self.families.get(family_id)
        if family is not None and family.revoked_at is None:
            family.revoked_at = now

    async def revoke_families_of(self, account_id: str, now: datetime) -> None:
        for family in self.families.values():
            if family.account_id == account_id and family.revoked_at is None:
                family.revoked_at = now

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self.refresh_tokens[token.token_hash] = copy.deepcopy(token)

    async def get_refresh_token(self, token_hash: str) -> RefreshToken | None:
        return copy.deepcopy(self.refresh_tokens.get(token_hash))

    async def use_refresh_token(self, token_hash: str, now: datetime) -> bool:
        token = self.refresh_tokens.get(token_hash)
        if token is None or token.used_at is not None:
            return False
        token.used_at = now
        return True

    async def add_link_token(self, token: LinkToken) -> None:
        self.link_tokens[token.token_hash] = copy.deepcopy(token)

    async def get_link_token(self, token_hash: str) -> LinkToken | None:
        return copy.deepcopy(self.link_tokens.get(token_hash))

    async def use_link_token(self, token_hash: str, now: datetime) -> bool:
        token = self.link_tokens.get(token_hash)
        if token is None or token.used_at is not None:
            return False
        token.used_at = now
        return True

    async def use_link_tokens_of(self, account_id: str, purpose: LinkPurpose, now: datetime) -> None:
        for token in self.link_tokens.values():
            if token.account_id == account_id and token.purpose == purpose and token.used_at is None:
                token.used_at = now

    async def add_api_key(self, key: ApiKey) -> None:
        self.api_keys[key.api_key_id] = copy.deepcopy(key)

    async def get_api_key(self, api_key_id: str) -> ApiKey | None:
        return copy.deepcopy(self.api_keys.get(api_key_id))

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        found = [k for k in self.api_keys.values() if k.key_hash == key_hash]
        return copy.deepcopy(found[0]) if found else None

    async def save_api_key(self, key: ApiKey) -> None:
        self.api_keys[key.api_key_id] = replace(key)


class CountingPasswords:
    """A fast stand-in for argon2 that counts the work done, so tests can see a login's cost."""

    def __init__(self) -> None:
        self.hashes = 0
        self.verifications = 0

    async def hash(self, password: str) -> str:
        self.hashes += 1
        return f"plain${password}"

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        self.verifications += 1
        return hashed == f"plain${password}", None


class RecordingMail:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, datetime]] = []

    async def send(self, to: str, subject: str, url: str, expires_at: datetime) -> None:
        self.sent.append((to, subject, url, expires_at))

    def token_of_last(self) -> str:
        return self.sent[-1][2].split("token=", 1)[1]


class Clock:
    """The service's wall clock and the cache's monotonic clock, moved together."""

    def __init__(self) -> None:
        self.start = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
        self.now = self.start

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - self.start).total_seconds()

    def advance(self, by: timedelta) -> None:
        self.now += by
