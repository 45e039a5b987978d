"""Background loops are supervised: a dead loop is restarted with back-off, counted, and not ready meanwhile."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client import REGISTRY

from cloud.platform.backoff import Backoff, delay
from cloud.platform.supervisor import Supervisor
from tests.support.waiting import eventually


def restarts(service: str, loop: str) -> float:
    value = REGISTRY.get_sample_value("evpark_background_restarts_total", {"service": service, "loop": loop})
    return value or 0.0


def test_the_back_off_doubles_up_to_its_cap_with_jitter() -> None:
    rng = random.Random(7)
    waits = [delay(n, initial=0.5, maximum=10.0, jitter=0.5, rng=rng) for n in range(1, 12)]
    assert all(w <= 10.0 for w in waits)
    assert 0.25 <= waits[0] <= 0.75 and 0.5 <= waits[1] <= 1.5 and 1.0 <= waits[2] <= 3.0
    assert waits[-1] >= 5.0  # capped, still jittered below the cap
    assert len({round(w, 6) for w in waits[6:]}) > 1, "services must not all retry in the same instant"


def test_a_reset_back_off_starts_again_from_the_shortest_wait() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_back_off_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        delay(1, initial=5.0, maximum=1.0)
    with pytest.raises(ValueError):
        delay(1, initial=1.0, maximum=2.0, jitter=1.0)


async def test_a_loop_that_dies_is_restarted_counted_and_reported_down_meanwhile() -> None:
    supervisor = Supervisor("test-svc", initial_delay=0.3, max_delay=0.3)
    runs = 0
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ConnectionError("database away")
        await release.wait()
        await asyncio.Event().wait()

    before = restarts("test-svc", "sync")
    supervisor.start("sync", flaky)
    try:
        await eventually(lambda: supervisor.loops["sync"].restarts == 1, what="the loop died once", within=2)
        assert supervisor.status() == {"sync": False}, "down until it runs again"
        assert supervisor.loops["sync"].last_error == "ConnectionError('database away')"
        await eventually(lambda: runs == 2 and supervisor.status() == {"sync": True}, what="the loop restarted",
                         within=3)
        assert restarts("test-svc", "sync") == before + 1
    finally:
        await supervisor.stop()
    assert supervisor.loops["sync"].task is not None and supervisor.loops["sync"].task.cancelled()


async def test_a_loop_that_returns_is_restarted_too() -> None:
    supervisor = Supervisor("test-svc", initial_delay=0.01, max_delay=0.01)
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    supervisor.start("returns", returns)
    try:
        await eventually(lambda: runs >= 3, what="three runs", within=3)
        assert "must not" in (supervisor.loops["returns"].last_error or "")
    finally:
        await supervisor.stop()


async def test_two_loops_of_one_name_are_refused() -> None:
    supervisor = Supervisor("test-svc")
    supervisor.start("x", lambda: asyncio.sleep(10))
    try:
        with pytest.raises(ValueError, match="already runs"):
            supervisor.start("x", lambda: asyncio.sleep(10))
    finally:
        await supervisor.stop()


async def test_stopping_does_not_hang_on_a_loop_that_swallows_its_first_cancellation() -> None:
    # aiomqtt's Client.__aexit__ awaits the broker's disconnect without a bound: a loop cancelled
    # inside it waits forever unless it is cancelled again
    finished = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # the unbounded wait in the cleanup
        finally:
            finished.set()

    supervisor = Supervisor("test-stubborn")
    supervisor.start("stubborn", stubborn)
    await asyncio.sleep(0)
    await asyncio.wait_for(supervisor.stop(grace=0.2), 5)
    assert finished.is_set()
