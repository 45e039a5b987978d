"""Refresh tokens: rotation, reuse revoking the family, logout, disabled accounts, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.accounts.domain import ChangeAccount, InvalidCredentials, RefreshRefused, secret_hash
from cloud.accounts.service import AccountService
from cloud.platform.identity import Principal, TokenVerifier
from tests.unit.cloud.accounts.conftest import PASSWORD, Units
from tests.unit.cloud.accounts.fakes import Clock


@pytest.fixture
async def ada(accounts: AccountService) -> str:
    return (await accounts.register("ada@example.com", PASSWORD, "Ada")).account_id


async def refused_code(accounts: AccountService, refresh_token: str) -> str:
    with pytest.raises(RefreshRefused) as refused:
        await accounts.refresh(refresh_token)
    assert refused.value.status == 401
    return refused.value.code


async def test_refreshing_rotates_the_token_and_gives_a_new_access_token(
        accounts: AccountService, ada: str, verifier: TokenVerifier) -> None:
    first = await accounts.login("ada@example.com", PASSWORD)
    second = await accounts.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert (await verifier.verify(second.access_token)).subject == ada
    third = await accounts.refresh(second.refresh_token)
    assert (await verifier.verify(third.access_token)).subject == ada


async def test_refresh_token_reuse_revokes_the_whole_family(accounts: AccountService, ada: str) -> None:
    stolen = await accounts.login("ada@example.com", PASSWORD)
    rotated = await accounts.refresh(stolen.refresh_token)
    assert await refused_code(accounts, stolen.refresh_token) == "refresh_token_reused"
    assert await refused_code(accounts, rotated.refresh_token) == "refresh_token_revoked", \
        "the token rotated from the reused one stops working too"
    assert await refused_code(accounts, stolen.refresh_token) == "refresh_token_revoked"


async def test_reuse_leaves_the_accounts_other_logins_alone(accounts: AccountService, ada: str) -> None:
    phone = await accounts.login("ada@example.com", PASSWORD)
    laptop = await accounts.login("ada@example.com", PASSWORD)
    await accounts.refresh(phone.refresh_token)
    await refused_code(accounts, phone.refresh_token)
    assert (await accounts.refresh(laptop.refresh_token)).access_token


async def test_a_disabled_accounts_refresh_tokens_stop_at_once_and_its_login_is_refused(
        accounts: AccountService, ada: str, admin: Principal, units: Units) -> None:
    tokens = await accounts.login("ada@example.com", PASSWORD)
    await accounts.change_account(admin, ada, ChangeAccount(disabled=True))
    assert all(f.revoked_at is not None for f in units.repo.families.values() if f.account_id == ada)
    assert await refused_code(accounts, tokens.refresh_token) == "refresh_token_revoked"
    with pytest.raises(InvalidCredentials):
        await accounts.login("ada@example.com", PASSWORD)


async def test_a_disabled_account_is_refused_even_if_its_family_escaped_revocation(
        accounts: AccountService, ada: str, units: Units) -> None:
    tokens = await accounts.login("ada@example.com", PASSWORD)
    units.repo.accounts[ada].disabled = True  # e.g. a login racing the admin's change
    assert await refused_code(accounts, tokens.refresh_token) == "refresh_token_account_disabled"


async def test_logout_revokes_the_family(accounts: AccountService, ada: str) -> None:
    tokens = await accounts.login("ada@example.com", PASSWORD)
    rotated = await accounts.refresh(tokens.refresh_token)
    await accounts.logout(tokens.refresh_token)  # any token of the login ends it
    assert await refused_code(accounts, rotated.refresh_token) == "refresh_token_revoked"
    await accounts.logout("unknown")  # nothing to do, no error


async def test_a_refresh_token_expires_after_30_days(accounts: AccountService, ada: str, clock: Clock) -> None:
    tokens = await accounts.login("ada@example.com", PASSWORD)
    clock.advance(timedelta(days=29))
    rotated = await accounts.refresh(tokens.refresh_token)
    clock.advance(timedelta(days=30))
    assert await refused_code(accounts, rotated.refresh_token) == "refresh_token_expired"


async def test_refresh_tokens_are_stored_only_as_their_hash(accounts: AccountService, ada: str,
                                                           units: Units) -> None:
    tokens = await accounts.login("ada@example.com", PASSWORD)
    assert list(units.repo.refresh_tokens) == [secret_hash(tokens.refresh_token)]
    assert await refused_code(accounts, "made-up") == "refresh_token_unknown"
