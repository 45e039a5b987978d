"""The one state machine behind every bay-sensor reader: raw readings → debounced bay states.

Pure (no I/O, no tasks); time comes from injectable clocks, so tests drive it by hand.

Per bay:

* A reading ``occupied=True/False`` starts a *candidate*; the bay takes that state only once
  the candidate held for ``debounce`` seconds (a blip shorter than that changes nothing).
  ``changed_at`` is when the candidate was first seen: when the car arrived, not when we
  were sure.
* A failure (timeout, Modbus exception, garbage, "cannot tell") makes the bay ``unknown``
  at once and marks it faulty: we never claim ``free`` for a bay we cannot see.
* No good reading for ``stale_after`` seconds (counted from the tracker's start for a bay
  never heard from) makes it ``unknown`` and faulty as well.
* A :class:`BayChange` comes out only when the reported state really changes; the first
  decision after start is always reported, so the cloud never keeps a stale state.

Readers call :meth:`BayTracker.observe` / :meth:`BayTracker.fail` as readings arrive and
:meth:`BayTracker.tick` regularly (debounce and staleness also expire between readings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from mqtt.payloads import BayOccupancy


class BayState(StrEnum):
    OCCUPIED = "occupied"
    FREE = "free"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class BayChange:
    """A bay's reported state changed. ``faulty``: unknown because its sensor failed or went silent."""

    bay_id: str
    state: BayState
    changed_at: datetime
    reason: str
    faulty: bool = False

    def to_payload(self) -> BayOccupancy:
        return BayOccupancy(bay_id=self.bay_id, state=self.state.value, changed_at=self.changed_at)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Bay:
    last_good: float                      # monotonic time of the last good reading (or of start)
    reported: BayState | None = None      # None: nothing reported since start
    candidate: bool | None = None
    candidate_since: float = 0.0
    candidate_at: datetime | None = None
    fault: str | None = None


class BayTracker:
    def __init__(self, bay_ids: Iterable[str], *, debounce: float, stale_after: float,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utc_now) -> None:
        if debounce < 0 or stale_after <= 0:
            raise ValueError("debounce must be >= 0 and stale_after > 0")
        self.debounce = debounce
        self.stale_after = stale_after
        self._clock = clock
        self._now = now
        start = clock()
        self._bays = {bay_id: _Bay(last_good=start) for bay_id in bay_ids}

    @property
    def bay_ids(self) -> tuple[str, ...]:
        return tuple(self._bays)

    def state(self, bay_id: str) -> BayState:
        """The state last reported for a bay (``unknown`` before the first decision)."""
        return self._bays[bay_id].reported or BayState.UNKNOWN

    def states(self) -> dict[str, BayState]:
        return {bay_id: self.state(bay_id) for bay_id in self._bays}

    @property
    def faults(self) -> Mapping[str, str]:
        """Bays whose sensor is failing or silent now, with the reason."""
        return {bay_id: bay.fault for bay_id, bay in self._bays.items() if bay.fault is not None}

    def observe(self, bay_id: str, occupied: bool) -> list[BayChange]:
        """A good reading. Returns the change it completes, if any (debounce permitting)."""
        bay = self._bays[bay_id]
        at = self._clock()
        bay.last_good = at
        bay.fault = None
        current = {BayState.OCCUPIED: True, BayState.FREE: False}.get(bay.reported) if bay.reported else None
        if occupied == current:
            bay.candidate = None  # a blip that came back: nothing to report
            return []
        if bay.candidate != occupied:
            bay.candidate, bay.candidate_since, bay.candidate_at = occupied, at, self._now()
        return self._promote(bay_id, bay, at)

    def fail(self, bay_id: str, reason: str) -> list[BayChange]:
        """The bay's sensor could not be read: unknown now, faulty until a good reading."""
        bay = self._bays[bay_id]
        bay.fault = reason
        bay.candidate = None
        return self._report(bay_id, bay, BayState.UNKNOWN, self._now(), reason, faulty=True)

    def fail_all(self, reason: str) -> list[BayChange]:
        return [change for bay_id in self._bays for change in self.fail(bay_id, reason)]

    def tick(self) -> list[BayChange]:
        """Let debounce and staleness expire; call it regularly, also when no reading comes."""
        at = self._clock()
        changes: list[BayChange] = []
        for bay_id, bay in self._bays.items():
            silent = at - bay.last_good
            if silent >= self.stale_after:
                if bay.fault is None:
                    bay.fault = f"stale: no reading for {silent:.1f} s"
                    bay.candidate = None
                changes += self._report(bay_id, bay, BayState.UNKNOWN, self._now(), bay.fault, faulty=True)
            else:
                changes += self._promote(bay_id, bay, at)
        return changes

    def _promote(self, bay_id: str, bay: _Bay, at: float) -> list[BayChange]:
        if bay.candidate is None or at - bay.candidate_since < self.debounce:
            return []
        state = BayState.OCCUPIED if bay.candidate else BayState.FREE
        changed_at = bay.candidate_at or self._now()
        bay.candidate = None
        return self._report(bay_id, bay, state, changed_at, "sensor reading")

    @staticmethod
    def _report(bay_id: str, bay: _Bay, state: BayState, changed_at: datetime, reason: str,
                *, faulty: bool = False) -> list[BayChange]:
        if bay.reported == state:
            return []
        bay.reported = state
        return [BayChange(bay_id, state, changed_at, reason, faulty)]
