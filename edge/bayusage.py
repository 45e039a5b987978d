"""How each bay served by a charger is used: charging, blocked, idle (the cloud bills the last two),
in the glossary's words (``bay.usage`` with ``words: 2``, MQTT contract 1.1).

Combines the bay's occupancy (its sensor, :mod:`edge.sensors`) with the sessions on the
connector that serves it (the site's observers, :class:`edge.site.SiteObserver`):

==========  ==================================================================  =================
usage       when                                                                ``since``
==========  ==================================================================  =================
charging    a session is in progress on the bay's connector (whatever the        session start
            sensor says: a car is plugged in)
blocked     occupied, and no session started on its connector since the car      the car's arrival
            arrived (an EV bay blocked by a car that does not charge)
idle        occupied, and the session on its connector ended while the car was   the session's end
            there (not free since): the car stays after charging
free        the sensor says free and no session is in progress                  the change
unknown     the sensor failed or has not reported yet, no session in progress   the change
==========  ==================================================================  =================

Order, not clocks, decides idle: a charger's clock may be seconds off the sensor's, so a
session counts as the parked car's when it ended while the bay was not free, and the bay has
not been free since.

A ``bay.usage`` envelope is queued whenever a bay's usage (or its session) changes. The rules
are :func:`usage_of`; :class:`BayUsageTracker` keeps the state and queues the envelopes, which
:meth:`BayUsageTracker.run` writes to the outbox in order.

Each reported usage is kept in the store with the bay's occupancy (:mod:`edge.baystates`), so
after an edge restart a car already parked keeps its arrival time and an idle bay stays idle
(unless the bay's sensor says otherwise once it reads again). Usage stored by an edge before
contract 1.1 said ``overstay`` for idle; it is read as idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from edge.site import SiteObserver
from edge.store import Store
from mqtt.payloads import BayUsage

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class BayUse:
    """What is known of one charger-served bay."""

    bay_id: str
    charger_id: str
    connector_id: int
    occupancy: str = "unknown"  # occupied | free | unknown (BayState values)
    occupancy_since: datetime | None = None
    session: int | None = None
    """The transaction in progress on the bay's connector."""
    session_since: datetime | None = None
    ended: int | None = None
    """The transaction that ended on the connector while this car was parked (cleared when it leaves)."""
    ended_at: datetime | None = None


def usage_of(bay: BayUse, now: datetime) -> tuple[str, datetime, int | None]:
    """The bay's usage, since when, and the transaction it concerns (see the module's table)."""
    if bay.session is not None:
        return "charging", bay.session_since or now, bay.session
    arrived = bay.occupancy_since or now
    if bay.occupancy == "occupied":
        if bay.ended is not None:
            return "idle", bay.ended_at or arrived, bay.ended
        return "blocked", arrived, None
    return bay.occupancy, arrived, None


class BayUsageTracker(SiteObserver):
    """Keeps every charger-served bay's usage and queues a ``bay.usage`` when it changes."""

    def __init__(self, bays: Iterable[tuple[str, str, int]]) -> None:
        """``bays``: (bay id, charger id, connector id) of each bay a charger serves."""
        self.bays: dict[str, BayUse] = {}
        self._by_connector: dict[tuple[str, int], BayUse] = {}
        for bay_id, charger_id, connector_id in bays:
            use = BayUse(bay_id, charger_id, connector_id)
            self.bays[bay_id] = use
            self._by_connector[(charger_id, connector_id)] = use
        self._reported: dict[str, tuple[str, int | None]] = {}
        self._queue: asyncio.Queue[BayUsage] = asyncio.Queue()

    async def restore(self, store: Store) -> None:
        """What was known before the edge restarted: each bay's last occupancy and usage (an
        idle bay's ended session), and the sessions in progress on the bays' connectors."""
        async with store.transaction() as tx:
            active = await tx.transactions(state="active", limit=10_000)
            records = await tx.bays()
        for record in records:
            use = self.bays.get(record.bay_id)
            if use is None:
                continue
            if record.occupancy is not None:
                use.occupancy, use.occupancy_since = record.occupancy, record.occupancy_since
            # "overstay": stored before contract 1.1; an old "idle" (now blocked) has no transaction
            if record.usage in ("idle", "overstay") and record.usage_tx is not None and use.occupancy == "occupied":
                use.ended, use.ended_at = record.usage_tx, record.usage_since
            if record.usage is not None:
                self._reported[record.bay_id] = (record.usage, record.usage_tx)
        for t in sorted(active, key=lambda t: t.id):
            use = self._by_connector.get((t.charger_id, t.connector_id))
            if use is not None:
                use.session, use.session_since = t.id, t.started_at

    # inputs

    def bay_changed(self, bay_id: str, occupancy: str, at: datetime) -> None:
        use = self.bays.get(bay_id)
        if use is None or use.occupancy == occupancy:
            return
        use.occupancy, use.occupancy_since = occupancy, at
        if occupancy == "free":  # the car left: its session is no longer the bay's
            use.ended, use.ended_at = None, None
        self._evaluate(use, at)

    def session_started(self, charger_id: str, connector_id: int, transaction_id: int, at: datetime) -> None:
        use = self._by_connector.get((charger_id, connector_id))
        if use is not None:
            use.session, use.session_since = transaction_id, at
            self._evaluate(use, at)

    def session_stopped(self, charger_id: str, connector_id: int, transaction_id: int, at: datetime) -> None:
        use = self._by_connector.get((charger_id, connector_id))
        if use is None:
            return
        if use.session == transaction_id:
            use.session, use.session_since = None, None
        if use.occupancy != "free":
            use.ended, use.ended_at = transaction_id, at
        self._evaluate(use, at)

    # output

    def resend(self) -> None:
        """Queue every bay's usage again, changed or not (the outbox cap lost some)."""
        now = datetime.now(UTC)
        for use in self.bays.values():
            self._evaluate(use, now, again=True)

    def _evaluate(self, use: BayUse, now: datetime, *, again: bool = False) -> None:
        state, since, transaction_id = usage_of(use, now)
        if self._reported.get(use.bay_id) == (state, transaction_id) and not again:
            return
        self._reported[use.bay_id] = (state, transaction_id)
        self._queue.put_nowait(BayUsage(bay_id=use.bay_id, charger_id=use.charger_id,
                                        connector_id=use.connector_id, state=state,  # type: ignore[arg-type]
                                        since=since.astimezone(UTC), transaction_id=transaction_id, words=2))
        log.info("bay.usage", bay_id=use.bay_id, state=state, since=since.isoformat(), transaction_id=transaction_id)

    def usage(self) -> list[dict[str, object]]:
        """Every charger-served bay's usage now (the admin API's GET /bays)."""
        now = datetime.now(UTC)
        out: list[dict[str, object]] = []
        for use in self.bays.values():
            state, since, transaction_id = usage_of(use, now)
            out.append({"bay_id": use.bay_id, "charger_id": use.charger_id, "connector_id": use.connector_id,
                        "occupancy": use.occupancy, "usage": state, "since": since.isoformat(),
                        "transaction_id": transaction_id})
        return out

    async def run(self, store: Store) -> None:
        """Write the queued envelopes to the outbox, in order, until cancelled."""
        while True:
            usage = await self._queue.get()
            while True:
                try:
                    async with store.transaction() as tx:
                        await tx.emit(usage)
                        await tx.put_bay_usage(usage.bay_id, usage.state, usage.since, usage.transaction_id,
                                               datetime.now(UTC))
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a full disk: keep it and try again
                    log.warning("bay.usage_not_stored", bay_id=usage.bay_id, error=repr(exc))
                    await asyncio.sleep(1.0)
