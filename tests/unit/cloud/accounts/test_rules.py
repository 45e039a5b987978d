"""The accounts rules on their own (domain.py): emails, passwords, roles and scopes, token verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.accounts import domain
from cloud.accounts.domain import (
    Account,
    ChangeAccount,
    InvalidAccount,
    LinkPurpose,
    LinkToken,
    RefreshFamily,
    RefreshToken,
    RefreshVerdict,
    WeakPassword,
)
from cloud.contracts.errors import Conflict
from cloud.platform import identity

NOW = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def account(**changes: object) -> Account:
    base = Account(account_id="a1", email="ada@example.com", name="Ada", password_hash="h",
                   roles=frozenset({domain.DRIVER}), sites=frozenset(), created_at=NOW, updated_at=NOW)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_the_roles_are_the_words_the_token_verifier_knows() -> None:
    assert domain.ROLES == identity.ROLES
    assert frozenset(identity.SITE_SCOPED) == domain.SITE_SCOPED


def test_an_email_is_kept_trimmed_and_in_lower_case() -> None:
    assert domain.normalise_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


@pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com",
                                   "ada@@example.com", "a" * 320 + "@example.com"])
def test_what_is_no_email_address_is_refused(email: str) -> None:
    with pytest.raises(InvalidAccount) as refused:
        domain.normalise_email(email)
    assert refused.value.code == "invalid_email"


def test_a_password_needs_ten_characters() -> None:
    with pytest.raises(WeakPassword) as refused:
        domain.check_password("ninechars", email="ada@example.com")
    assert refused.value.code == "password_too_short"
    assert domain.check_password("ten chars!", email="ada@example.com") == "ten chars!"


def test_a_password_that_is_the_email_is_refused_whatever_its_case() -> None:
    with pytest.raises(WeakPassword) as refused:
        domain.check_password("Ada@Example.com", email="ada@example.com")
    assert refused.value.code == "password_is_email"


def test_operators_and_technicians_need_sites_and_drivers_and_admins_have_none() -> None:
    assert domain.check_roles(["operator"], ["s1", "s2"]) == (frozenset({"operator"}), frozenset({"s1", "s2"}))
    assert domain.check_roles(["technician", "driver"], ["s1"])[1] == frozenset({"s1"})
    assert domain.check_roles(["admin"], []) == (frozenset({"admin"}), frozenset())
    for roles, sites, code in ((["operator"], [], "sites_required"), (["technician"], [], "sites_required"),
                               (["driver"], ["s1"], "sites_not_allowed"), (["admin"], ["s1"], "sites_not_allowed"),
                               ([], [], "invalid_roles"), (["root"], [], "invalid_roles"),
                               (["operator"], [""], "invalid_sites")):
        with pytest.raises(InvalidAccount) as refused:
            domain.check_roles(roles, sites)
        assert refused.value.code == code, (roles, sites)


def test_a_change_that_changes_nothing_returns_the_same_account() -> None:
    before = account()
    assert domain.change(before, ChangeAccount(name=" Ada "), actor_id="admin", now=NOW) is before


def test_a_change_keeps_what_it_does_not_name_and_stamps_the_time() -> None:
    before = account(roles=frozenset({"operator"}), sites=frozenset({"s1"}))
    later = NOW + timedelta(hours=1)
    after = domain.change(before, ChangeAccount(sites=frozenset({"s1", "s2"})), actor_id="admin", now=later)
    assert (after.roles, after.sites, after.updated_at) == (frozenset({"operator"}), frozenset({"s1", "s2"}), later)
    assert before.sites == frozenset({"s1"}), "the account given is not modified"


def test_an_admin_cannot_disable_or_demote_themselves() -> None:
    me = account(account_id="me", roles=frozenset({"admin"}))
    for command in (ChangeAccount(disabled=True), ChangeAccount(roles=frozenset({"driver"}))):
        with pytest.raises(Conflict) as refused:
            domain.change(me, command, actor_id="me", now=NOW)
        assert refused.value.code == "self_lockout"
    assert domain.change(me, ChangeAccount(disabled=True), actor_id="another admin", now=NOW).disabled


def test_a_refresh_token_is_judged_by_family_use_account_and_expiry() -> None:
    token = RefreshToken(token_hash="h", family_id="f", account_id="a1", issued_at=NOW,
                         expires_at=NOW + timedelta(days=30))
    family = RefreshFamily(family_id="f", account_id="a1", created_at=NOW)
    assert domain.judge_refresh(token, family, account(), NOW) is RefreshVerdict.VALID
    assert domain.judge_refresh(None, None, None, NOW) is RefreshVerdict.UNKNOWN
    used = RefreshToken(**{**token.__dict__, "used_at": NOW})
    assert domain.judge_refresh(used, family, account(), NOW) is RefreshVerdict.REUSED
    revoked = RefreshFamily(family_id="f", account_id="a1", created_at=NOW, revoked_at=NOW)
    assert domain.judge_refresh(used, revoked, account(), NOW) is RefreshVerdict.REVOKED, \
        "a revoked family stays revoked: no second revocation"
    assert domain.judge_refresh(token, family, account(disabled=True), NOW) is RefreshVerdict.ACCOUNT_DISABLED
    assert domain.judge_refresh(token, family, account(), NOW + timedelta(days=30)) is RefreshVerdict.EXPIRED


def test_a_link_token_works_once_for_its_purpose_before_it_expires() -> None:
    link = LinkToken(token_hash="h", account_id="a1", purpose=LinkPurpose.RESET_PASSWORD, created_at=NOW,
                     expires_at=NOW + domain.PASSWORD_RESET_LIFETIME)
    assert link.usable(LinkPurpose.RESET_PASSWORD, NOW + timedelta(minutes=29))
    assert not link.usable(LinkPurpose.RESET_PASSWORD, NOW + timedelta(minutes=30))
    assert not link.usable(LinkPurpose.VERIFY_EMAIL, NOW)
    link.used_at = NOW
    assert not link.usable(LinkPurpose.RESET_PASSWORD, NOW)


def test_secrets_are_stored_as_their_sha256() -> None:
    digest = domain.secret_hash("evk_abc")
    assert digest == domain.secret_hash("evk_abc") and len(digest) == 64 and "abc" not in digest


def test_retry_after_counts_whole_seconds_to_the_end_of_the_window() -> None:
    window = timedelta(minutes=15)
    assert domain.retry_after(NOW, window, NOW + timedelta(minutes=5)) == 600
    assert domain.retry_after(NOW, window, NOW + timedelta(minutes=5, milliseconds=500)) == 600
    assert domain.retry_after(NOW, window, NOW + timedelta(minutes=15, seconds=3)) == 1
    assert domain.retry_after(None, window, NOW) == 900
