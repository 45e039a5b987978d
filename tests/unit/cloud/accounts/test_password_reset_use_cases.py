"""Password reset: the same answer for any email, a single-use short-lived link, every login ended."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.accounts.domain import ChangeAccount, InvalidCredentials, InvalidLinkToken, RefreshRefused, WeakPassword
from cloud.accounts.service import AccountService
from cloud.contracts.accounts import PasswordResetRequested
from cloud.platform.identity import Principal
from tests.unit.cloud.accounts.conftest import PASSWORD, Units
from tests.unit.cloud.accounts.fakes import Clock, RecordingMail

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
async def ada(accounts: AccountService, units: Units, mail: RecordingMail) -> str:
    account_id = (await accounts.register("ada@example.com", PASSWORD, "Ada")).account_id
    units.events.clear()
    mail.sent.clear()
    return account_id


async def reset_token(accounts: AccountService, mail: RecordingMail) -> str:
    await accounts.request_password_reset("ada@example.com")
    return mail.token_of_last()


async def test_password_reset_answers_the_same_for_known_and_unknown_emails(
        accounts: AccountService, ada: str, units: Units, mail: RecordingMail, clock: Clock) -> None:
    known = await accounts.request_password_reset("Ada@Example.com")
    unknown = await accounts.request_password_reset("nobody@example.com")
    assert known == unknown
    assert units.names() == ["account.password_reset_requested"], "only the existing account gets a link"
    event = units.events[0]
    assert isinstance(event, PasswordResetRequested)
    assert (event.account_id, event.email) == (ada, "ada@example.com")
    assert event.url.startswith("https://evpark.example/auth/password-reset/confirm?token=")
    assert event.expires_at == clock.now + timedelta(minutes=30)
    assert [m[0] for m in mail.sent] == ["ada@example.com"]


async def test_the_reset_link_sets_the_password_and_ends_every_login(accounts: AccountService, ada: str,
                                                                     mail: RecordingMail) -> None:
    phone = await accounts.login("ada@example.com", PASSWORD)
    laptop = await accounts.login("ada@example.com", PASSWORD)
    await accounts.reset_password(await reset_token(accounts, mail), NEW_PASSWORD)
    for tokens in (phone, laptop):
        with pytest.raises(RefreshRefused):
            await accounts.refresh(tokens.refresh_token)
    with pytest.raises(InvalidCredentials):
        await accounts.login("ada@example.com", PASSWORD)
    assert (await accounts.login("ada@example.com", NEW_PASSWORD)).access_token


async def test_the_reset_token_is_single_use(accounts: AccountService, ada: str, mail: RecordingMail) -> None:
    token = await reset_token(accounts, mail)
    await accounts.reset_password(token, NEW_PASSWORD)
    with pytest.raises(InvalidLinkToken) as again:
        await accounts.reset_password(token, "yet another passphrase")
    assert (again.value.status, again.value.code) == (400, "invalid_reset_token")
    assert (await accounts.login("ada@example.com", NEW_PASSWORD)).access_token


async def test_a_reset_ends_the_other_reset_links_of_the_account(accounts: AccountService, ada: str,
                                                                 mail: RecordingMail) -> None:
    older = await reset_token(accounts, mail)
    newer = await reset_token(accounts, mail)
    await accounts.reset_password(newer, NEW_PASSWORD)
    with pytest.raises(InvalidLinkToken):
        await accounts.reset_password(older, "yet another passphrase")


async def test_the_reset_token_expires_after_30_minutes(accounts: AccountService, ada: str, clock: Clock,
                                                        mail: RecordingMail) -> None:
    token = await reset_token(accounts, mail)
    clock.advance(timedelta(minutes=30))
    with pytest.raises(InvalidLinkToken):
        await accounts.reset_password(token, NEW_PASSWORD)
    assert (await accounts.login("ada@example.com", PASSWORD)).access_token


async def test_a_weak_new_password_is_refused_and_the_link_still_works(accounts: AccountService, ada: str,
                                                                       mail: RecordingMail) -> None:
    token = await reset_token(accounts, mail)
    with pytest.raises(WeakPassword):
        await accounts.reset_password(token, "ada@example.com")
    await accounts.reset_password(token, NEW_PASSWORD)


async def test_a_verification_token_does_not_reset_a_password(accounts: AccountService, mail: RecordingMail
                                                              ) -> None:
    await accounts.register("bob@example.com", PASSWORD, "Bob")
    with pytest.raises(InvalidLinkToken):
        await accounts.reset_password(mail.token_of_last(), NEW_PASSWORD)


async def test_a_disabled_account_gets_no_reset_link(accounts: AccountService, ada: str, admin: Principal,
                                                     units: Units, mail: RecordingMail) -> None:
    await accounts.change_account(admin, ada, ChangeAccount(disabled=True))
    await accounts.request_password_reset("ada@example.com")
    assert "account.password_reset_requested" not in units.names()
    assert mail.sent == []
