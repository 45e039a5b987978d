"""Who may read and change a site's tariff: the pure rules, for each kind of caller.

``site-1`` is operator_1's and technician_1's, ``site-2`` operator_2's. The expected answers are
written out, not derived from the rules under test.
"""

from __future__ import annotations

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden, Principal
from cloud.payments import domain
from tests.support.identity import PRINCIPALS

ALLOWED, HIDDEN, FORBIDDEN = "allowed", "404", "403"

READ_SITE_1 = {"driver_a": ALLOWED, "driver_b": ALLOWED, "operator_1": ALLOWED, "operator_2": HIDDEN,
               "technician_1": ALLOWED, "admin": ALLOWED}
CHANGE_SITE_1 = {"driver_a": FORBIDDEN, "driver_b": FORBIDDEN, "operator_1": ALLOWED, "operator_2": HIDDEN,
                 "technician_1": FORBIDDEN, "admin": ALLOWED}
SEES_WHO_CHANGED_SITE_1 = {"driver_a": False, "driver_b": False, "operator_1": True, "operator_2": False,
                           "technician_1": True, "admin": True}


def outcome(check: object, user: Principal, site_id: str) -> str:
    try:
        check(user, site_id)  # type: ignore[operator]
    except NotFound as exc:
        assert exc.detail == domain.no_tariff(site_id).detail and exc.code == "unknown_tariff"
        return HIDDEN
    except Forbidden:
        return FORBIDDEN
    return ALLOWED


def test_the_tables_name_every_caller() -> None:
    for table in (READ_SITE_1, CHANGE_SITE_1, SEES_WHO_CHANGED_SITE_1):
        assert set(table) == set(PRINCIPALS)


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_who_reads_the_tariff_of_site_1(who: str) -> None:
    assert outcome(domain.check_may_read_tariff, PRINCIPALS[who], "site-1") == READ_SITE_1[who]


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_who_changes_the_tariff_of_site_1(who: str) -> None:
    assert outcome(domain.check_may_change_tariff, PRINCIPALS[who], "site-1") == CHANGE_SITE_1[who]


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_who_sees_which_account_set_the_tariff(who: str) -> None:
    assert domain.may_see_who_changed(PRINCIPALS[who], "site-1") is SEES_WHO_CHANGED_SITE_1[who]


def test_an_operator_changes_only_the_sites_they_operate() -> None:
    operator_2 = PRINCIPALS["operator_2"]
    assert outcome(domain.check_may_change_tariff, operator_2, "site-2") == ALLOWED
    assert outcome(domain.check_may_read_tariff, operator_2, "site-2") == ALLOWED


def test_a_caller_without_a_role_is_forbidden() -> None:
    nobody = Principal(subject="acc-nobody", roles=frozenset())
    assert outcome(domain.check_may_read_tariff, nobody, "site-1") == FORBIDDEN
    assert outcome(domain.check_may_change_tariff, nobody, "site-1") == FORBIDDEN


def test_every_caller_may_ask_for_an_estimate() -> None:
    for user in PRINCIPALS.values():
        domain.check_may_estimate(user)
