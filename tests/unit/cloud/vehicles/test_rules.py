"""The vehicle registry's pure rules: plates, idTags, and what each site's authorization list lacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloud.vehicles import domain
from mqtt import IdTagStatus, SiteHello


def test_plates_are_normalised() -> None:
    assert domain.normalise_plate("  ev-123   pk ") == "EV-123 PK"


@pytest.mark.parametrize("plate", ["", "-AB", "AB$1", "X" * 17])
def test_bad_plates_are_refused_naming_the_plate(plate: str) -> None:
    with pytest.raises(domain.InvalidVehicle, match="plate"):
        domain.normalise_plate(plate)


@pytest.mark.parametrize("tags", [(), ("A" * 21,), ("has space",), ("dup", "dup"), tuple(f"T{i}" for i in range(11))])
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
