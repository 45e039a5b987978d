"""What the parking use cases return and its REST API answers: read models of bays, charger
stations, availability, sites and their power limit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from cloud.parking.domain import Availability, Bay, ChargerStation, Link, Site, UsageState

Usage = UsageState


class BayOut(BaseModel):
    bay_id: str
    state: str
    changed_at: datetime | None = Field(description="when the sensor saw the change; null before its first report")
    type: str | None = Field(description="ev, regular or accessible, from the site's inventory")
    charger_id: str | None
    connector_id: int | None
    usage: Usage | None = Field(description="how the charger-served bay is used (free, charging, blocked: parked "
                                "without charging since arrival, idle: still parked after its session ended, "
                                "unknown); null when the site never reported it")
    usage_since: datetime | None = Field(description="when the current usage began")
    usage_transaction_id: int | None = Field(description="the session in progress, or the one that ended")

    @classmethod
    def of(cls, bay: Bay) -> BayOut:
        return cls(bay_id=bay.bay_id, state=bay.state, changed_at=bay.changed_at if bay.ever_reported else None,
                   type=bay.type, charger_id=bay.charger_id, connector_id=bay.connector_id, usage=bay.usage,
                   usage_since=bay.usage_since, usage_transaction_id=bay.usage_transaction_id)


class ChargerStationOut(BaseModel):
    charger_id: str
    connectors: int
    max_power_w: int | None

    @classmethod
    def of(cls, station: ChargerStation) -> ChargerStationOut:
        return cls(charger_id=station.charger_id, connectors=station.connectors, max_power_w=station.max_power_w)


class ChargerStationsOut(BaseModel):
    site_id: str
    chargers: list[ChargerStationOut]

    @classmethod
    def of(cls, site_id: str, stations: Iterable[ChargerStation]) -> ChargerStationsOut:
        return cls(site_id=site_id, chargers=[ChargerStationOut.of(station) for station in stations])


class BaysOut(BaseModel):
    site_id: str
    bays: list[BayOut]

    @classmethod
    def of(cls, site_id: str, bays: Iterable[Bay]) -> BaysOut:
        return cls(site_id=site_id, bays=[BayOut.of(bay) for bay in bays])


class AvailabilityOut(BaseModel):
    site_id: str
    total: int
    free: int
    occupied: int
    unknown: int

    @classmethod
    def of(cls, site_id: str, availability: Availability) -> AvailabilityOut:
        return cls(site_id=site_id, total=availability.total, free=availability.free,
                   occupied=availability.occupied, unknown=availability.unknown)


class InventorySummaryOut(BaseModel):
    received_at: datetime | None = Field(description="timestamp of the site's last inventory; null before the first")
    bays: int = Field(description="bays in service")
    chargers: int = Field(description="charger stations in service")


class SitePowerOut(BaseModel):
    limit_a: float | None = Field(description="the site limit in amps per phase, as the site's inventory reports it")
    phases: int | None
    voltage: float | None
    applied_limit_a: float | None = Field(description="the limit the site applies now (newest of its inventory and "
                                          "an accepted power-limit command)")
    request_status: str | None = Field(description="status of the last power-limit request; null if none was made")


class UplinkDropOut(BaseModel):
    at: datetime
    policy: str
    dropped: int | None
    by_type: dict[str, int]
    first_seq: int | None
    last_seq: int | None
    backlog: int | None
    backlog_bytes: int | None


class UplinkDropsOut(BaseModel):
    total: int = Field(description="messages the site's offline outbox dropped or refused, all reports together")
    last: UplinkDropOut | None = Field(description="the latest report; null if the site never dropped any")


class LinkOut(BaseModel):
    state: Literal["online", "offline", "unknown"] = Field(description="the site's MQTT link as the cloud last "
                                                           "learned it; unknown: never heard of it")
    since: datetime | None = Field(description="when the cloud learned the state")
    reason: str | None = Field(description="connected, hello (online); stopped: the edge shut down cleanly, lost: "
                               "its connection ended without a word (offline)")
    connected_at: datetime | None = Field(description="when the edge made the connection the state belongs to "
                                          "(edge clock)")

    @classmethod
    def of(cls, link: Link | None) -> LinkOut:
        if link is None:
            return cls(state="unknown", since=None, reason=None, connected_at=None)
        return cls(state=link.state, since=link.since, reason=link.reason, connected_at=link.connected_at)


class SiteListed(BaseModel):
    """A line of ``evpark sites list``."""

    site_id: str
    registered_at: datetime | None
    last_seen_at: datetime | None
    link: LinkOut

    @classmethod
    def of(cls, site: Site) -> SiteListed:
        return cls(site_id=site.site_id, registered_at=site.registered_at, last_seen_at=site.last_seen_at,
                   link=LinkOut.of(site.link))


class SiteOut(BaseModel):
    site_id: str
    registered_at: datetime | None = Field(default=None, description="when `evpark sites add` registered it; null "
                                           "for a site known only from its messages")
    last_seen_at: datetime | None = Field(description="when the cloud last received a message of the site")
    link: LinkOut
    inventory: InventorySummaryOut
    power: SitePowerOut
    uplink_drops: UplinkDropsOut

    @classmethod
    def of(cls, site: Site, bays: int, chargers: int) -> SiteOut:
        """``bays`` and ``chargers``: how many of each are in service."""
        drop = site.last_drop
        last = None if drop is None else UplinkDropOut(
            at=drop.at, policy=drop.policy, dropped=drop.dropped, by_type=drop.by_type, first_seq=drop.first_seq,
            last_seq=drop.last_seq, backlog=drop.backlog, backlog_bytes=drop.backlog_bytes)
        request = site.power_request
        return cls(
            site_id=site.site_id,
            registered_at=site.registered_at,
            last_seen_at=site.last_seen_at,
            link=LinkOut.of(site.link),
            inventory=InventorySummaryOut(received_at=site.inventory_at, bays=bays, chargers=chargers),
            power=SitePowerOut(limit_a=site.power_limit_a, phases=site.phases, voltage=site.voltage,
                               applied_limit_a=None if site.applied is None else site.applied.limit_a,
                               request_status=None if request is None else request.status),
            uplink_drops=UplinkDropsOut(total=site.dropped_total, last=last),
        )


class RequestedLimitOut(BaseModel):
    limit_a: float | None
    limit_w: float | None
    requested_at: datetime


class PowerCommandOut(BaseModel):
    command_id: str
    issued_at: datetime | None
    expires_at: datetime | None
    sent_at: datetime | None = Field(description="null: not sent yet (the MQTT link is down); it will be")
    attempts: int = Field(description="commands sent for this request (a fresh one after each expiry)")


class AppliedLimitOut(BaseModel):
    limit_a: float | None = Field(description="amps per phase; null when the site reports no limit")
    at: datetime
    source: str = Field(description="command (an accepted result) or inventory")


class PowerLimitOut(BaseModel):
    site_id: str
    status: Literal["pending", "accepted", "rejected", "failed", "expired"] | None = Field(
        description="pending until the site answers; expired when it did not within 24 h; null if no request "
                    "was ever made")
    detail: str | None = Field(description="the site's explanation (e.g. why it rejected the limit)")
    requested: RequestedLimitOut | None
    command: PowerCommandOut | None
    settled_at: datetime | None
    applied: AppliedLimitOut | None

    @classmethod
    def of(cls, site: Site) -> PowerLimitOut:
        request = site.power_request
        applied = None if site.applied is None else AppliedLimitOut(
            limit_a=site.applied.limit_a, at=site.applied.at, source=site.applied.source)
        if request is None:
            return cls(site_id=site.site_id, status=None, detail=None, requested=None, command=None, settled_at=None,
                       applied=applied)
        command = None if request.command is None else PowerCommandOut(
            command_id=request.command.command_id, issued_at=request.command.issued_at,
            expires_at=request.command.expires_at, sent_at=request.command.sent_at, attempts=request.attempts)
        return cls(site_id=site.site_id, status=request.status, detail=request.detail,
                   requested=RequestedLimitOut(limit_a=request.limit_a, limit_w=request.limit_w,
                                               requested_at=request.requested_at),
                   command=command, settled_at=request.settled_at, applied=applied)


# --- reservations, stays, the lot ---------------------------------------------------------------

SlotState = Literal["free", "occupied", "reserved", "out_of_service", "unknown"]
SLOT_STATES: tuple[SlotState, ...] = ("free", "occupied", "reserved", "out_of_service", "unknown")


class ReservationOut(BaseModel):
    reservation_id: str
    slot_id: str
    site_id: str
    bay_id: str
    bay_type: str
    vehicle_id: str | None = Field(description="null for a caller who may not see whose it is")
    starts_at: datetime
    ends_at: datetime
    status: str = Field(description="reserved, fulfilled (the car arrived), completed (the stay ended), released "
                        "(its hold released), cancelled, no_show")
    charger_id: str | None = None
    connector_id: int | None = None
    charger_status: str | None = Field(default=None, description="the charger's answer to ReserveNow (Accepted, "
                                       "Rejected, Occupied, Faulted, Unavailable, NotImplemented; failed or expired "
                                       "when it never answered); null until it was sent")
    charger_cancel_status: str | None = Field(default=None, description="the charger's answer to CancelReservation "
                                              "(sent for a cancelled reservation or a no-show the charger held)")
    created_at: datetime | None = None


class StayOut(BaseModel):
    stay_id: str
    slot_id: str
    site_id: str
    bay_id: str
    arrived_at: datetime
    departed_at: datetime | None
    duration_s: int
    reservation_id: str | None
    vehicle_id: str | None = Field(description="the vehicle when the stay is attributed (and the caller may see it)")
    overstay_minutes: int
    session_ids: list[str]
    closed_by: str | None


class SlotOut(BaseModel):
    slot_id: str
    bay_id: str
    type: str | None
    state: SlotState
    usage: str | None = Field(description="charger-served bays: free, charging, idle (energy finished or session "
                              "ended, car still there), blocked (occupied, no session at all), "
                              "overstay (the stay passed its limit), unknown")
    charger_id: str | None
    connector_id: int | None
    out_of_service_reason: str | None = None


class StatusOut(BaseModel):
    site_id: str
    slots: list[SlotOut]
    counts: dict[str, int] = Field(description="slots per state")
    by_type: dict[str, dict[str, int]] = Field(description="slots per type, then per state")


class SlotDetailOut(SlotOut):
    site_id: str
    stay: StayOut | None = Field(description="the stay in progress, if any")
    reservation: ReservationOut | None = Field(description="the reservation holding the bay now, if any")
    next_reservations: list[ReservationOut]


class HistoryItemOut(BaseModel):
    kind: Literal["stay", "reservation"]
    at: datetime = Field(description="arrival of a stay, start of a reservation")
    stay: StayOut | None = None
    reservation: ReservationOut | None = None


class HistoryOut(BaseModel):
    vehicle_id: str
    items: list[HistoryItemOut]
    total: int
    limit: int
    offset: int


class LotOut(BaseModel):
    site_id: str
    name: str | None
    time_zone: str
    opening_hours: dict[str, list[str]] | None = Field(description='per weekday (mon..sun) ["HH:MM", "HH:MM"] in '
                                                       "site time; a weekday missing is closed; null: always open")
    reservable_types: list[str]
    max_reservation_minutes: int
    booking_horizon_days: int
    arrival_grace_minutes: int
    max_stay_minutes: int
    updated_at: datetime | None = Field(description="null: the glossary's defaults, never configured")
