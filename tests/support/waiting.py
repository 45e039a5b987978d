"""Waiting for a condition instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded machine (the test fails by timing) or wasted on a
fast one. These poll a condition until it holds, with a generous deadline that costs nothing
when things are fast.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

Condition = Callable[[], object] | Callable[[], Awaitable[object]]


async def _holds(condition: Condition) -> bool:
    result = condition()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def poll_until(condition: Condition, *, within: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` (sync or async) until it is truthy or ``within`` seconds passed.

    Returns whether it held, so the caller's own assertions can say what was wrong.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await _holds(condition):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)


async def eventually(condition: Condition, *, within: float = 20.0, interval: float = 0.05,
                     what: str = "the condition") -> None:
    """Like :func:`poll_until`, but fail the test when the deadline passes."""
    if not await poll_until(condition, within=within, interval=interval):
        raise AssertionError(f"{what} did not hold within {within} s")
