"""Site load management: share the site's power limit among the transactions in progress.

Pure rules, no I/O; the edge re-plans on every start, stop and meter value and sends each
charger its share as a TxProfile (OCPP 1.6 §3.13.4, SetChargingProfile).

The plan is max-min fair ("water filling") in amps per phase:

* nobody gets more than its charger's own maximum, nor more than it actually draws (plus a
  margin) once a meter value shows it takes less: unused current goes to the others;
* a session that cannot get the minimum current (6 A for IEC 61851 AC) is paused at 0 A
  rather than given a current the car would refuse; the sessions that started last are the
  ones paused, so the first come keep charging;
* the sum never exceeds the site limit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

IEC_MIN_CURRENT_A = 6.0
DRAW_MARGIN_A = 2.0
"""Headroom over the measured draw, so a car that ramps up can take more at the next plan."""


@dataclass(frozen=True, slots=True)
class Demand:
    """One transaction in progress, as the planner sees it."""

    key: Hashable
    started_order: int
    max_current_a: float
    min_current_a: float = IEC_MIN_CURRENT_A
    drawn_current_a: float | None = None

    @property
    def cap_a(self) -> float:
        if self.drawn_current_a is None:
            return self.max_current_a
        return min(self.max_current_a, max(self.min_current_a, self.drawn_current_a + DRAW_MARGIN_A))


def amps_from_watts(watts: float, *, phases: int = 3, voltage: float = 230.0) -> float:
    return watts / (phases * voltage)


def plan(limit_a: float, demands: Sequence[Demand]) -> dict[Hashable, float]:
    """Amps per phase for each demand's key; 0 means paused. Rounded down to 0.1 A."""
    if limit_a < 0:
        raise ValueError("the site limit cannot be negative")
    active = sorted(demands, key=lambda d: d.started_order)
    # Pause the latest sessions until every remaining one can have its minimum.
    while active and sum(d.min_current_a for d in active) > limit_a:
        active.pop()
    shares: dict[Hashable, float] = {d.key: 0.0 for d in demands}
    remaining = limit_a
    pending = list(active)
    while pending:
        fair = remaining / len(pending)
        capped = [d for d in pending if d.cap_a <= fair]
        if not capped:
            for d in pending:
                shares[d.key] = fair
            break
        for d in capped:
            shares[d.key] = d.cap_a
            remaining -= d.cap_a
            pending.remove(d)
    return {key: _floor_tenth(value) for key, value in shares.items()}


def _floor_tenth(value: float) -> float:
    return math.floor(value * 10 + 1e-9) / 10
