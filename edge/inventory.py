"""The site's hardware, reported to the cloud: at start and whenever it changes.

The inventory (``site.inventory``, retained at the broker) lists the bays of the site file with
their type and the charger connector serving each, every charger (named in the site file or
accepted at the site) with the connectors it reported and its maximum power, and the site limit
load management shares. The cloud mirrors it as parking slots and charger stations.

It is rebuilt when a charger boots or reports a connector not seen before, when the limit
changes, and every :data:`RECHECK_EVERY` seconds, and queued only when it differs from the
last one queued (so a reboot storm sends nothing new).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from edge.site import SiteObserver
from edge.siteconfig import SiteConfig
from edge.store import Store
from mqtt.payloads import InventoryBay, InventoryCharger, SiteInventory

log = structlog.get_logger(__name__)

RECHECK_EVERY = 30.0


def build_inventory(config: SiteConfig, reported: dict[str, int], limit_a: float | None) -> SiteInventory:
    """The inventory from the site file, the chargers' reported connectors and the limit in effect."""
    connectors = dict(reported)
    for bay in config.bays:  # a connector serving a bay exists, reported or not
        if bay.charger_id is not None and bay.connector_id is not None:
            connectors[bay.charger_id] = max(connectors.get(bay.charger_id, 0), bay.connector_id)
    power = config.power
    if power is not None:
        for charger_id in power.chargers:
            connectors.setdefault(charger_id, 0)

    def max_power_w(charger_id: str) -> int | None:
        if power is None:
            return None
        return round(power.max_current_of(charger_id) * power.phases * power.voltage)

    return SiteInventory(
        bays=[InventoryBay(bay_id=bay.id, type=bay.type.value, charger_id=bay.charger_id,
                           connector_id=bay.connector_id) for bay in config.bays],
        chargers=[InventoryCharger(charger_id=charger_id, connectors=count, max_power_w=max_power_w(charger_id))
                  for charger_id, count in sorted(connectors.items())],
        power_limit_a=limit_a if power is not None else None,
        phases=power.phases if power is not None else None,
        voltage=power.voltage if power is not None else None,
    )


class InventoryReporter(SiteObserver):
    def __init__(self, config: SiteConfig, store: Store, limit_a: Callable[[], float | None]) -> None:
        self._config = config
        self._store = store
        self._limit_a = limit_a
        self._known: dict[str, int] = {}
        self._wake = asyncio.Event()
        self.last: SiteInventory | None = None
        """The inventory queued last."""

    def charger_seen(self, charger_id: str, connector_id: int) -> None:
        known = self._known.get(charger_id)
        if known is None or connector_id > known:
            self._known[charger_id] = max(connector_id, known or 0)
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def report(self) -> bool:
        """Queue the inventory if it changed. Returns whether one was queued."""
        async with self._store.transaction() as tx:
            reported = await tx.connector_counts()
            inventory = build_inventory(self._config, reported, self._limit_a())
            if inventory == self.last:
                return False
            await tx.emit(inventory)
        for charger_id, count in reported.items():
            self._known[charger_id] = max(count, self._known.get(charger_id, 0))
        log.info("site.inventory_reported", bays=len(inventory.bays), chargers=len(inventory.chargers),
                 power_limit_a=inventory.power_limit_a, first=self.last is None)
        self.last = inventory
        return True

    async def run(self) -> None:
        """Re-report on every change until cancelled (the first report is made by the caller)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_EVERY):  # not wait_for: on 3.11 it can swallow a cancel (gh-86296)
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.report()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("site.inventory_not_reported", error=repr(exc))
