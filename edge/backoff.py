"""Jittered exponential back-off, shared by the uplink and the sensor readers."""

from __future__ import annotations

import random


class Backoff:
    """Exponential back-off with "equal jitter": half fixed, half random, capped."""

    def __init__(self, initial: float = 0.5, cap: float = 10.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2 ** self.attempt)
        self.attempt = min(self.attempt + 1, 30)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not crypto
