"""A site's link state from its link statuses (mqtt.link), its last will and its hellos, whatever
order they arrive in; and the list of sites (`evpark sites add`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.contracts.parking import SiteOffline, SiteOnline
from cloud.parking import domain
from cloud.parking.service import ParkingService
from mqtt.link import LinkStatus
from tests.unit.cloud.parking.conftest import ADMIN, T0, EdgeSite, Units


async def report(parking: ParkingService, units: Units, status: LinkStatus, site_id: str = "site-1") -> None:
    async with units() as uow:
        await parking.record_link_status(uow, site_id, status)


async def link_of(parking: ParkingService, site_id: str = "site-1") -> dict[str, object]:
    return (await parking.site(ADMIN, site_id)).model_dump()["link"]  # type: ignore[no-any-return]


async def test_online_then_stopped_then_a_new_connection_give_one_event_each(parking: ParkingService,
                                                                             units: Units) -> None:
    first = LinkStatus.for_connection(now=T0)
    await report(parking, units, first)
    await report(parking, units, first)  # the retained copy, delivered again on resubscribe
    await report(parking, units, first.offline("stopped"))
    second = LinkStatus.for_connection(now=T0 + timedelta(minutes=5))
    await report(parking, units, second)
    assert units.names() == ["parking.site_online", "parking.site_offline", "parking.site_online"]
    online, offline, back = units.events
    assert isinstance(online, SiteOnline) and online.offline_since is None and online.reason == "connected"
    assert isinstance(offline, SiteOffline) and offline.reason == "stopped" and offline.connected_at == T0
    assert isinstance(back, SiteOnline) and back.offline_since == offline.since
    assert (await link_of(parking))["state"] == "online"


async def test_the_will_of_an_older_connection_arriving_late_changes_nothing(parking: ParkingService,
                                                                           units: Units) -> None:
    old = LinkStatus.for_connection(now=T0)
    new = LinkStatus.for_connection(now=T0 + timedelta(seconds=3))
    await report(parking, units, old)
    await report(parking, units, new)  # reconnected before the broker gave up on the old connection
    await report(parking, units, old.offline("lost"))
    assert units.names() == ["parking.site_online"]
    link = await link_of(parking)
    assert (link["state"], link["connected_at"]) == ("online", new.connected_at)


async def test_a_late_copy_of_a_connections_online_does_not_undo_its_will(parking: ParkingService,
                                                                        units: Units) -> None:
    status = LinkStatus.for_connection(now=T0)
    await report(parking, units, status)
    await report(parking, units, status.offline("lost"))
    await report(parking, units, status)
    assert units.names() == ["parking.site_online", "parking.site_offline"]
    assert (await link_of(parking))["reason"] == "lost"


async def test_a_will_whose_online_was_never_seen_still_takes_the_site_offline(parking: ParkingService,
                                                                             units: Units, site: EdgeSite) -> None:
    await site.hello()  # an edge known from its hello only
    await report(parking, units, LinkStatus.for_connection(now=T0).offline("lost"))
    assert units.names() == ["parking.site_online", "parking.site_offline"]


async def test_a_hello_sets_the_link_only_for_edges_that_send_no_status(parking: ParkingService, units: Units,
                                                                       site: EdgeSite) -> None:
    await site.hello()
    assert units.names() == ["parking.site_online"]
    assert (await link_of(parking))["reason"] == "hello"
    status = LinkStatus.for_connection(now=T0)
    await report(parking, units, status)  # the edge sends statuses after all: already online, no event
    await report(parking, units, status.offline("stopped"))
    await site.hello()  # a hello from the outbox, late: the status decides now
    assert units.names() == ["parking.site_online", "parking.site_offline"]
    assert (await link_of(parking))["state"] == "offline"


async def test_a_site_never_heard_of_is_unknown(parking: ParkingService, site: EdgeSite) -> None:
    await site.inventory()
    link = await link_of(parking)
    assert (link["state"], link["since"]) == ("unknown", None)


async def test_a_site_is_registered_once_and_a_bad_or_reserved_id_is_refused(parking: ParkingService,
                                                                           units: Units) -> None:
    provisioned: list[str] = []

    async def provision(site_id: str) -> None:
        provisioned.append(site_id)

    await parking.register_site("garage-1", provision)
    with pytest.raises(domain.SiteExists):
        await parking.register_site("garage-1", provision)
    for bad in ("a/b", "", "evpark-parking"):
        with pytest.raises(domain.InvalidSiteId):
            await parking.register_site(bad, provision)
    assert provisioned == ["garage-1"]
    [listed] = await parking.list_sites()
    assert listed.site_id == "garage-1" and listed.registered_at is not None
