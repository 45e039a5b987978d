"""Keep N simulated chargers charging, session after session, until told to stop.

Used by ``cpsim demo`` and by ``evpark up --demo``. A refused id tag, a connector set
Inoperative or a central system that is not up yet never ends the demo: the charger waits
and tries again (reconnecting with jittered exponential back-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from chargepoint_sim.charger import SessionReport, SimulatedCharger
from chargepoint_sim.errors import (
    AuthorizationRefused,
    CentralSystemError,
    ConnectorNotAvailable,
    CpsimError,
)

log = logging.getLogger("chargepoint_sim.demo")

SessionCallback = Callable[[str, SessionReport], None]


@dataclass(frozen=True, slots=True)
class _DemoOptions:
    energy_wh: tuple[int, int] = (5_000, 30_000)
    power_w: float = 11_000
    meter_interval: float = 1.0
    speedup: float = 60.0
    pause_s: float = 5.0
    retry_s: float = 30.0
    password: str | None = None
    ssl_context: ssl.SSLContext | None = None


async def run_demo(url: str, chargers: int, id_tags: list[str], *, stop: asyncio.Event | None = None,
                   charger_prefix: str = "CP-", energy_wh: tuple[int, int] = (5_000, 30_000),
                   power_w: float = 11_000, meter_interval: float = 1.0, speedup: float = 60.0,
                   pause_s: float = 5.0, retry_s: float = 30.0, password: str | None = None,
                   ssl_context: ssl.SSLContext | None = None,
                   on_session: SessionCallback | None = None, seed: int | None = None) -> None:
    """Run chargers ``<charger_prefix>1`` … ``<charger_prefix>N`` until ``stop`` is set.

    Each charger plays sessions of a random energy in ``energy_wh`` (inclusive), cycling
    through ``id_tags`` (each charger starting at a different tag), with ``pause_s`` between
    sessions. A refused tag or unavailable connector waits ``retry_s``. When ``stop`` is set,
    running sessions end with StopTransaction (reason Local) before the chargers disconnect.
    Without ``stop`` it runs until cancelled.
    """
    if chargers < 1:
        raise ValueError("the demo needs at least one charger")
    if not id_tags:
        raise ValueError("the demo needs at least one id tag")
    low, high = energy_wh
    if not 0 <= low <= high:
        raise ValueError("energy_wh must be (low, high) with 0 <= low <= high")
    stop = stop or asyncio.Event()
    options = _DemoOptions(energy_wh=energy_wh, power_w=power_w, meter_interval=meter_interval,
                          speedup=speedup, pause_s=pause_s, retry_s=retry_s, password=password,
                          ssl_context=ssl_context)
    rng = random.Random(seed)
    async with asyncio.TaskGroup() as group:
        for index in range(chargers):
            charger_id = f"{charger_prefix}{index + 1}"
            tags = id_tags[index % len(id_tags):] + id_tags[:index % len(id_tags)]
            group.create_task(
                _keep_charging(url, charger_id, tags, options, stop, on_session,
                               random.Random(rng.random()), start_delay=0.2 * index),
                name=f"cpsim-demo-{charger_id}")


async def _keep_charging(url: str, charger_id: str, id_tags: list[str], options: _DemoOptions,
                         stop: asyncio.Event, on_session: SessionCallback | None, rng: random.Random,
                         *, start_delay: float) -> None:
    await _sleep_unless(stop, start_delay)
    backoff = _backoff(rng)
    tags = _cycle(id_tags)
    # One charger across reconnects: its meter keeps counting and it does not boot again.
    charger = SimulatedCharger(charger_id, url, basic_auth_password=options.password,
                               ssl_context=options.ssl_context, speedup=options.speedup)
    while not stop.is_set():
        try:
            async with charger:
                log.info("%s: connected to %s", charger_id, url)
                backoff = _backoff(rng)
                await _play_sessions(charger, tags, options, stop, on_session, rng)
        except CpsimError as exc:
            delay = next(backoff)
            log.warning("%s: %s (reconnecting in %.1f s)", charger_id, exc, delay)
            await _sleep_unless(stop, delay)


async def _play_sessions(charger: SimulatedCharger, tags: Iterator[str], options: _DemoOptions,
                         stop: asyncio.Event, on_session: SessionCallback | None,
                         rng: random.Random) -> None:
    while not stop.is_set():
        id_tag = next(tags)
        energy = rng.randint(*options.energy_wh)
        session = asyncio.create_task(
            charger.run_session(1, id_tag, energy, meter_interval=options.meter_interval,
                                power_w=options.power_w, speedup=options.speedup),
            name=f"cpsim-demo-{charger.charger_id}-session")
        stopping = asyncio.create_task(stop.wait(), name=f"cpsim-demo-{charger.charger_id}-stop")
        try:
            await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not session.done():
                charger.stop_session(1, "Local")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(session), 15)
        finally:
            stopping.cancel()
            if not session.done():
                session.cancel()
        try:
            report = await session
        except asyncio.CancelledError:
            if stop.is_set():
                return
            raise
        except (AuthorizationRefused, ConnectorNotAvailable, CentralSystemError) as exc:
            log.warning("%s: %s (trying again in %g s)", charger.charger_id, exc, options.retry_s)
            await _sleep_unless(stop, options.retry_s)
            continue
        log.debug("%s: session %s delivered %s Wh to %s", charger.charger_id, report.transaction_id,
                 report.energy_wh, report.id_tag)
        if on_session is not None:
            on_session(charger.charger_id, report)
        await _sleep_unless(stop, options.pause_s)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _cycle(items: list[str]) -> Iterator[str]:
    while True:
        yield from items


def _backoff(rng: random.Random, base: float = 1.0, cap: float = 30.0) -> Iterator[float]:
    """Exponential back-off with full jitter."""
    attempt = 0
    while True:
        yield rng.uniform(base / 2, min(cap, base * 2 ** attempt))
        attempt += 1

