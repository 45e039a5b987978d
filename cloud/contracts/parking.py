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


@event("parking.inventory_changed", "1.1", "A site's inventory (bays and chargers) changed.")
class InventoryChanged(EventBody):
    site_id: str
    bays: int = Field(ge=0, description="bays the inventory lists")
    chargers: int = Field(ge=0, description="chargers the inventory lists")
    max_power_w: int | None = Field(default=None, ge=0, description=(
        "1.1: the listed chargers' maximum power together, W; null when a charger's is not known "
        "(energy-based utilisation is then not computed)"))


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


BayType = Literal["ev", "regular", "accessible"]


class ReservationFacts(EventBody):
    """What every reservation event says about the reservation."""

    reservation_id: str
    slot_id: str = Field(description="the parking service's opaque id of (site_id, bay_id)")
    site_id: str
    bay_id: str
    bay_type: BayType
    vehicle_id: str
    owner_id: str = Field(description="the account that holds the reservation")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    charger_id: str | None = Field(default=None, description="the charger that serves the bay, if any")
    connector_id: int | None = None


@event("parking.lot_configured", "1.0", "An operator changed a site's lot rules (time zone, hours, grace periods...).")
class LotConfigured(EventBody):
    site_id: str
    time_zone: str = Field(description="IANA time zone of the site: days, hours and invoices are shown in it")
    arrival_grace_minutes: int = Field(ge=0)
    max_stay_minutes: int = Field(ge=1)
    configured_at: AwareDatetime


@event("parking.reserved", "1.0", "A driver reserved a bay for a window.")
class Reserved(ReservationFacts):
    reserved_at: AwareDatetime


@event("parking.cancelled", "1.0", "A reservation not yet fulfilled was cancelled.")
class Cancelled(ReservationFacts):
    cancelled_at: AwareDatetime
    by: Literal["driver", "operator", "system"] = "driver"


@event("parking.no_show", "1.0", "A reservation was not fulfilled by the end of its arrival grace.")
class NoShow(ReservationFacts):
    grace_ended_at: AwareDatetime


class StayFacts(EventBody):
    """What every stay event says about the stay."""

    stay_id: str
    slot_id: str
    site_id: str
    bay_id: str
    bay_type: BayType
    arrived_at: AwareDatetime
    reservation_id: str | None = Field(default=None, description="the reservation the stay fulfils, if any")
    vehicle_id: str | None = Field(default=None, description="the vehicle, when the stay is attributed")
    owner_id: str | None = Field(default=None, description="the vehicle's account, when the stay is attributed")
    charger_id: str | None = None
    connector_id: int | None = None


@event("parking.arrived", "1.0", "A car arrived in a bay (the sensor turned occupied): a stay opened.")
class Arrived(StayFacts):
    pass


@event("parking.released", "1.0", "A stay ended (the bay turned free, or its session ended or an operator closed "
       "it on a bay without a sensor).")
class Released(StayFacts):
    departed_at: AwareDatetime
    duration_s: int = Field(ge=0)
    overstay_minutes: int = Field(default=0, ge=0, description="minutes past the stay's limit (reservation end "
                                  "plus grace, or the lot's maximum stay)")
    session_ids: list[str] = Field(default_factory=list, description="the charging sessions (charging's "
                                   "session_id) started on the bay's connector during the stay")
    closed_by: Literal["sensor", "session", "operator"] = "sensor"
    sensor_known: bool = Field(default=True, description="false when the bay's sensor was unknown at the end: "
                               "idle then ends at the session's end (glossary)")


@event("parking.overstay", "1.0", "A stay passed its limit (reservation end plus grace, or the lot's maximum stay).")
class Overstay(StayFacts):
    limit: Literal["reservation", "max_stay"]
    limit_at: AwareDatetime = Field(description="when the stay passed its limit")
