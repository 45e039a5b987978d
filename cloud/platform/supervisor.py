"""Supervised background loops: a loop that dies is logged, counted and restarted with back-off.

A service's long-lived loops (outbox relay, MQTT link, replay, sync loops) never end on their
own. When one raises (or returns), :class:`Supervisor` marks it down, counts the restart in
``evpark_background_restarts_total`` and starts it again after the platform's back-off; while
it is down ``/ready`` reports ``loop:<name>`` false, so an orchestrator stops sending traffic
to a replica that only pretends to work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from cloud.platform.backoff import Backoff
from cloud.platform.metrics import LOOP_RESTARTS, LOOP_UP

log = structlog.get_logger(__name__)

LoopFactory = Callable[[], Awaitable[Any]]

STOP_GRACE_SECONDS = 5.0
"""How long :meth:`Supervisor.stop` waits for a cancelled loop before cancelling it again."""

HEALTHY_RUN_SECONDS = 60.0
"""A loop that ran this long before dying starts again from the shortest back-off."""


@dataclass
class LoopState:
    name: str
    up: bool = False
    restarts: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, service: str, *, initial_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self.service = service
        self._initial = initial_delay
        self._max = max_delay
        self.loops: dict[str, LoopState] = {}

    def start(self, name: str, factory: LoopFactory) -> asyncio.Task[None]:
        """Run ``factory()`` under supervision until :meth:`stop`; keeps the task's reference."""
        if name in self.loops:
            raise ValueError(f"a loop named {name!r} already runs in {self.service}")
        state = LoopState(name, up=True)  # starting counts as up; it is down only after dying
        state.task = asyncio.create_task(self._supervise(state, factory), name=f"{self.service}:{name}")
        self.loops[name] = state
        return state.task

    def status(self) -> dict[str, bool]:
        return {name: state.up for name, state in self.loops.items()}

    async def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Cancel every loop and wait for it to end. A loop still running after ``grace`` seconds
        (a library awaiting, unbounded, a reply that never comes — aiomqtt's disconnect does) is
        cancelled again, up to three times, so a shutdown never hangs."""
        pending = {state.task for state in self.loops.values() if state.task is not None and not state.task.done()}
        for _ in range(3):
            if not pending:
                return
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=grace)
            for task in pending:
                log.warning("background loop did not stop when cancelled; cancelling again", service=self.service,
                            loop=task.get_name())
        for task in pending:
            log.error("background loop would not stop; left behind", service=self.service, loop=task.get_name())

    async def _supervise(self, state: LoopState, factory: LoopFactory) -> None:
        backoff = Backoff(initial=self._initial, maximum=self._max)
        while True:
            state.up = True
            LOOP_UP.labels(self.service, state.name).set(1)
            started = time.monotonic()
            try:
                await factory()
                error = "the loop returned; long-lived loops must not"
            except asyncio.CancelledError:
                state.up = False
                raise
            except Exception as exc:
                error = repr(exc)
            state.up = False
            state.restarts += 1
            state.last_error = error
            LOOP_UP.labels(self.service, state.name).set(0)
            LOOP_RESTARTS.labels(self.service, state.name).inc()
            if time.monotonic() - started >= HEALTHY_RUN_SECONDS:
                backoff.reset()
            retry_in = backoff.next_delay()
            log.error("background loop died; restarting", service=self.service, loop=state.name, error=error,
                      restarts=state.restarts, retry_in=round(retry_in, 2))
            await asyncio.sleep(retry_in)
