"""The one reconnect and retry back-off of the cloud: exponential, capped, jittered.

Every loop that reconnects (MQTT link, outbox relay, supervised background loops) and every
retry of a failed message (both event buses, the MQTT link) waits :func:`delay` seconds: the
``attempt``-th wait is ``initial * 2**(attempt-1)``, capped at ``maximum``, then multiplied by
a random factor in ``[1 - jitter, 1 + jitter]`` (and capped again) so that services that lost
the same broker at the same instant do not all come back in the same instant.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field


def delay(attempt: int, *, initial: float, maximum: float, jitter: float = 0.5,
          rng: random.Random | None = None) -> float:
    """Seconds to wait before try number ``attempt + 1`` (``attempt`` ≥ 1 failures so far)."""
    if initial < 0 or maximum < initial:
        raise ValueError("need 0 <= initial <= maximum")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    exponent = min(max(attempt, 1) - 1, 62)
    base = min(initial * 2.0**exponent, maximum)
    factor = (rng or random).uniform(1 - jitter, 1 + jitter)
    return min(base * factor, maximum)


@dataclass
class Backoff:
    """The back-off state of one loop: :meth:`wait` after a failure, :meth:`reset` after a success."""

    initial: float = 0.2
    maximum: float = 30.0
    jitter: float = 0.5
    failures: int = field(default=0, init=False)

    def next_delay(self) -> float:
        self.failures += 1
        return delay(self.failures, initial=self.initial, maximum=self.maximum, jitter=self.jitter)

    async def wait(self) -> float:
        """Sleep the next delay; returns how long it slept."""
        seconds = self.next_delay()
        await asyncio.sleep(seconds)
        return seconds

    def reset(self) -> None:
        self.failures = 0
