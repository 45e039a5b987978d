"""The pure rules of who may see and change a site (``cloud.parking.domain``)."""

from __future__ import annotations

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.identity import ADMIN, DRIVER, OPERATOR, TECHNICIAN, Forbidden, Principal
from cloud.parking import domain
from tests.support.identity import PRINCIPALS

HIDDEN = NotFound("hidden", code="unknown_site")


def caller(*roles: str, sites: tuple[str, ...] = ()) -> Principal:
    return Principal(subject="acc-x", roles=frozenset(roles), sites=frozenset(sites))


@pytest.mark.parametrize("who, site_id, answer", [
    (caller(ADMIN), "any-site", None),
    (caller(OPERATOR, sites=("s1", "s2")), "s2", None),
    (caller(TECHNICIAN, sites=("s1",)), "s1", None),
    (caller(OPERATOR, sites=("s1",)), "s2", NotFound),
    (caller(TECHNICIAN, sites=("s1",)), "s2", NotFound),
    (caller(OPERATOR), "s1", NotFound),  # an operator of no site yet
    (caller(DRIVER), "s1", Forbidden),
    (caller(), "s1", Forbidden),  # a token with no role this service knows
    (caller(DRIVER, OPERATOR, sites=("s1",)), "s1", None),
])
def test_who_sees_a_sites_details(who: Principal, site_id: str, answer: type[Exception] | None) -> None:
    if answer is None:
        domain.check_may_see_site(who, site_id, hidden=HIDDEN)
        return
    with pytest.raises(answer) as refused:
        domain.check_may_see_site(who, site_id, hidden=HIDDEN)
    if answer is NotFound:
        assert refused.value is HIDDEN, "exactly the answer for an unknown site"


@pytest.mark.parametrize("who, site_id, answer", [
    (caller(ADMIN), "any-site", None),
    (caller(OPERATOR, sites=("s1", "s2")), "s1", None),
    (caller(TECHNICIAN, sites=("s1",)), "s1", Forbidden),
    (caller(OPERATOR, sites=("s1",)), "s2", NotFound),
    (caller(TECHNICIAN, sites=("s1",)), "s2", NotFound),
    (caller(DRIVER), "s1", Forbidden),
    (caller(), "s1", Forbidden),
])
def test_who_changes_a_sites_power_limit(who: Principal, site_id: str, answer: type[Exception] | None) -> None:
    if answer is None:
        domain.check_may_change_power_limit(who, site_id)
        return
    with pytest.raises(answer) as refused:
        domain.check_may_change_power_limit(who, site_id)
    if answer is NotFound:
        hidden = refused.value
        assert isinstance(hidden, NotFound)
        unknown = domain.unknown_site(site_id)
        assert (hidden.status, hidden.code, hidden.detail) == (unknown.status, unknown.code, unknown.detail)


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_everybody_signed_in_sees_availability(who: str) -> None:
    domain.check_may_see_availability(PRINCIPALS[who])
