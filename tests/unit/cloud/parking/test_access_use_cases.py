"""Who may see and change a site, through every REST use case, for each kind of caller.

Sites are the resources: ``site-1`` (operator_1's and technician_1's) and ``site-2``
(operator_2's) are known; ``nowhere`` is not. The expected answers are written out below, not
derived from the rules under test.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden, Principal
from cloud.parking.domain import InvalidPowerLimit
from cloud.parking.service import ParkingService
from cloud.platform.cache import MemoryCache
from tests.support.identity import PRINCIPALS
from tests.support.uow import MemoryUnits
from tests.unit.cloud.parking.conftest import EdgeSite, Units
from tests.unit.cloud.parking.fakes import InMemoryParkingRepository

OK, FORBIDDEN, NOT_FOUND = "ok", 403, 404
WHO = ("driver_a", "driver_b", "operator_1", "operator_2", "technician_1", "admin")

Call = Callable[[ParkingService, Principal, str], Awaitable[Any]]

USE_CASES: dict[str, Call] = {
    "site": lambda p, user, site_id: p.site(user, site_id),
    "bays": lambda p, user, site_id: p.bays(user, site_id),
    "bays?usage=blocked": lambda p, user, site_id: p.bays(user, site_id, ["blocked"]),
    "chargers": lambda p, user, site_id: p.chargers(user, site_id),
    "availability": lambda p, user, site_id: p.availability(user, site_id),
    "power_limit": lambda p, user, site_id: p.power_limit(user, site_id),
    "request_power_limit": lambda p, user, site_id: p.request_power_limit(user, site_id, limit_a=40.0, limit_w=None),
}

# (use case, site) → the answer for driver_a, driver_b, operator_1, operator_2, technician_1, admin
EXPECTED: dict[tuple[str, str], tuple[object, ...]] = {
    ("site", "site-1"): (FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, OK, OK),
    ("site", "site-2"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, OK, NOT_FOUND, OK),
    ("site", "nowhere"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
    ("bays", "site-1"): (FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, OK, OK),
    ("bays", "site-2"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, OK, NOT_FOUND, OK),
    ("bays", "nowhere"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
    ("bays?usage=blocked", "site-1"): (FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, OK, OK),
    ("bays?usage=blocked", "site-2"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, OK, NOT_FOUND, OK),
    ("chargers", "site-1"): (FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, OK, OK),
    ("chargers", "site-2"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, OK, NOT_FOUND, OK),
    ("chargers", "nowhere"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
    ("availability", "site-1"): (OK, OK, OK, OK, OK, OK),
    ("availability", "site-2"): (OK, OK, OK, OK, OK, OK),
    ("availability", "nowhere"): (NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
    ("power_limit", "site-1"): (FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, OK, OK),
    ("power_limit", "site-2"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, OK, NOT_FOUND, OK),
    ("power_limit", "nowhere"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
    ("request_power_limit", "site-1"): (FORBIDDEN, FORBIDDEN, OK, NOT_FOUND, FORBIDDEN, OK),
    ("request_power_limit", "site-2"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, OK, NOT_FOUND, OK),
    ("request_power_limit", "nowhere"): (FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, NOT_FOUND, NOT_FOUND),
}

CASES = [(use_case, site_id, who, answer) for (use_case, site_id), answers in EXPECTED.items()
         for who, answer in zip(WHO, answers, strict=True)]


@pytest.fixture
async def two_sites(parking: ParkingService, units: Units) -> ParkingService:
    for site_id in ("site-1", "site-2"):
        await EdgeSite(parking, units, site_id).inventory()
    return parking


def test_every_use_case_and_site_has_an_expected_answer() -> None:
    assert {use_case for use_case, _ in EXPECTED} == set(USE_CASES)


async def outcome(call: Awaitable[Any]) -> tuple[object, Exception | None]:
    try:
        await call
    except Forbidden as refused:
        return FORBIDDEN, refused
    except NotFound as hidden:
        return NOT_FOUND, hidden
    return OK, None


@pytest.mark.parametrize("use_case, site_id, who, expected", CASES,
                         ids=[f"{u}-{s}-{w}" for u, s, w, _ in CASES])
async def test_the_caller_gets_the_answer_of_the_table(two_sites: ParkingService, use_case: str, site_id: str,
                                                       who: str, expected: object) -> None:
    answer, _ = await outcome(USE_CASES[use_case](two_sites, PRINCIPALS[who], site_id))
    assert answer == expected


@pytest.mark.parametrize("use_case", sorted(set(USE_CASES) - {"availability"}))
@pytest.mark.parametrize("who, site_id", [("operator_2", "site-1"), ("operator_1", "site-2"),
                                          ("technician_1", "site-2")])
async def test_another_sites_resource_is_answered_exactly_as_an_unknown_site(
        two_sites: ParkingService, use_case: str, who: str, site_id: str) -> None:
    # what the same use case answers an admin when that site does not exist at all
    nothing = ParkingService(MemoryUnits(InMemoryParkingRepository()), MemoryCache())
    _, unknown = await outcome(USE_CASES[use_case](nothing, PRINCIPALS["admin"], site_id))
    _, hidden = await outcome(USE_CASES[use_case](two_sites, PRINCIPALS[who], site_id))
    assert isinstance(unknown, NotFound) and isinstance(hidden, NotFound)
    assert (hidden.status, hidden.code, hidden.detail) == (unknown.status, unknown.code, unknown.detail)


async def test_a_driver_is_told_why_and_where_to_look_instead(two_sites: ParkingService) -> None:
    with pytest.raises(Forbidden, match="availability is open to every account"):
        await two_sites.bays(PRINCIPALS["driver_a"], "site-1")
    with pytest.raises(Forbidden, match="only an admin or an operator of the site"):
        await two_sites.request_power_limit(PRINCIPALS["driver_a"], "site-1", limit_a=40.0, limit_w=None)
    with pytest.raises(Forbidden, match="a technician sees it but does not change it"):
        await two_sites.request_power_limit(PRINCIPALS["technician_1"], "site-1", limit_a=40.0, limit_w=None)


@pytest.mark.parametrize("who, site_id, refused", [
    ("driver_a", "site-1", Forbidden), ("technician_1", "site-1", Forbidden), ("operator_2", "site-1", NotFound),
    ("technician_1", "site-2", NotFound), ("operator_1", "site-1", InvalidPowerLimit),
    ("admin", "site-1", InvalidPowerLimit)])
async def test_the_caller_is_checked_before_the_limit(two_sites: ParkingService, who: str, site_id: str,
                                                       refused: type[Exception]) -> None:
    """A malformed limit is explained only to a caller who may change it."""
    with pytest.raises(refused):
        await two_sites.request_power_limit(PRINCIPALS[who], site_id, limit_a=None, limit_w=None)
    # the check the API makes before it reads the body answers the same
    if refused is InvalidPowerLimit:
        two_sites.check_may_change_power_limit(PRINCIPALS[who], site_id)
    else:
        with pytest.raises(refused):
            two_sites.check_may_change_power_limit(PRINCIPALS[who], site_id)


@pytest.mark.parametrize("who", ["driver_a", "technician_1", "operator_2"])
async def test_a_refused_power_limit_changes_and_sends_nothing(two_sites: ParkingService,
                                                              repo: InMemoryParkingRepository, who: str) -> None:
    with pytest.raises((Forbidden, NotFound)):
        await two_sites.request_power_limit(PRINCIPALS[who], "site-1", limit_a=40.0, limit_w=None)
    assert repo.sites["site-1"].power_request is None
    assert not two_sites.power_sync_wanted.is_set()


async def test_the_operator_of_the_site_changes_its_limit_and_its_technician_sees_it(
        two_sites: ParkingService) -> None:
    requested = await two_sites.request_power_limit(PRINCIPALS["operator_1"], "site-1", limit_a=40.0, limit_w=None)
    assert requested.status == "pending" and two_sites.power_sync_wanted.is_set()
    seen = await two_sites.power_limit(PRINCIPALS["technician_1"], "site-1")
    assert seen == requested
    assert (await two_sites.site(PRINCIPALS["technician_1"], "site-1")).power.request_status == "pending"


async def test_drivers_see_the_same_availability_as_the_sites_operator(two_sites: ParkingService) -> None:
    for_operator = await two_sites.availability(PRINCIPALS["operator_1"], "site-1")
    assert for_operator.total == 3
    for who in ("driver_a", "driver_b", "operator_2", "technician_1", "admin"):
        assert await two_sites.availability(PRINCIPALS[who], "site-1") == for_operator
