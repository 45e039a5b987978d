"""Events of the parking domain, on the ``parking.events`` exchange."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event


@event("parking.bay_changed", "1.0", "A bay's sensor saw its occupancy change.")
class BayChanged(EventBody):
    site_id: str
    bay_id: str
    state: Literal["occupied", "free", "unknown"]
    changed_at: AwareDatetime = Field(description="when the sensor saw the change")


@event("parking.inventory_changed", "1.0", "A site's inventory (bays and chargers) changed.")
class InventoryChanged(EventBody):
    site_id: str
    bays: int = Field(ge=0, description="bays the inventory lists")
    chargers: int = Field(ge=0, description="chargers the inventory lists")


class BayUsagePeriod(EventBody):
    """A stretch of time a car blocks a charger-served bay without charging."""

    site_id: str
    bay_id: str
    charger_id: str | None = None
    connector_id: int | None = None
    transaction_id: int | None = Field(default=None, description="the session that ended (overstay), if any")
    started_at: AwareDatetime


class BayUsagePeriodEnded(BayUsagePeriod):
    ended_at: AwareDatetime
    duration_s: int = Field(ge=0)
    next_state: str = Field(description="the bay's usage after the period; the same state means reports "
                            "in between were lost and ended_at is an upper bound")


@event("parking.bay_idle_started", "1.0", "A car began to block a charger without charging since it arrived.")
class BayIdleStarted(BayUsagePeriod):
    pass


@event("parking.bay_idle_ended", "1.0", "An idle period of a charger-served bay ended.")
class BayIdleEnded(BayUsagePeriodEnded):
    pass


@event("parking.bay_overstay_started", "1.0", "A car stayed in a charger-served bay after its session ended.")
class BayOverstayStarted(BayUsagePeriod):
    pass


@event("parking.bay_overstay_ended", "1.0", "An overstay period of a charger-served bay ended.")
class BayOverstayEnded(BayUsagePeriodEnded):
    pass


@event("parking.site_online", "1.0", "A site's edge is connected to the cloud again (or for the first time).")
class SiteOnline(EventBody):
    site_id: str
    since: AwareDatetime = Field(description="when the cloud learned it")
    reason: Literal["connected", "hello"] = Field(description="connected: the edge's link status; hello: an edge "
                                                  "that sends no link status said hello")
    offline_since: AwareDatetime | None = Field(default=None, description="when it went offline; null the first "
                                                "time it is seen")


@event("parking.site_offline", "1.0", "A site's edge lost its link to the cloud: stopped, or gone without a word.")
class SiteOffline(EventBody):
    site_id: str
    since: AwareDatetime = Field(description="when the cloud learned it")
    reason: Literal["stopped", "lost"] = Field(description="stopped: the edge shut down cleanly; lost: the broker "
                                               "published its last will (connection dropped, process or host gone)")
    online_since: AwareDatetime | None = None
    connected_at: AwareDatetime | None = Field(default=None, description="when the connection that ended began "
                                               "(edge clock)")
