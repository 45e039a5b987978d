"""The vehicle registry's pure rules: plates, idTags, and what each site's authorization list lacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.contracts.identity import Forbidden, Principal
from cloud.vehicles import domain
from mqtt import IdTagStatus, SiteHello
from tests.support.identity import PRINCIPALS


def test_plates_are_normalised() -> None:
    assert domain.normalise_plate("  ev-123   pk ") == "EV-123 PK"


@pytest.mark.parametrize("plate", ["", "-AB", "AB$1", "X" * 17])
def test_bad_plates_are_refused_naming_the_plate(plate: str) -> None:
    with pytest.raises(domain.InvalidVehicle, match="plate"):
        domain.normalise_plate(plate)


@pytest.mark.parametrize("tags", [(), ("A" * 21,), ("has space",), ("dup", "dup"), ("dup", "DUP"),
                                  tuple(f"T{i}" for i in range(11))])
def test_bad_id_tags_are_refused(tags: tuple[str, ...]) -> None:
    with pytest.raises(domain.InvalidVehicle) as raised:
        domain.check_id_tags(tags)
    assert raised.value.code == "invalid_id_tags"


def test_ocpp_sized_id_tags_are_accepted() -> None:
    assert domain.check_id_tags(("04A2B3C4D5E6F7A8B9C0", "app:7f3a")) == ("04A2B3C4D5E6F7A8B9C0", "app:7f3a")


# --- the authorization list a lagging site needs ---------------------------------------

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def change(version: int, id_tag: str, status: IdTagStatus = IdTagStatus.ACCEPTED,
           vehicle_id: str | None = "v1") -> domain.AuthListChange:
    return domain.AuthListChange(id_tag=id_tag, status=status, vehicle_id=vehicle_id, changed_at=T0, version=version)


def test_only_a_site_at_version_0_needs_the_full_list() -> None:
    assert domain.needs_full_list(0)
    assert not domain.needs_full_list(1)


def test_the_full_list_names_every_id_tag_by_id_tag() -> None:
    tags = [domain.IdTag(id_tag=t, vehicle_id="v1", status=IdTagStatus.ACCEPTED, created_at=T0) for t in ("B", "A")]
    update = domain.full_update(7, tags)
    assert (update.full, update.version, update.since_version) == (True, 7, 0)
    assert [(e.id_tag, e.status, e.vehicle_id) for e in update.entries] == [("A", "Accepted", "v1"),
                                                                           ("B", "Accepted", "v1")]


def test_a_lagging_site_gets_the_latest_change_of_each_id_tag_since_its_version() -> None:
    changes = [change(4, "A", IdTagStatus.BLOCKED), change(2, "A"), change(3, "B"), change(5, "C"),
               change(6, "B", IdTagStatus.EXPIRED)]
    update = domain.changes_update(2, 6, changes)
    assert (update.full, update.version, update.since_version) == (False, 6, 2)
    assert [(e.id_tag, e.status) for e in update.entries] == [("B", "Expired"), ("A", "Blocked"), ("C", "Accepted")]


def test_a_pending_update_is_awaited_for_resend_after_then_resent() -> None:
    site = domain.SiteSync(site_id="s1", last_seen_at=T0, synced_version=1)
    site.sending("cmd-1", 3, T0)
    assert not site.needs_update(3, T0 + domain.RESEND_AFTER - timedelta(seconds=1))
    assert site.needs_update(3, T0 + domain.RESEND_AFTER)


def test_a_site_claiming_a_version_never_issued_starts_again_from_0() -> None:
    site = domain.SiteSync(site_id="s1", last_seen_at=T0, synced_version=5)
    site.said_hello(SiteHello(edge_version="t", authlist_version=999), current_version=9)
    assert site.synced_version == 0
    site.said_hello(SiteHello(edge_version="t", authlist_version=9), current_version=9)
    assert site.synced_version == 9


# --- who may do what ---------------------------------------------------------------------

def vehicle_of(owner_id: str | None) -> domain.Vehicle:
    return domain.Vehicle(vehicle_id="v1", plate="A1", make=None, model=None, created_at=T0, owner_id=owner_id)


@pytest.mark.parametrize("who, owner", [("driver_a", "acc-driver-a"), ("driver_b", "acc-driver-b"),
                                        ("admin", "acc-admin")])
def test_a_driver_or_an_admin_registers_and_owns_the_vehicle(who: str, owner: str) -> None:
    assert domain.check_may_register(PRINCIPALS[who]) == owner
    domain.check_may_search(PRINCIPALS[who])


@pytest.mark.parametrize("who", ["operator_1", "operator_2", "technician_1"])
def test_operators_and_technicians_neither_register_nor_look_vehicles_up(who: str) -> None:
    with pytest.raises(Forbidden):
        domain.check_may_register(PRINCIPALS[who])
    with pytest.raises(Forbidden):
        domain.check_may_search(PRINCIPALS[who])


def test_a_caller_with_no_role_is_refused() -> None:
    nobody = Principal(subject="acc-nobody", roles=frozenset())
    with pytest.raises(Forbidden):
        domain.check_may_register(nobody)
    with pytest.raises(Forbidden):
        domain.check_may_search(nobody)
    assert not domain.visible_to(nobody, vehicle_of("acc-nobody-else"))


@pytest.mark.parametrize("who, sees_own_of_a, sees_unowned", [
    ("driver_a", True, False),
    ("driver_b", False, False),
    ("operator_1", False, False),
    ("operator_2", False, False),
    ("technician_1", False, False),
    ("admin", True, True),
])
def test_only_the_owner_or_an_admin_sees_a_vehicle(who: str, sees_own_of_a: bool, sees_unowned: bool) -> None:
    assert domain.visible_to(PRINCIPALS[who], vehicle_of("acc-driver-a")) is sees_own_of_a
    assert domain.visible_to(PRINCIPALS[who], vehicle_of(None)) is sees_unowned


def test_an_unseen_vehicle_is_answered_as_an_unknown_one() -> None:
    error = domain.unknown_vehicle("v1")
    assert (error.status, error.code, error.detail) == (404, "unknown_vehicle", "no vehicle 'v1'")
