"""Who sees what of a vehicle's sessions: the pure rules."""

from __future__ import annotations

import pytest

from cloud.charging import domain
from cloud.charging.domain import EVERYTHING, ReaderScope
from cloud.contracts.identity import Forbidden, Principal
from tests.support.identity import PRINCIPALS

OWNER = PRINCIPALS["driver_a"].subject

SITE_1 = ReaderScope(sites=frozenset({"site-1"}), shows_id_tags=False)
SITE_2 = ReaderScope(sites=frozenset({"site-2"}), shows_id_tags=False)


@pytest.mark.parametrize("who, owner, scope", [
    ("driver_a", OWNER, EVERYTHING),
    ("driver_b", OWNER, None),
    ("operator_1", OWNER, SITE_1),
    ("operator_2", OWNER, SITE_2),
    ("technician_1", OWNER, SITE_1),
    ("admin", OWNER, EVERYTHING),
    ("driver_a", None, None),  # a vehicle of a 1.0 event belongs to no driver
    ("driver_b", None, None),
    ("operator_1", None, SITE_1),
    ("admin", None, EVERYTHING),
])
def test_the_reader_scope_of_each_caller(who: str, owner: str | None, scope: ReaderScope | None) -> None:
    assert domain.reader_scope(PRINCIPALS[who], owner) == scope


def test_a_caller_without_a_role_never_reads_sessions() -> None:
    with pytest.raises(Forbidden):
        domain.reader_scope(Principal(subject=OWNER, roles=frozenset()), OWNER)


def test_an_operator_without_sites_sees_no_vehicle() -> None:
    assert domain.reader_scope(Principal(subject="acc-op", roles=frozenset({"operator"})), OWNER) is None


def test_a_scope_shows_its_sites_and_hides_idtags_from_site_staff() -> None:
    assert (EVERYTHING.covers("site-9"), EVERYTHING.id_tag("TAG")) == (True, "TAG")
    assert (SITE_1.covers("site-1"), SITE_1.covers("site-2"), SITE_1.id_tag("TAG")) == (True, False, None)


@pytest.mark.parametrize("scope, at_sites, sees", [
    (EVERYTHING, False, True), (SITE_1, True, True), (SITE_1, False, False), (None, True, False)])
def test_site_staff_see_a_vehicle_only_once_it_charged_at_their_sites(
        scope: ReaderScope | None, at_sites: bool, sees: bool) -> None:
    assert domain.sees_vehicle(scope, at_sites) is sees
