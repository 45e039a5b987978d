from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.site import Site
from edge.store import Store
from mqtt.envelope import Command, CommandResult
from mqtt.payloads import AuthListEntry, AuthListUpdate, CommandStatus, IdTagStatus

SITE = "garage-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def site(tmp_path: Path, clock: Clock) -> AsyncIterator[Site]:
    async with await Store.open(tmp_path / "edge.db") as store:
        yield Site(store, site_id=SITE, heartbeat_interval=60, accept_unknown_chargers=False, clock=clock)


def update(version: int, *tags: str, full: bool = False, since: int = 0,
           status: IdTagStatus = IdTagStatus.ACCEPTED) -> AuthListUpdate:
    return AuthListUpdate(version=version, full=full, since_version=since,
                          entries=[AuthListEntry(id_tag=tag, status=status) for tag in tags])


async def results(site: Site) -> list[CommandResult]:
    return [CommandResult.model_validate(row.body) for row in await site.store.outbox_batch(1000)
            if row.type == "command.result"]


async def tags(site: Site) -> dict[str, IdTagStatus]:
    return {entry.id_tag: entry.status for entry in await site.store.auth_entries()}


async def test_a_full_list_replaces_and_a_delta_changes_the_auth_list(site: Site, clock: Clock) -> None:
    assert await site.handle_command(Command.new(SITE, update(1, "A", "B", full=True), now=clock.now)) == "accepted"
    assert await site.handle_command(
        Command.new(SITE, update(2, "B", since=1, status=IdTagStatus.BLOCKED), now=clock.now)) == "accepted"
    assert await tags(site) == {"A": IdTagStatus.ACCEPTED, "B": IdTagStatus.BLOCKED}
    assert await site.handle_command(Command.new(SITE, update(3, "C", full=True), now=clock.now)) == "accepted"
    assert await tags(site) == {"C": IdTagStatus.ACCEPTED}
    assert await site.store.authlist_version() == 3
    assert [r.data for r in await results(site)] == [{"authlist_version": v} for v in (1, 2, 3)]


async def test_a_stale_or_repeated_delta_changes_nothing_and_is_still_answered(site: Site, clock: Clock) -> None:
    await site.handle_command(Command.new(SITE, update(5, "A", full=True), now=clock.now))
    repeated = Command.new(SITE, update(5, "X", since=4), now=clock.now)
    assert await site.handle_command(repeated) == CommandStatus.ACCEPTED
    assert await tags(site) == {"A": IdTagStatus.ACCEPTED}
    assert (await results(site))[-1].detail == "already at version 5"


async def test_a_delta_after_a_gap_is_rejected_so_the_cloud_sends_the_full_list(site: Site, clock: Clock) -> None:
    await site.handle_command(Command.new(SITE, update(1, "A", full=True), now=clock.now))
    assert await site.handle_command(Command.new(SITE, update(4, "B", since=3), now=clock.now)) == "rejected"
    assert await tags(site) == {"A": IdTagStatus.ACCEPTED}
    assert (await results(site))[-1].data == {"authlist_version": 1}


async def test_an_expired_command_or_one_for_another_site_is_answered_and_not_applied(
        site: Site, clock: Clock) -> None:
    expired = Command.new(SITE, update(1, "A", full=True), ttl=timedelta(minutes=5),
                          now=clock.now - timedelta(minutes=6))
    elsewhere = Command.new("other-site", update(1, "A", full=True), now=clock.now)
    assert await site.handle_command(expired) == CommandStatus.EXPIRED
    assert await site.handle_command(elsewhere) == CommandStatus.REJECTED
    assert await tags(site) == {}
    assert [(r.command_id, r.status) for r in await results(site)] == [
        (expired.id, CommandStatus.EXPIRED), (elsewhere.id, CommandStatus.REJECTED)]


async def test_unknown_chargers_may_not_connect_or_boot_unless_registered(site: Site) -> None:
    assert not await site.may_connect("CP-9")
    assert not await site.boot_accepted("CP-9")
    await site.store.register_charger("CP-9")
    assert await site.may_connect("CP-9")
    assert not await site.boot_accepted("CP-9")  # known, but it has not booted yet


async def test_a_stopped_retry_with_an_unset_clock_is_a_new_session(site: Site) -> None:
    """An unset clock repeats 1970 timestamps after each reboot: not every equal start is a retry."""
    await site.store.register_charger("CP-1")
    first = await site.start_transaction("CP-1", connector_id=1, id_tag="T", meter_start=10,
                                         timestamp="1970-01-01T00:00:10Z")
    retry = await site.start_transaction("CP-1", connector_id=1, id_tag="T", meter_start=10,
                                         timestamp="1970-01-01T00:00:10Z")
    assert retry.duplicate and retry.transaction_id == first.transaction_id
    await site.stop_transaction("CP-1", transaction_id=first.transaction_id, meter_stop=10,
                                timestamp="1970-01-01T00:01:00Z")
    after_reboot = await site.start_transaction("CP-1", connector_id=1, id_tag="T", meter_start=10,
                                                timestamp="1970-01-01T00:00:10Z")
    assert not after_reboot.duplicate and after_reboot.transaction_id > first.transaction_id


async def test_start_on_connector_zero_is_answered_invalid_and_not_relayed(site: Site) -> None:
    answer = await site.start_transaction("CP-1", connector_id=0, id_tag="T", meter_start=0,
                                          timestamp="2025-06-01T11:00:00Z")
    assert answer.transaction_id >= 1 and answer.auth.status is IdTagStatus.INVALID
    assert [row.type for row in await site.store.outbox_batch()] == []


async def test_hello_carries_the_auth_list_version(site: Site, clock: Clock) -> None:
    await site.handle_command(Command.new(SITE, update(7, "A", full=True), now=clock.now))
    await site.say_hello("1.2.3")
    hello = [row.body for row in await site.store.outbox_batch() if row.type == "site.hello"]
    # and the store's high-water marks: the command's result was the first envelope of "result"
    assert hello == [{"edge_version": "1.2.3", "authlist_version": 7, "high_water": {"result": 1}}]


async def test_rule_boot_a_charger_unknown_at_boot_time_is_rejected_and_told_when_to_retry(site: Site) -> None:
    """OCPP-NOTES "Boot": Rejected (the charger stays silent until ``interval`` passes)."""
    from edge.site import BootInfo

    answer = await site.boot("CP-GONE", BootInfo(vendor="A", model="B"))
    assert (answer.status, answer.interval) == ("Rejected", 60)
    assert await site.store.get_charger("CP-GONE") is None
    assert await site.store.outbox_batch() == []
