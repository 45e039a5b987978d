"""What an admin manages: accounts with roles and site scopes, and API keys for machine clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from cloud.accounts.domain import (
    DRIVER,
    OPERATOR,
    TECHNICIAN,
    ChangeAccount,
    EmailTaken,
    InvalidAccount,
    InvalidCredentials,
    NewAccount,
    secret_hash,
)
from cloud.accounts.service import AccountService
from cloud.contracts.accounts import AccountUpdated
from cloud.contracts.errors import Conflict, NotFound
from cloud.platform.identity import Forbidden, Principal, TokenVerifier
from tests.unit.cloud.accounts.conftest import PASSWORD, Units
from tests.unit.cloud.accounts.fakes import Clock

OLGA = NewAccount(email="olga@garage.example", name="Olga", roles=frozenset({OPERATOR}), sites=frozenset({"s1"}))


async def test_only_an_admin_manages_accounts(accounts: AccountService, admin: Principal) -> None:
    target = (await accounts.create_account(admin, OLGA)).account_id
    calls: list[Callable[[Principal], Awaitable[Any]]] = [
        lambda who: accounts.create_account(who, NewAccount(email="x@example.com", name="X")),
        lambda who: accounts.list_accounts(who, limit=10, offset=0),
        lambda who: accounts.change_account(who, target, ChangeAccount(disabled=True)),
        lambda who: accounts.create_api_key(who, target, "export"),
        lambda who: accounts.revoke_api_key(who, target, "k"),
    ]
    operator = Principal(subject=target, roles=frozenset({OPERATOR}), sites=frozenset({"s1"}))
    for call in calls:
        with pytest.raises(Forbidden):
            await call(operator)


async def test_an_admin_creates_an_operator_whose_generated_password_is_shown_once_and_works(
        accounts: AccountService, admin: Principal, units: Units, verifier: TokenVerifier) -> None:
    created = await accounts.create_account(admin, OLGA)
    assert created.password is not None and len(created.password) >= 20
    assert (created.roles, created.sites, created.email_verified) == (["operator"], ["s1"], False)
    assert units.names()[-2:] == ["account.registered", "account.email_verification_requested"]
    tokens = await accounts.login("olga@garage.example", created.password)
    assert (await verifier.verify(tokens.access_token)).sites == frozenset({"s1"})
    chosen = await accounts.create_account(admin, NewAccount(email="tom@garage.example", name="Tom",
                                                             password="tom's own password",
                                                             roles=frozenset({TECHNICIAN}), sites=frozenset({"s1"})))
    assert chosen.password is None, "a password the admin chose is not echoed"


async def test_scopes_must_fit_the_roles(accounts: AccountService, admin: Principal) -> None:
    with pytest.raises(InvalidAccount) as no_site:
        await accounts.create_account(admin, NewAccount(email="o@example.com", name="O", roles=frozenset({OPERATOR})))
    assert no_site.value.code == "sites_required"
    with pytest.raises(InvalidAccount) as driver_site:
        await accounts.create_account(admin, NewAccount(email="d@example.com", name="D", roles=frozenset({DRIVER}),
                                                        sites=frozenset({"s1"})))
    assert driver_site.value.code == "sites_not_allowed"


async def test_an_admin_cannot_create_a_second_account_with_the_same_email(accounts: AccountService,
                                                                          admin: Principal) -> None:
    await accounts.create_account(admin, OLGA)
    with pytest.raises(EmailTaken):
        await accounts.create_account(admin, OLGA)


async def test_accounts_are_listed_oldest_first_by_page_and_by_role(accounts: AccountService, admin: Principal,
                                                                    clock: Clock) -> None:
    clock.advance(timedelta(minutes=1))
    await accounts.create_account(admin, OLGA)
    clock.advance(timedelta(minutes=1))
    await accounts.register("ada@example.com", PASSWORD, "Ada")
    first = await accounts.list_accounts(admin, limit=2, offset=0)
    assert (first.total, first.limit, first.offset) == (3, 2, 0)
    assert [a.email for a in first.items] == ["root@evpark.example", "olga@garage.example"]
    second = await accounts.list_accounts(admin, limit=2, offset=2)
    assert [a.email for a in second.items] == ["ada@example.com"]
    drivers = await accounts.list_accounts(admin, limit=10, offset=0, role="driver")
    assert ([a.email for a in drivers.items], drivers.total) == (["ada@example.com"], 1)


async def test_a_change_publishes_account_updated_and_an_empty_change_publishes_nothing(
        accounts: AccountService, admin: Principal, units: Units) -> None:
    olga = await accounts.create_account(admin, OLGA)
    changed = await accounts.change_account(admin, olga.account_id,
                                            ChangeAccount(sites=frozenset({"s1", "s2"}), name="Olga K."))
    assert (changed.sites, changed.name) == (["s1", "s2"], "Olga K.")
    assert units.events[-1] == AccountUpdated(account_id=olga.account_id, email="olga@garage.example",
                                              name="Olga K.", roles=["operator"], sites=["s1", "s2"])
    count = len(units.events)
    await accounts.change_account(admin, olga.account_id, ChangeAccount(name="Olga K."))
    assert len(units.events) == count


async def test_changing_roles_checks_the_scopes_they_need(accounts: AccountService, admin: Principal) -> None:
    olga = await accounts.create_account(admin, OLGA)
    with pytest.raises(InvalidAccount):
        await accounts.change_account(admin, olga.account_id, ChangeAccount(roles=frozenset({DRIVER})))
    demoted = await accounts.change_account(admin, olga.account_id,
                                            ChangeAccount(roles=frozenset({DRIVER}), sites=frozenset()))
    assert (demoted.roles, demoted.sites) == (["driver"], [])


async def test_an_admin_cannot_lock_themselves_out(accounts: AccountService, admin: Principal) -> None:
    with pytest.raises(Conflict):
        await accounts.change_account(admin, admin.subject, ChangeAccount(disabled=True))


async def test_an_unknown_account_is_not_found(accounts: AccountService, admin: Principal) -> None:
    with pytest.raises(NotFound):
        await accounts.change_account(admin, "nope", ChangeAccount(disabled=True))
    with pytest.raises(NotFound):
        await accounts.create_api_key(admin, "nope", "export")


async def test_an_api_key_is_shown_once_stored_hashed_and_acts_with_its_accounts_roles_and_sites(
        accounts: AccountService, admin: Principal, units: Units, verifier: TokenVerifier) -> None:
    olga = await accounts.create_account(admin, OLGA)
    key = await accounts.create_api_key(admin, olga.account_id, "billing export")
    assert key.api_key.startswith("evk_") and len(key.api_key) > 40
    stored = units.repo.api_keys[key.api_key_id]
    assert stored.key_hash == secret_hash(key.api_key) and key.api_key not in str(stored)
    token = await accounts.token_for_api_key(key.api_key)
    principal = await verifier.verify(token.access_token)
    assert (principal.subject, principal.roles, principal.sites) == (olga.account_id, frozenset({OPERATOR}),
                                                                     frozenset({"s1"}))
    assert token.expires_in == 15 * 60


async def test_a_revoked_key_an_unknown_key_and_a_disabled_accounts_key_give_no_token(
        accounts: AccountService, admin: Principal) -> None:
    olga = await accounts.create_account(admin, OLGA)
    revoked = await accounts.create_api_key(admin, olga.account_id, "old")
    kept = await accounts.create_api_key(admin, olga.account_id, "new")
    await accounts.revoke_api_key(admin, olga.account_id, revoked.api_key_id)
    for api_key in (revoked.api_key, "evk_made-up", "not-even-a-key"):
        with pytest.raises(InvalidCredentials) as refused:
            await accounts.token_for_api_key(api_key)
        assert (refused.value.status, refused.value.code) == (401, "invalid_api_key")
    assert (await accounts.token_for_api_key(kept.api_key)).access_token
    await accounts.change_account(admin, olga.account_id, ChangeAccount(disabled=True))
    with pytest.raises(InvalidCredentials):
        await accounts.token_for_api_key(kept.api_key)


async def test_revoking_a_key_of_another_account_is_not_found(accounts: AccountService, admin: Principal) -> None:
    olga = await accounts.create_account(admin, OLGA)
    key = await accounts.create_api_key(admin, olga.account_id, "export")
    with pytest.raises(NotFound):
        await accounts.revoke_api_key(admin, admin.subject, key.api_key_id)
