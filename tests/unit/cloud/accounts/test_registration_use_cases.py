"""Registering a driver account and verifying its email."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.accounts.domain import EmailTaken, InvalidAccount, InvalidLinkToken, WeakPassword
from cloud.accounts.service import AccountService
from cloud.contracts.accounts import AccountRegistered, AccountUpdated, EmailVerificationRequested
from tests.unit.cloud.accounts.conftest import PASSWORD, Units
from tests.unit.cloud.accounts.fakes import Clock, CountingPasswords, RecordingMail


async def test_registering_opens_an_unverified_driver_account_with_its_email_in_lower_case(
        accounts: AccountService, units: Units) -> None:
    view = await accounts.register(" Ada@Example.COM ", PASSWORD, " Ada  Lovelace ")
    assert view.model_dump(exclude={"account_id", "created_at"}) == {
        "email": "ada@example.com", "name": "Ada Lovelace", "roles": ["driver"], "sites": [],
        "email_verified": False, "disabled": False, "language": "en", "time_zone": "UTC"}
    stored = units.repo.accounts[view.account_id]
    assert stored.password_hash == f"plain${PASSWORD}", "what the password port made of it"


async def test_registering_publishes_the_account_and_a_verification_link_valid_48_hours(
        accounts: AccountService, units: Units, clock: Clock, mail: RecordingMail) -> None:
    view = await accounts.register("ada@example.com", PASSWORD, "Ada")
    assert units.names() == ["account.registered", "account.email_verification_requested"]
    registered, link = units.events
    assert registered == AccountRegistered(account_id=view.account_id, email="ada@example.com", name="Ada",
                                           roles=["driver"], sites=[], email_verified=False)
    assert isinstance(link, EmailVerificationRequested)
    assert link.url.startswith("https://evpark.example/auth/verify-email?token=")
    assert link.expires_at == clock.now + timedelta(hours=48)
    assert mail.sent == [("ada@example.com", "Verify your evpark email address", link.url, link.expires_at)]


async def test_the_verification_token_is_stored_only_as_its_hash(accounts: AccountService, units: Units,
                                                                 mail: RecordingMail) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    token = mail.token_of_last()
    assert token not in units.repo.link_tokens
    assert all(token not in str(link) for link in units.repo.link_tokens.values())


async def test_an_email_registered_already_is_a_conflict_whatever_its_case(accounts: AccountService,
                                                                          units: Units) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    with pytest.raises(EmailTaken) as refused:
        await accounts.register("ADA@example.com", "another password", "Ada II")
    assert (refused.value.status, refused.value.code) == (409, "email_taken")
    assert units.names() == ["account.registered", "account.email_verification_requested"]


async def test_a_weak_password_is_refused_before_any_hashing(accounts: AccountService, units: Units,
                                                            passwords: CountingPasswords) -> None:
    with pytest.raises(WeakPassword) as short:
        await accounts.register("ada@example.com", "too short", "Ada")
    assert short.value.code == "password_too_short"
    with pytest.raises(WeakPassword) as same:
        await accounts.register("ada@example.com", "ADA@example.com", "Ada")
    assert same.value.code == "password_is_email"
    with pytest.raises(InvalidAccount):
        await accounts.register("not an email", PASSWORD, "Ada")
    assert passwords.hashes == 0 and units.events == [] and units.repo.accounts == {}


async def test_the_verification_link_verifies_the_email_once(accounts: AccountService, units: Units,
                                                            mail: RecordingMail) -> None:
    view = await accounts.register("ada@example.com", PASSWORD, "Ada")
    verified = await accounts.verify_email(mail.token_of_last())
    assert verified.model_dump() == {"account_id": view.account_id, "email": "ada@example.com",
                                     "email_verified": True}
    assert units.repo.accounts[view.account_id].email_verified
    assert isinstance(units.events[-1], AccountUpdated) and units.events[-1].email_verified
    with pytest.raises(InvalidLinkToken) as again:
        await accounts.verify_email(mail.token_of_last())
    assert again.value.status == 400
    assert units.names().count("account.updated") == 1


async def test_the_verification_link_expires_after_48_hours(accounts: AccountService, clock: Clock,
                                                           mail: RecordingMail) -> None:
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    clock.advance(timedelta(hours=48))
    with pytest.raises(InvalidLinkToken):
        await accounts.verify_email(mail.token_of_last())


async def test_an_unknown_verification_token_is_refused(accounts: AccountService) -> None:
    with pytest.raises(InvalidLinkToken):
        await accounts.verify_email("made-up")
