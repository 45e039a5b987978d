"""Site load management at run time: applies :func:`edge.loadplan.plan` to the chargers.

Every ``interval`` seconds, and at once when :meth:`LoadManager.wake` is called (a session
started or stopped, the limit changed), it reads the transactions in progress from the store,
plans the site limit among them, and sends each charger whose share changed a TxProfile
(OCPP 1.6 §3.13.4, SetChargingProfile, ``chargingRateUnit`` A). A session that ended gets its
profile cleared. It works offline: nothing here needs the cloud.

Calls go out from this task, never from inside a charger's own CALL handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import structlog

from edge.loadplan import Demand, plan
from edge.site import ChargerCallError, Site
from edge.siteconfig import Power

log = structlog.get_logger(__name__)

TxKey = tuple[str, int, int]
"""(charger id, connector id, transaction id)"""


def tx_profile(transaction_id: int, connector_id: int, amps: float, phases: int) -> dict[str, Any]:
    return {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": transaction_id,
            "transactionId": transaction_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": amps, "numberPhases": phases}],
            },
        },
    }


class LoadManager:
    def __init__(self, site: Site, power: Power, *, interval: float = 1.0) -> None:
        self._site = site
        self._power = power
        self.limit_a = power.limit_amps
        self._interval = interval
        self._wake = asyncio.Event()
        self.sent: dict[TxKey, float] = {}
        """The share each charger accepted, by transaction."""

    def wake(self) -> None:
        self._wake.set()

    def set_limit(self, amps: float) -> None:
        """Change the site limit at run time (operator, cloud); re-plans at once."""
        if amps < 0:
            raise ValueError("the site limit cannot be negative")
        self.limit_a = amps
        self.wake()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.replan_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store hiccup must not stop load management
                log.warning("loadmgmt.replan_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def replan_once(self) -> dict[TxKey, float]:
        async with self._site.store.transaction() as tx:
            active = await tx.transactions(state="active", limit=10_000)
        demands = [Demand(key=(t.charger_id, t.connector_id, t.id), started_order=t.id,
                          max_current_a=self._power.max_current_of(t.charger_id),
                          min_current_a=self._power.min_current_a)
                   for t in active]
        shares = {cast(TxKey, key): amps for key, amps in plan(self.limit_a, demands).items()}
        ended = [key for key in self.sent if key not in shares]
        lower = [(key, amps) for key, amps in shares.items() if key in self.sent and amps < self.sent[key]]
        higher = [(key, amps) for key, amps in shares.items()
                  if self.sent.get(key) != amps and (key, amps) not in lower]
        # Lower first: the sum of what the chargers were told never exceeds the limit on the way.
        await asyncio.gather(*(self._send(key, amps) for key, amps in lower), *(self._clear(key) for key in ended))
        await asyncio.gather(*(self._send(key, amps) for key, amps in higher))
        return shares

    async def _send(self, key: TxKey, amps: float) -> None:
        charger_id, connector_id, transaction_id = key
        try:
            answer = await self._site.call_charger(
                charger_id, "SetChargingProfile", tx_profile(transaction_id, connector_id, amps, self._power.phases),
                origin="load-management")
        except ChargerCallError as exc:
            log.info("loadmgmt.profile_not_sent", charger_id=charger_id, transaction_id=transaction_id,
                     error=str(exc))
            return
        status = answer.payload.get("status") if answer.kind == "result" else answer.kind
        if status == "Accepted":
            self.sent[key] = amps
        log.info("loadmgmt.profile", charger_id=charger_id, transaction_id=transaction_id, limit_a=amps,
                 status=status)

    async def _clear(self, key: TxKey) -> None:
        charger_id, _connector_id, transaction_id = key
        self.sent.pop(key, None)
        with contextlib.suppress(ChargerCallError):
            await self._site.call_charger(charger_id, "ClearChargingProfile", {"id": transaction_id},
                                          origin="load-management")
