"""An operator's power limit carried to the site: the request, its commands, the site's answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from cloud.contracts.errors import NotFound
from cloud.parking.domain import COMMAND_TTL, InvalidPowerLimit
from cloud.parking.service import ParkingService
from mqtt import CommandStatus, SetPowerLimit
from tests.support.waiting import poll_until
from tests.unit.cloud.parking.conftest import ADMIN, EdgeSite
from tests.unit.cloud.parking.fakes import InMemoryParkingRepository, RecordingSender


@pytest.fixture
async def known_site(site: EdgeSite) -> EdgeSite:
    await site.inventory(power_limit_a=32.0)
    return site


def backdate(repo: InMemoryParkingRepository, **delta: timedelta) -> None:
    """Move the stored request's times into the past, as if that much time had passed."""
    request = repo.sites["site-1"].power_request
    assert request is not None
    for name, by in delta.items():
        setattr(request, name, getattr(request, name) - by)


async def test_a_requested_limit_is_pending_with_a_command_ready_to_send(
        parking: ParkingService, known_site: EdgeSite) -> None:
    state = await parking.request_power_limit(ADMIN, "site-1", limit_a=40.0, limit_w=None)
    assert (state.status, state.detail, state.settled_at) == ("pending", None, None)
    assert state.requested is not None and (state.requested.limit_a, state.requested.limit_w) == (40.0, None)
    assert state.command is not None and (state.command.sent_at, state.command.attempts) == (None, 0)
    assert state.command.expires_at is not None and state.command.issued_at is not None
    assert state.command.expires_at - state.command.issued_at == COMMAND_TTL
    assert state.applied is not None and (state.applied.limit_a, state.applied.source) == (32.0, "inventory")
    assert parking.power_sync_wanted.is_set(), "the sync loop is woken"
    assert await parking.power_limit(ADMIN, "site-1") == state


async def test_the_same_limit_asked_again_while_pending_is_the_same_request(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender) -> None:
    first = await parking.request_power_limit(ADMIN, "site-1", limit_a=40.0, limit_w=None)
    again = await parking.request_power_limit(ADMIN, "site-1", limit_a=40.0, limit_w=None)
    assert again.command is not None and first.command is not None
    assert again.command.command_id == first.command.command_id
    assert await parking.send_due_power_limits(sender) == (1, False)
    other = await parking.request_power_limit(ADMIN, "site-1", limit_a=None, limit_w=27_600.0)
    assert other.command is not None and other.command.command_id != first.command.command_id


@pytest.mark.parametrize("limit_a, limit_w", [(None, None), (40.0, 27_600.0), (0.0, None), (None, -1.0)])
async def test_a_malformed_limit_is_refused_before_anything_is_stored(
        parking: ParkingService, known_site: EdgeSite, limit_a: float | None, limit_w: float | None) -> None:
    with pytest.raises(InvalidPowerLimit) as refused:
        await parking.request_power_limit(ADMIN, "site-1", limit_a=limit_a, limit_w=limit_w)
    assert (refused.value.status, refused.value.code) == (422, "invalid_power_limit")
    assert (await parking.power_limit(ADMIN, "site-1")).status is None


async def test_a_limit_for_an_unknown_site_is_not_found(parking: ParkingService) -> None:
    with pytest.raises(NotFound):
        await parking.request_power_limit(ADMIN, "nowhere", limit_a=40.0, limit_w=None)


async def test_the_stored_command_goes_out_once_and_is_counted(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender) -> None:
    state = await parking.request_power_limit(ADMIN, "site-1", limit_a=40.0, limit_w=None)
    assert await parking.send_due_power_limits(sender) == (1, False)
    [command] = sender.commands
    assert state.command is not None and str(command.id) == state.command.command_id
    assert (command.site_id, command.type) == ("site-1", SetPowerLimit.TYPE)
    assert SetPowerLimit.model_validate(command.body) == SetPowerLimit(limit_a=40.0)
    assert await parking.send_due_power_limits(sender) == (0, False), "not again before it is due"
    sent = await parking.power_limit(ADMIN, "site-1")
    assert sent.command is not None and sent.command.sent_at is not None and sent.command.attempts == 1


async def test_a_command_waits_while_the_link_is_down_and_then_goes_out_unchanged(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender) -> None:
    state = await parking.request_power_limit(ADMIN, "site-1", limit_a=20.0, limit_w=None)
    sender.connected = False
    assert await parking.send_due_power_limits(sender) == (0, True)
    waiting = await parking.power_limit(ADMIN, "site-1")
    assert waiting.command is not None and (waiting.command.sent_at, waiting.command.attempts) == (None, 0)
    sender.connected = True
    assert await parking.send_due_power_limits(sender) == (1, False)
    assert state.command is not None and str(sender.commands[0].id) == state.command.command_id


async def test_an_accepted_answer_settles_the_request_and_applies_the_limit(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender) -> None:
    await parking.request_power_limit(ADMIN, "site-1", limit_a=40.0, limit_w=None)
    await parking.send_due_power_limits(sender)
    await known_site.answer(sender.commands[0], CommandStatus.ACCEPTED, data={"limit_a": 39.5})
    done = await parking.power_limit(ADMIN, "site-1")
    assert (done.status, done.detail) == ("accepted", None) and done.settled_at is not None
    assert done.applied is not None and (done.applied.limit_a, done.applied.source) == (39.5, "command")
    view = (await parking.site(ADMIN, "site-1")).power
    assert (view.applied_limit_a, view.request_status, view.limit_a) == (39.5, "accepted", 32.0)


async def test_a_rejected_limit_is_not_applied_and_a_late_answer_does_not_reopen_a_newer_request(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender) -> None:
    await parking.request_power_limit(ADMIN, "site-1", limit_a=40.0, limit_w=None)
    await parking.send_due_power_limits(sender)
    await parking.request_power_limit(ADMIN, "site-1", limit_a=None, limit_w=27_600.0)
    await parking.send_due_power_limits(sender)
    old, new = sender.commands
    await known_site.answer(new, CommandStatus.REJECTED, detail="below the minimum current of the site")
    rejected = await parking.power_limit(ADMIN, "site-1")
    assert (rejected.status, rejected.detail) == ("rejected", "below the minimum current of the site")
    assert rejected.applied is not None and rejected.applied.limit_a == 32.0

    await known_site.answer(old, CommandStatus.FAILED, detail="late")
    assert (await parking.power_limit(ADMIN, "site-1")).status == "rejected"
    # an accepted answer to a superseded command still applied its limit at the site
    await known_site.answer(old, CommandStatus.ACCEPTED, data={"limit_a": 40.0})
    late = await parking.power_limit(ADMIN, "site-1")
    assert late.status == "rejected" and late.applied is not None and late.applied.limit_a == 40.0


async def test_an_expired_answer_keeps_the_request_pending_and_a_fresh_command_goes_out(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender,
        repo: InMemoryParkingRepository) -> None:
    await parking.request_power_limit(ADMIN, "site-1", limit_a=25.0, limit_w=None)
    await parking.send_due_power_limits(sender)
    [first] = sender.commands
    # the command waited at the broker past its expiry while the site was away
    request = repo.sites["site-1"].power_request
    assert request is not None and request.command is not None
    request.command.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    parking.power_sync_wanted.clear()
    await known_site.answer(first, CommandStatus.EXPIRED, detail="command expired")
    state = await parking.power_limit(ADMIN, "site-1")
    assert (state.status, state.detail) == ("pending", "command expired")
    assert parking.power_sync_wanted.is_set(), "the sync loop is woken once the answer is stored"

    assert await parking.send_due_power_limits(sender) == (1, False)
    second = sender.commands[1]
    assert second.id != first.id and second.body == first.body
    await known_site.answer(second, CommandStatus.ACCEPTED, data={"limit_a": 25.0})
    done = await parking.power_limit(ADMIN, "site-1")
    assert done.status == "accepted" and done.command is not None
    assert (done.command.command_id, done.command.attempts) == (str(second.id), 2)


async def test_an_unanswered_command_is_replaced_once_it_is_due_again(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender,
        repo: InMemoryParkingRepository) -> None:
    await parking.request_power_limit(ADMIN, "site-1", limit_a=25.0, limit_w=None)
    await parking.send_due_power_limits(sender)
    request = repo.sites["site-1"].power_request
    assert request is not None and request.command is not None and request.next_send_at is not None
    assert request.next_send_at - request.command.issued_at >= COMMAND_TTL, "resent at its expiry first"
    backdate(repo, next_send_at=COMMAND_TTL)  # its expiry has come
    assert await parking.send_due_power_limits(sender) == (1, False)
    assert sender.commands[1].id != sender.commands[0].id


async def test_a_site_that_says_hello_is_sent_its_pending_limit_again_at_once(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender,
        repo: InMemoryParkingRepository) -> None:
    await parking.request_power_limit(ADMIN, "site-1", limit_a=30.0, limit_w=None)
    assert await parking.send_due_power_limits(sender) == (1, False)
    parking.power_sync_wanted.clear()
    await known_site.hello()  # what was queued for it may be lost
    assert parking.power_sync_wanted.is_set() and repo.wakeups == 1
    assert await parking.send_due_power_limits(sender) == (1, False)
    first, second = sender.commands
    assert second.id != first.id and second.body == first.body
    state = await parking.power_limit(ADMIN, "site-1")
    assert state.command is not None and (state.command.command_id, state.command.attempts) == (str(second.id), 2)


async def test_a_hello_without_a_pending_request_wakes_nothing(
        parking: ParkingService, known_site: EdgeSite, repo: InMemoryParkingRepository) -> None:
    await known_site.hello()
    assert repo.wakeups == 0 and not parking.power_sync_wanted.is_set()


async def test_a_request_nobody_answered_for_a_day_expires_and_is_no_longer_sent(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender,
        repo: InMemoryParkingRepository) -> None:
    await parking.request_power_limit(ADMIN, "site-1", limit_a=30.0, limit_w=None)
    backdate(repo, requested_at=timedelta(hours=24, seconds=1))
    assert await parking.send_due_power_limits(sender) == (0, False)
    assert sender.commands == []
    state = await parking.power_limit(ADMIN, "site-1")
    assert state.status == "expired" and state.settled_at is not None
    assert state.detail == "the site did not answer within 24 h; request the limit again if it is still wanted"
    again = await parking.request_power_limit(ADMIN, "site-1", limit_a=30.0, limit_w=None)
    assert again.status == "pending", "asking again after expiry is a new request"


async def test_the_sync_loop_sends_a_requested_limit_when_woken(
        parking: ParkingService, known_site: EdgeSite, sender: RecordingSender) -> None:
    loop = asyncio.create_task(parking.run_power_limit_sync(sender, interval=60.0))
    try:
        await asyncio.sleep(0)  # its first round finds nothing due
        await parking.request_power_limit(ADMIN, "site-1", limit_a=30.0, limit_w=None)
        assert await poll_until(lambda: len(sender.commands) == 1, within=5.0)
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
