"""Logging in: tokens, the same answer for a wrong password and an unknown email, the throttle."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.accounts.domain import ADMIN, OPERATOR, ChangeAccount, InvalidCredentials, LoginThrottled, NewAccount
from cloud.accounts.service import AccountService
from cloud.platform.identity import Principal, TokenVerifier
from tests.unit.cloud.accounts.conftest import PASSWORD
from tests.unit.cloud.accounts.fakes import Clock, CountingPasswords


async def test_login_gives_an_access_token_with_roles_sites_and_verification_and_a_refresh_token(
        accounts: AccountService, verifier: TokenVerifier) -> None:
    created = await accounts.provision(NewAccount(email="olga@garage.example", name="Olga", password=PASSWORD,
                                                  roles=frozenset({OPERATOR}), sites=frozenset({"s1", "s2"})))
    tokens = await accounts.login("Olga@Garage.example", PASSWORD)
    assert (tokens.token_type, tokens.expires_in) == ("bearer", 15 * 60)
    assert tokens.refresh_token and tokens.refresh_token != tokens.access_token
    assert await verifier.verify(tokens.access_token) == Principal(
        subject=created.account.account_id, roles=frozenset({OPERATOR}), sites=frozenset({"s1", "s2"}),
        email_verified=False, name="Olga")


async def test_a_wrong_password_and_an_unknown_email_give_the_same_answer_at_the_same_cost(
        accounts: AccountService, passwords: CountingPasswords) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    before = passwords.verifications
    with pytest.raises(InvalidCredentials) as wrong_password:
        await accounts.login("ada@example.com", "not the password")
    assert passwords.verifications == before + 1
    with pytest.raises(InvalidCredentials) as unknown_email:
        await accounts.login("nobody@example.com", "not the password")
    assert passwords.verifications == before + 2, "an unknown email costs one password hash too"
    answers = [(e.value.status, e.value.title, e.value.detail, e.value.code) for e in (wrong_password, unknown_email)]
    assert answers[0] == answers[1] == (401, "Unauthorized", "the email or the password is wrong",
                                        "invalid_credentials")


async def test_login_is_throttled_after_five_failures_until_the_window_ends(accounts: AccountService,
                                                                           clock: Clock) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await accounts.login("ada@example.com", "guess guess guess")
        clock.advance(timedelta(minutes=1))
    with pytest.raises(LoginThrottled) as throttled:
        await accounts.login("ada@example.com", PASSWORD)  # even the right password waits
    assert throttled.value.status == 429
    assert throttled.value.retry_after_seconds == 10 * 60, "the window opened with the first failure, 5 min ago"
    clock.advance(timedelta(minutes=10))
    assert (await accounts.login("ada@example.com", PASSWORD)).access_token


async def test_the_throttle_counts_unknown_emails_the_same_so_it_reveals_no_accounts(accounts: AccountService
                                                                                    ) -> None:
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await accounts.login("nobody@example.com", "guess guess guess")
    with pytest.raises(LoginThrottled):
        await accounts.login("nobody@example.com", "guess guess guess")


async def test_the_throttle_holds_per_account(accounts: AccountService) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    for _ in range(6):
        with pytest.raises((InvalidCredentials, LoginThrottled)):
            await accounts.login("mallory@example.com", "guess guess guess")
    assert (await accounts.login("ada@example.com", PASSWORD)).access_token


async def test_a_successful_login_forgets_earlier_failures(accounts: AccountService) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    for _ in range(4):
        with pytest.raises(InvalidCredentials):
            await accounts.login("ada@example.com", "typo typo typo")
    await accounts.login("ada@example.com", PASSWORD)
    for _ in range(4):
        with pytest.raises(InvalidCredentials):
            await accounts.login("ada@example.com", "typo typo typo")
    assert (await accounts.login("ada@example.com", PASSWORD)).access_token


async def test_a_disabled_account_cannot_log_in(accounts: AccountService, admin: Principal) -> None:
    view = await accounts.register("ada@example.com", PASSWORD, "Ada")
    await accounts.change_account(admin, view.account_id, ChangeAccount(disabled=True))
    with pytest.raises(InvalidCredentials) as refused:
        await accounts.login("ada@example.com", PASSWORD)
    assert refused.value.code == "account_disabled"


async def test_me_is_the_callers_own_account(accounts: AccountService, verifier: TokenVerifier) -> None:
    created = await accounts.provision(NewAccount(email="root@example.com", name="Root", password=PASSWORD,
                                                  roles=frozenset({ADMIN}), email_verified=True))
    caller = await verifier.verify((await accounts.login("root@example.com", PASSWORD)).access_token)
    assert await accounts.me(caller) == created.account
