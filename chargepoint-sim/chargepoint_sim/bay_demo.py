"""Simulated arrivals and departures on a site's bays, through their MQTT sensors.

Used by ``evpark up --demo N`` beside the demo chargers: every bay's sensor first reports the
bay free, then cars come and go at random (each bay on its own clock), so the parking service
sees stays open and close and the lot's status moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiomqtt

from chargepoint_sim.errors import CpsimError
from chargepoint_sim.sensors import MqttSensors

log = logging.getLogger("chargepoint_sim.bay_demo")


async def run_bay_demo(site_id: str, sensors: dict[str, str], *, host: str = "127.0.0.1", port: int = 1883,
                       root: str = "evpark", username: str | None = None, stop: asyncio.Event | None = None,
                       stay_s: tuple[float, float] = (60.0, 600.0), empty_s: tuple[float, float] = (30.0, 300.0),
                       retry_s: float = 5.0, seed: int | None = None) -> None:
    """Until ``stop`` is set: each bay (bay id → sensor id in ``sensors``) stays free for a random
    time in ``empty_s``, then occupied for one in ``stay_s``, and so on. A broker that is not up
    yet is tried again every ``retry_s`` seconds."""
    if not sensors:
        raise ValueError("the bay demo needs at least one sensor")
    stop = stop or asyncio.Event()
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            async with MqttSensors(site_id, sensors, host=host, port=port, root=root, username=username) as live:
                for bay_id in sensors:
                    await live.set_occupied(bay_id, False)
                async with asyncio.TaskGroup() as group:
                    for bay_id in sensors:
                        group.create_task(_cars(live, bay_id, stop, random.Random(rng.random()), stay_s, empty_s))
            return
        except* (CpsimError, aiomqtt.MqttError) as group_error:
            log.warning("bay demo: %s (retrying in %.0f s)", group_error.exceptions[0], retry_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry_s)


async def _cars(sensors: MqttSensors, bay_id: str, stop: asyncio.Event, rng: random.Random,
                stay_s: tuple[float, float], empty_s: tuple[float, float]) -> None:
    occupied = False
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*(stay_s if occupied else empty_s)))
        if stop.is_set():
            return
        occupied = not occupied
        await sensors.set_occupied(bay_id, occupied)
        log.info("bay demo: %s %s", bay_id, "arrival" if occupied else "departure")
