"""Site load management at run time: applies :func:`edge.loadplan.plan` to the chargers.

Every ``interval`` seconds, and at once when a session starts or stops, a meter value shows a
changed draw, or the limit changes, it reads the transactions in progress from the store,
plans the site limit among them, and sends each charger whose share changed a TxProfile
(OCPP 1.6 §3.13.4, SetChargingProfile, ``chargingRateUnit`` A). A session that ended gets its
profile cleared. It works offline: nothing here needs the cloud.

Measured draw: a car that takes clearly less than its share (Current.Import, or
Power.Active.Import over phases * voltage, at least ``DRAW_MARGIN_A`` below the share) is
planned at its draw plus that margin, and the rest goes to the others; when it ramps up to its
share again it is planned at the charger's maximum at the next plan.

The limit set at run time (admin API, cloud command) is kept in the store and restored at start
(:meth:`LoadManager.restore`), unless the site file's own limit was edited since.

A charger that will not take a profile: many accept only watts
(``ChargingScheduleAllowedChargingRateUnit = Power``), so a Rejected profile in amps is sent
again in watts (phases x voltage x amps) and the unit that worked is used for that charger from
then on. A charger that rejects both, or has no Smart Charging (CALLERROR NotImplemented /
NotSupported), is *unmanaged*: it may draw up to its own maximum (or its measured draw plus the
margin, when its meter values say), so that much is set aside and the others share what is
left; the sum stays within the limit. Every ``REFUSED_RETRY_S`` it is offered a profile at what
it is assumed to draw; once it accepts, it is planned like the others again.

Calls go out from this task, never from inside a charger's own CALL handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import structlog

from edge.loadplan import DRAW_MARGIN_A, Demand, plan
from edge.site import ChargerCallError, Site, SiteObserver
from edge.siteconfig import Power

log = structlog.get_logger(__name__)

TxKey = tuple[str, int, int]
"""(charger id, connector id, transaction id)"""


def tx_profile(transaction_id: int, connector_id: int, amps: float, phases: int, *, unit: str = "A",
               voltage: float = 230.0) -> dict[str, Any]:
    """A TxProfile limiting the transaction to ``amps`` per phase, expressed in ``unit`` (A or W)."""
    limit = amps if unit == "A" else round(amps * phases * voltage, 1)
    return {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": transaction_id,
            "transactionId": transaction_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": phases}],
            },
        },
    }


REFUSED_RETRY_S = 60.0
"""How often a charger that refused its profile is offered one again."""

NO_SMART_CHARGING = frozenset({"NotImplemented", "NotSupported"})
"""CALLERROR codes of a charger without the Smart Charging profile."""

DRAW_CHANGE_A = 1.0
"""A meter value re-plans at once when the draw moved at least this much; otherwise at the next tick."""


class LoadManager(SiteObserver):
    def __init__(self, site: Site, power: Power, *, interval: float = 1.0) -> None:
        self._site = site
        self._power = power
        self.limit_a = power.limit_amps
        self._interval = interval
        self._wake = asyncio.Event()
        self.sent: dict[TxKey, float] = {}
        """The share each charger accepted, by transaction."""
        self.drawn: dict[tuple[str, int], float] = {}
        """The latest measured current (amps per phase) by (charger, connector)."""
        self.on_limit_changed: Callable[[], None] = lambda: None
        self.units: dict[str, str] = {}
        """The charging-rate unit each charger accepted a profile in (A unless it wanted W)."""
        self.retry_refused_after = REFUSED_RETRY_S
        self.refused: dict[TxKey, float] = {}
        """Unmanaged transactions: their charger refused the profile (monotonic time of the refusal)."""
        self.set_aside: dict[TxKey, float] = {}
        """What each unmanaged transaction is assumed to draw (amps per phase), kept out of the share."""

    def wake(self) -> None:
        self._wake.set()

    # PowerControl (the site's commands and the admin API)

    @property
    def configured_limit_a(self) -> float:
        return self._power.limit_amps

    def amps(self, *, limit_a: float | None, limit_w: float | None) -> float:
        if (limit_a is None) == (limit_w is None):
            raise ValueError("give exactly one of limit_a (amps per phase) or limit_w (watts)")
        amps = limit_a if limit_a is not None else (limit_w or 0.0) / (self._power.voltage * self._power.phases)
        if amps < 0:
            raise ValueError("the site limit cannot be negative")
        return round(amps, 1)

    def set_limit(self, amps: float) -> None:
        """Change the site limit at run time (operator, cloud); re-plans at once. Below the minimum
        current every session is paused. Use :meth:`Site.set_power_limit` to keep it across restarts."""
        if amps < 0:
            raise ValueError("the site limit cannot be negative")
        self.limit_a = amps
        self.wake()
        self.on_limit_changed()

    async def restore(self) -> None:
        """Take the limit kept from an earlier run, if the site file still says what it said then."""
        kept = await self._site.kept_power_limit()
        if kept is not None:
            self.limit_a = kept
            log.info("loadmgmt.limit_restored", limit_a=kept, configured_limit_a=self.configured_limit_a)

    # SiteObserver

    def session_started(self, charger_id: str, connector_id: int, transaction_id: int, at: datetime) -> None:
        self.drawn.pop((charger_id, connector_id), None)
        self.wake()

    def session_stopped(self, charger_id: str, connector_id: int, transaction_id: int, at: datetime) -> None:
        self.drawn.pop((charger_id, connector_id), None)
        self.wake()

    def meter_sample(self, charger_id: str, connector_id: int, transaction_id: int | None,
                     current_a: float | None, power_w: float | None) -> None:
        if current_a is None and power_w is not None:
            current_a = power_w / (self._power.phases * self._power.voltage)
        if current_a is None:
            return
        before = self.drawn.get((charger_id, connector_id))
        self.drawn[(charger_id, connector_id)] = current_a
        if before is None or abs(before - current_a) >= DRAW_CHANGE_A:
            self.wake()

    def _drawn_below_share(self, key: TxKey) -> float | None:
        """The measured draw, when the car takes clearly less than it was given (else None)."""
        drawn = self.drawn.get((key[0], key[1]))
        share = self.sent.get(key)
        if drawn is None or share is None or drawn + DRAW_MARGIN_A > share + 0.05:
            return None
        return drawn

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
                async with asyncio.timeout(self._interval):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                    await self._wake.wait()

    async def replan_once(self) -> dict[TxKey, float]:
        async with self._site.store.transaction() as tx:
            active = await tx.live_transactions()
        keys = [(t.charger_id, t.connector_id, t.id) for t in active]
        for gone in set(self.refused) - set(keys):
            self.refused.pop(gone)
        # Unmanaged transactions take what they take: set it aside, share the rest.
        now = time.monotonic()
        self.set_aside = {key: self._assumed_draw(key) for key in keys if key in self.refused}
        retry = [key for key in self.set_aside if now - self.refused[key] >= self.retry_refused_after]
        demands = [Demand(key=key, started_order=key[2], max_current_a=self._power.max_current_of(key[0]),
                          min_current_a=self._power.min_current_a, drawn_current_a=self._drawn_below_share(key))
                   for key in keys if key not in self.set_aside]
        left = max(0.0, self.limit_a - sum(self.set_aside.values()))
        shares = {cast(TxKey, key): amps for key, amps in plan(left, demands).items()}
        ended = [key for key in self.sent if key not in shares and key not in self.set_aside]
        lower = [(key, amps) for key, amps in shares.items() if key in self.sent and amps < self.sent[key]]
        higher = [(key, amps) for key, amps in shares.items()
                  if self.sent.get(key) != amps and (key, amps) not in lower]
        # Lower first: the sum of what the chargers were told never exceeds the limit on the way.
        await asyncio.gather(*(self._send(key, amps) for key, amps in lower), *(self._clear(key) for key in ended))
        await asyncio.gather(*(self._send(key, amps) for key, amps in higher))
        # An unmanaged one is offered what it is assumed to draw anyway: accepting changes nothing
        # on the wire, and from the next plan it is shared like the others.
        accepted = await asyncio.gather(*(self._send(key, self.set_aside[key]) for key in retry))
        if any(accepted):
            self.wake()
        return shares

    def _assumed_draw(self, key: TxKey) -> float:
        """What an unmanaged transaction may draw: its charger's maximum, or its measured draw plus
        the margin when a meter value says it takes less."""
        maximum = self._power.max_current_of(key[0])
        drawn = self.drawn.get((key[0], key[1]))
        return maximum if drawn is None else min(maximum, drawn + DRAW_MARGIN_A)

    async def _send(self, key: TxKey, amps: float) -> bool:
        """Send the transaction its share; True once its charger accepted it. A charger that rejects
        the profile in amps is asked again in watts; one that takes neither becomes unmanaged."""
        charger_id, connector_id, transaction_id = key
        first = self.units.get(charger_id, "A")
        status: str | None = None
        for unit in (first, "W" if first == "A" else "A"):
            profile = tx_profile(transaction_id, connector_id, amps, self._power.phases, unit=unit,
                                 voltage=self._power.voltage)
            try:
                answer = await self._site.call_charger(charger_id, "SetChargingProfile", profile,
                                                       origin="load-management")
            except ChargerCallError as exc:  # offline or silent: not a refusal, try at the next plan
                log.info("loadmgmt.profile_not_sent", charger_id=charger_id, transaction_id=transaction_id,
                         error=str(exc))
                return False
            status = answer.payload.get("status") if answer.kind == "result" else (answer.error_code or answer.kind)
            log.info("loadmgmt.profile", charger_id=charger_id, transaction_id=transaction_id, limit_a=amps,
                     unit=unit, status=status)
            if status == "Accepted":
                self.sent[key] = amps
                self.units[charger_id] = unit
                if self.refused.pop(key, None) is not None:
                    log.info("loadmgmt.charger_managed_again", charger_id=charger_id, transaction_id=transaction_id)
                return True
            if status in NO_SMART_CHARGING:
                break
        self.sent.pop(key, None)
        if key not in self.refused:
            log.warning("loadmgmt.profile_refused", charger_id=charger_id, transaction_id=transaction_id,
                        status=status, set_aside_a=self._assumed_draw(key),
                        hint="the charger may draw up to its maximum: that much is kept out of the others' "
                             f"share; it is offered a profile again every {self.retry_refused_after:.0f} s. Check its "
                             "SmartCharging support and ChargingScheduleAllowedChargingRateUnit")
            self.wake()
        self.refused[key] = time.monotonic()
        return False

    async def _clear(self, key: TxKey) -> None:
        charger_id, _connector_id, transaction_id = key
        self.sent.pop(key, None)
        with contextlib.suppress(ChargerCallError):
            await self._site.call_charger(charger_id, "ClearChargingProfile", {"id": transaction_id},
                                          origin="load-management")
