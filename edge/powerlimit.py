"""The site's power limit as changed at run time (admin API or cloud command), kept across restarts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Protocol

import structlog

from edge.store import Store, StoreTransaction

log = structlog.get_logger("edge.site")  # the site's log, as before the split of edge.site

POWER_LIMIT_KEY = "power_limit"
"""meta key of a site limit changed at run time (admin API or cloud), kept across restarts."""


class PowerControl(Protocol):
    """Load management, as the site's commands and the admin API change it (edge.loadmgmt)."""

    @property
    def configured_limit_a(self) -> float: ...

    def amps(self, *, limit_a: float | None, limit_w: float | None) -> float: ...

    def set_limit(self, amps: float) -> None: ...


async def keep_power_limit(tx: StoreTransaction, power: PowerControl, amps: float, *, origin: str,
                           now: datetime) -> None:
    """Keep a new limit, in the transaction that changes it (with the result of its command, if any)."""
    await tx.set_meta(POWER_LIMIT_KEY, json.dumps({
        "limit_a": amps, "configured_limit_a": power.configured_limit_a, "origin": origin,
        "set_at": now.isoformat()}))
    log.info("site.power_limit_set", limit_a=amps, origin=origin)


async def kept_power_limit(store: Store, power: PowerControl) -> float | None:
    """The limit changed at run time, if still valid: one set while the site file said what it
    says now. After the site file's limit is edited, the file wins (and the kept one is dropped)."""
    async with store.transaction() as tx:
        raw = await tx.get_meta(POWER_LIMIT_KEY)
        if raw is None:
            return None
        kept = json.loads(raw)
        if kept.get("configured_limit_a") != power.configured_limit_a:
            await tx.set_meta(POWER_LIMIT_KEY, None)
            log.warning("site.power_limit_dropped", kept_limit_a=kept.get("limit_a"),
                        reason="the site file's limit changed since it was set", origin=kept.get("origin"))
            return None
    return float(kept["limit_a"])
