from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cloud.accounts.adapters import SignedAccessTokens
from cloud.accounts.domain import ADMIN, NewAccount
from cloud.accounts.service import AccountPolicy, AccountService
from cloud.platform.cache import MemoryCache
from cloud.platform.identity import KeyRing, Principal, TokenVerifier
from tests.support.uow import MemoryUnits
from tests.unit.cloud.accounts.fakes import Clock, CountingPasswords, InMemoryAccountRepository, RecordingMail

Units = MemoryUnits[InMemoryAccountRepository]
PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def units() -> Units:
    return MemoryUnits(InMemoryAccountRepository())


@pytest.fixture
def passwords() -> CountingPasswords:
    return CountingPasswords()


@pytest.fixture
def mail() -> RecordingMail:
    return RecordingMail()


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys", "k1")


@pytest.fixture
def verifier(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(issuer="evpark", audience="evpark", jwks=ring.jwks())


@pytest.fixture
def accounts(units: Units, passwords: CountingPasswords, mail: RecordingMail, ring: KeyRing,
             clock: Clock) -> AccountService:
    tokens = SignedAccessTokens(ring, issuer="evpark", audience="evpark", lifetime=timedelta(minutes=15))
    return AccountService(units, passwords=passwords, tokens=tokens, cache=MemoryCache(clock=clock.monotonic),
                          mail=mail, policy=AccountPolicy(public_url="https://evpark.example"), clock=clock)


@pytest.fixture
async def admin(accounts: AccountService) -> Principal:
    created = await accounts.provision(NewAccount(email="root@evpark.example", name="Root", password=PASSWORD,
                                                  roles=frozenset({ADMIN}), email_verified=True))
    return Principal(subject=created.account.account_id, roles=frozenset({ADMIN}))
