"""Each bay's last reported occupancy, kept in the store, and sent again when the cloud may have lost it.

* **Arrival survives a restart.** The sensor's first reading after the edge restarts is always
  reported; when it agrees with the occupancy stored before the restart, it keeps the stored
  time: the car was already there, so its idle time or overstay counts from its real arrival,
  not from the restart. (If one car left and another took the bay while the edge was down, the
  second car is taken for the first: the edge cannot tell them apart.)
* **Re-sent after a loss at the cap.** When the outbox cap cost bay changes (``drop_oldest_telemetry``
  dropped some, or ``refuse_new`` refused some and the outbox has since left its cap), every
  bay's current occupancy and usage is queued again, so the cloud never keeps a state the
  bay has left.

The rows live in the store's ``bays`` table, written in the same transaction as the envelope
that reports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog

from edge.bayusage import BayUsageTracker
from edge.sensors import BayChange, BayState
from edge.store import Store
from mqtt.payloads import BayOccupancy

log = structlog.get_logger(__name__)


class BayStates:
    def __init__(self, store: Store, usage: BayUsageTracker | None = None,
                 bay_ids: Iterable[str] | None = None) -> None:
        """``bay_ids``: the site file's bays (a bay removed from it is not re-sent); None: all stored."""
        self._store = store
        self._usage = usage
        self._bay_ids = None if bay_ids is None else frozenset(bay_ids)
        self._restored: dict[str, tuple[str, datetime]] = {}

    async def restore(self) -> None:
        """Read the occupancy each bay had before the edge (re)started."""
        async with self._store.transaction() as tx:
            records = await tx.bays()
        self._restored = {r.bay_id: (r.occupancy, r.occupancy_since) for r in records
                          if r.occupancy in (BayState.OCCUPIED, BayState.FREE) and r.occupancy_since is not None}

    async def changed(self, change: BayChange) -> BayChange:
        """Store and queue a sensor's change for the cloud. Returns the change as reported: the
        first known state after a restart that matches the stored one keeps the stored time."""
        if change.state is not BayState.UNKNOWN:
            before = self._restored.pop(change.bay_id, None)
            if before is not None and before[0] == change.state.value:
                change = dataclasses.replace(change, changed_at=before[1])
        async with self._store.transaction() as tx:
            await tx.emit(change.to_payload())
            await tx.put_bay_occupancy(change.bay_id, change.state.value, change.changed_at, datetime.now(UTC))
        return change

    async def run(self) -> None:
        """Until cancelled: re-send every bay's state whenever the outbox cap lost bay changes."""
        while True:
            await self._store.bays_lost.wait()
            self._store.bays_lost.clear()
            await self.resend()

    async def resend(self) -> int:
        """Queue every bay's current occupancy (and usage) again. Returns how many bays."""
        async with self._store.transaction() as tx:
            records = [r for r in await tx.bays() if r.occupancy is not None and r.occupancy_since is not None
                       and (self._bay_ids is None or r.bay_id in self._bay_ids)]
            for r in records:
                assert r.occupancy is not None and r.occupancy_since is not None
                await tx.emit(BayOccupancy(bay_id=r.bay_id, state=r.occupancy,  # type: ignore[arg-type]
                                           changed_at=r.occupancy_since))
        if self._usage is not None:
            self._usage.resend()
        log.warning("bays.resent", bays=len(records),
                    reason="the outbox cap lost bay changes; the current states are queued again")
        return len(records)
