"""Who reads a vehicle's charging status and history: every kind of caller, on the in-memory repository.

The vehicles (the expected answers below are written out, not derived from the rules under test):

- ``veh-a`` of driver A, idTags TAG-A1 and TAG-A2: running ``site-1:1`` (TAG-A1) and ``site-2:3``
  (TAG-A2); completed ``site-1:2`` (TAG-A1) and ``site-2:4`` (TAG-A2).
- ``veh-b`` of driver B, idTag TAG-B: running ``site-2:5``, completed ``site-2:6`` (only site 2).
- ``veh-c`` of driver A, idTag TAG-C: only completed ``site-1:7`` (nothing running).
- ``veh-x`` of a 1.0 event (no owner), idTag TAG-X: running ``site-1:8``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden, Principal
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.charging.conftest import T0, Charging, registered, started, stopped

A, B = PRINCIPALS["driver_a"].subject, PRINCIPALS["driver_b"].subject
NOBODY = Principal(subject="acc-no-role", roles=frozenset())

NOT_FOUND = 404

# (site:transaction id, id_tag shown) of each session in the answer, in the answer's order; 404: not found.
STATUS: dict[tuple[str, str], list[tuple[str, str | None]] | int] = {
    ("veh-a", "driver_a"): [("site-2:3", "TAG-A2"), ("site-1:1", "TAG-A1")],
    ("veh-a", "driver_b"): NOT_FOUND,
    ("veh-a", "operator_1"): [("site-1:1", None)],
    ("veh-a", "operator_2"): [("site-2:3", None)],
    ("veh-a", "technician_1"): [("site-1:1", None)],
    ("veh-a", "admin"): [("site-2:3", "TAG-A2"), ("site-1:1", "TAG-A1")],
    ("veh-b", "driver_a"): NOT_FOUND,
    ("veh-b", "driver_b"): [("site-2:5", "TAG-B")],
    ("veh-b", "operator_1"): NOT_FOUND,
    ("veh-b", "operator_2"): [("site-2:5", None)],
    ("veh-b", "technician_1"): NOT_FOUND,
    ("veh-b", "admin"): [("site-2:5", "TAG-B")],
    ("veh-c", "driver_a"): [],
    ("veh-c", "driver_b"): NOT_FOUND,
    ("veh-c", "operator_1"): [],  # it charged at site 1 before: known, not charging now
    ("veh-c", "operator_2"): NOT_FOUND,
    ("veh-c", "technician_1"): [],
    ("veh-c", "admin"): [],
    ("veh-x", "driver_a"): NOT_FOUND,
    ("veh-x", "driver_b"): NOT_FOUND,
    ("veh-x", "operator_1"): [("site-1:8", None)],
    ("veh-x", "operator_2"): NOT_FOUND,
    ("veh-x", "technician_1"): [("site-1:8", None)],
    ("veh-x", "admin"): [("site-1:8", "TAG-X")],
    ("nope", "driver_a"): NOT_FOUND,
    ("nope", "driver_b"): NOT_FOUND,
    ("nope", "operator_1"): NOT_FOUND,
    ("nope", "operator_2"): NOT_FOUND,
    ("nope", "technician_1"): NOT_FOUND,
    ("nope", "admin"): NOT_FOUND,
}

HISTORY: dict[tuple[str, str], list[tuple[str, str | None]] | int] = {
    ("veh-a", "driver_a"): [("site-2:4", "TAG-A2"), ("site-1:2", "TAG-A1")],
    ("veh-a", "driver_b"): NOT_FOUND,
    ("veh-a", "operator_1"): [("site-1:2", None)],
    ("veh-a", "operator_2"): [("site-2:4", None)],
    ("veh-a", "technician_1"): [("site-1:2", None)],
    ("veh-a", "admin"): [("site-2:4", "TAG-A2"), ("site-1:2", "TAG-A1")],
    ("veh-b", "driver_a"): NOT_FOUND,
    ("veh-b", "driver_b"): [("site-2:6", "TAG-B")],
    ("veh-b", "operator_1"): NOT_FOUND,
    ("veh-b", "operator_2"): [("site-2:6", None)],
    ("veh-b", "technician_1"): NOT_FOUND,
    ("veh-b", "admin"): [("site-2:6", "TAG-B")],
    ("veh-c", "driver_a"): [("site-1:7", "TAG-C")],
    ("veh-c", "driver_b"): NOT_FOUND,
    ("veh-c", "operator_1"): [("site-1:7", None)],
    ("veh-c", "operator_2"): NOT_FOUND,
    ("veh-c", "technician_1"): [("site-1:7", None)],
    ("veh-c", "admin"): [("site-1:7", "TAG-C")],
    ("veh-x", "driver_a"): NOT_FOUND,
    ("veh-x", "driver_b"): NOT_FOUND,
    ("veh-x", "operator_1"): [],  # running at site 1: known there, nothing completed yet
    ("veh-x", "operator_2"): NOT_FOUND,
    ("veh-x", "technician_1"): [],
    ("veh-x", "admin"): [],
    ("nope", "driver_a"): NOT_FOUND,
    ("nope", "driver_b"): NOT_FOUND,
    ("nope", "operator_1"): NOT_FOUND,
    ("nope", "operator_2"): NOT_FOUND,
    ("nope", "technician_1"): NOT_FOUND,
    ("nope", "admin"): NOT_FOUND,
}


@pytest.fixture
async def garage(charging: Charging) -> Charging:
    service = charging.service
    await service.on_vehicle_registered(registered("veh-a", "TAG-A1", "TAG-A2", owner=A))
    await service.on_vehicle_registered(registered("veh-b", "TAG-B", owner=B))
    await service.on_vehicle_registered(registered("veh-c", "TAG-C", owner=A))
    await service.on_vehicle_registered(registered("veh-x", "TAG-X", owner=None))
    sessions = [  # (site, transaction, idTag, start minute, completed)
        ("site-1", 1, "TAG-A1", 10, False), ("site-1", 2, "TAG-A1", 0, True),
        ("site-2", 3, "TAG-A2", 20, False), ("site-2", 4, "TAG-A2", 5, True),
        ("site-2", 5, "TAG-B", 0, False), ("site-2", 6, "TAG-B", 0, True),
        ("site-1", 7, "TAG-C", 0, True), ("site-1", 8, "TAG-X", 0, False),
    ]
    for site, tx, tag, minute, done in sessions:
        await charging.receive(started(transaction_id=tx, id_tag=tag, at=T0 + timedelta(minutes=minute)), site)
        if done:
            await charging.receive(stopped(transaction_id=tx, at=T0 + timedelta(hours=1, minutes=minute)), site)
    return charging


async def _answer(read) -> list[tuple[str, str | None]] | int:  # type: ignore[no-untyped-def]
    try:
        view = await read
    except NotFound as refused:
        assert refused.code == "unknown_vehicle"
        return NOT_FOUND
    return [(f"{s.site_id}:{s.transaction_id}", s.id_tag) for s in view.sessions]


@pytest.mark.parametrize("vehicle, who", sorted(STATUS))
async def test_status_answers_each_caller_as_the_table_says(garage: Charging, vehicle: str, who: str) -> None:
    answer = await _answer(garage.service.status(PRINCIPALS[who], vehicle))
    assert answer == STATUS[vehicle, who]
    if isinstance(answer, list):  # charging means: something shown is running
        assert (await garage.service.status(PRINCIPALS[who], vehicle)).charging == bool(answer)


@pytest.mark.parametrize("vehicle, who", sorted(HISTORY))
async def test_history_answers_each_caller_as_the_table_says(garage: Charging, vehicle: str, who: str) -> None:
    answer = await _answer(garage.service.history(PRINCIPALS[who], vehicle, limit=50, offset=0))
    assert answer == HISTORY[vehicle, who]


@pytest.mark.parametrize("vehicle, who", sorted(STATUS))
async def test_status_answers_the_same_from_a_cache_the_owner_filled(garage: Charging, vehicle: str,
                                                                     who: str) -> None:
    if vehicle != "nope":
        await garage.service.status(PRINCIPALS["admin"], vehicle)  # the full view, idTags and all, is cached
    assert await _answer(garage.service.status(PRINCIPALS[who], vehicle)) == STATUS[vehicle, who]


async def test_an_operator_never_gets_the_owners_cached_idtags(garage: Charging) -> None:
    owner_view = await garage.service.status(PRINCIPALS["driver_a"], "veh-a")
    assert {s.id_tag for s in owner_view.sessions} == {"TAG-A1", "TAG-A2"}
    cached = await garage.cache.get("charging:status:veh-a")
    assert cached is not None and b"TAG-A1" in cached
    garage.repo.sessions.clear()  # behind the service's back: only the cache can answer now
    for who, site in (("operator_1", "site-1"), ("technician_1", "site-1"), ("operator_2", "site-2")):
        view = await garage.service.status(PRINCIPALS[who], "veh-a")
        assert [(s.site_id, s.id_tag) for s in view.sessions] == [(site, None)]
        assert b"TAG-A" not in view.model_dump_json().encode()
    assert await garage.service.status(PRINCIPALS["driver_a"], "veh-a") == owner_view


async def test_an_operator_reading_first_does_not_hide_idtags_from_the_owner(garage: Charging) -> None:
    assert [s.id_tag for s in (await garage.service.status(PRINCIPALS["operator_1"], "veh-a")).sessions] == [None]
    owner_view = await garage.service.status(PRINCIPALS["driver_a"], "veh-a")
    assert [s.id_tag for s in owner_view.sessions] == ["TAG-A2", "TAG-A1"]


async def test_another_drivers_vehicle_answers_exactly_as_an_unknown_one(garage: Charging) -> None:
    with pytest.raises(NotFound) as theirs:
        await garage.service.status(PRINCIPALS["driver_b"], "veh-a")
    garage.repo.owners.clear()  # now veh-a is unknown to the service
    garage.repo.vehicle_owners.clear()
    await garage.cache.delete("charging:status:veh-a")
    with pytest.raises(NotFound) as unknown:
        await garage.service.status(PRINCIPALS["admin"], "veh-a")
    assert (theirs.value.detail, theirs.value.code) == (unknown.value.detail, unknown.value.code)


async def test_an_operators_history_pages_over_their_sites_only(garage: Charging) -> None:
    for n in range(10, 14):  # more of veh-a's completed sessions at site 2, later than any at site 1
        await garage.receive(started(transaction_id=n, id_tag="TAG-A2", at=T0 + timedelta(hours=n)), "site-2")
        await garage.receive(stopped(transaction_id=n, at=T0 + timedelta(hours=n + 1)), "site-2")
    page = await garage.service.history(PRINCIPALS["operator_1"], "veh-a", limit=1, offset=0)
    assert [f"{s.site_id}:{s.transaction_id}" for s in page.sessions] == ["site-1:2"]
    assert (await garage.service.history(PRINCIPALS["operator_1"], "veh-a", limit=1, offset=1)).sessions == []
    owner = await garage.service.history(PRINCIPALS["driver_a"], "veh-a", limit=2, offset=0)
    assert [f"{s.site_id}:{s.transaction_id}" for s in owner.sessions] == ["site-2:13", "site-2:12"]


async def test_a_caller_without_any_role_is_refused(garage: Charging) -> None:
    with pytest.raises(Forbidden):
        await garage.service.status(NOBODY, "veh-a")
    with pytest.raises(Forbidden):
        await garage.service.history(NOBODY, "veh-a", limit=10, offset=0)
