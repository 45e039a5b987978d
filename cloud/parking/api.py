"""Parking REST API: thin routers that call one use case each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from cloud.parking import domain
from cloud.parking.service import ParkingService

SiteId = Annotated[str, Path(min_length=1, max_length=64, description="the site's id")]
Usage = Literal["free", "charging", "idle", "overstay", "unknown"]


def _service(request: Request) -> ParkingService:
    return request.app.state.parking  # type: ignore[no-any-return]


ServiceDep = Annotated[ParkingService, Depends(_service)]


class BayOut(BaseModel):
    bay_id: str
    state: str
    changed_at: datetime | None = Field(description="when the sensor saw the change; null before its first report")
    type: str | None = Field(description="ev, regular or accessible, from the site's inventory")
    charger_id: str | None
    connector_id: int | None
    usage: Usage | None = Field(description="how the charger-served bay is used (free, charging, idle: parked "
                                "without charging since arrival, overstay: still parked after its session ended, "
                                "unknown); null when the site never reported it")
    usage_since: datetime | None = Field(description="when the current usage began")
    usage_transaction_id: int | None = Field(description="the session in progress, or the one that ended")


class ChargerStationOut(BaseModel):
    charger_id: str
    connectors: int
    max_power_w: int | None


class ChargerStationsOut(BaseModel):
    site_id: str
    chargers: list[ChargerStationOut]


class BaysOut(BaseModel):
    site_id: str
    bays: list[BayOut]


class AvailabilityOut(BaseModel):
    site_id: str
    total: int
    free: int
    occupied: int
    unknown: int


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


class SiteOut(BaseModel):
    site_id: str
    last_seen_at: datetime | None = Field(description="when the cloud last received a message of the site")
    inventory: InventorySummaryOut
    power: SitePowerOut
    uplink_drops: UplinkDropsOut


class PowerLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"limit_a": 40}, {"limit_w": 27600}]})

    limit_a: float | None = Field(default=None, strict=True, gt=0, le=domain.MAX_LIMIT_A,
                                  description="amps per phase")
    limit_w: float | None = Field(default=None, strict=True, gt=0, le=domain.MAX_LIMIT_W,
                                  description="watts; the site converts with its phases and voltage")


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


router = APIRouter(prefix="/parking", tags=["parking"])


@router.get("/sites/{site_id}", response_model=SiteOut)
async def site(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """The site: its inventory in numbers, its power limit, and what its uplink dropped while offline."""
    return await service.site(site_id)


@router.get("/sites/{site_id}/bays", response_model=BaysOut)
async def site_bays(site_id: SiteId, service: ServiceDep,
                    usage: Annotated[list[Usage] | None, Query(
                        description="only bays in this usage, e.g. ?usage=overstay or ?usage=idle&usage=overstay "
                                    "for every car blocking a charger")] = None) -> dict[str, object]:
    """Every bay of the site with its sensor's last state (occupied, free, unknown) and, for bays
    served by a charger, how they are used (charging, idle, overstay)."""
    return {"site_id": site_id, "bays": await service.bays(site_id, usage)}


@router.get("/sites/{site_id}/availability", response_model=AvailabilityOut)
async def site_availability(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """How many bays are free, occupied, or unknown (sensor silent or faulty) right now."""
    return await service.availability(site_id)


@router.get("/sites/{site_id}/chargers", response_model=ChargerStationsOut)
async def site_chargers(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """The site's charger stations, as the site's inventory lists them."""
    return {"site_id": site_id, "chargers": await service.chargers(site_id)}


@router.get("/sites/{site_id}/power-limit", response_model=PowerLimitOut)
async def get_power_limit(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """The limit last requested for the site, its status, and the limit the site applies."""
    return await service.power_limit(site_id)


@router.put("/sites/{site_id}/power-limit", response_model=PowerLimitOut, status_code=202)
async def put_power_limit(site_id: SiteId, body: PowerLimitIn, service: ServiceDep,
                          response: Response) -> dict[str, object]:
    """Ask the site to change the limit its load management shares: exactly one of ``limit_a``
    (amps per phase) or ``limit_w`` (watts). Accepted for delivery (202): the command goes out
    at once, or when the site's MQTT link is back; follow it with GET."""
    errors = domain.power_limit_errors(body.limit_a, body.limit_w)
    if errors:
        raise RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}
                                      for field, message in errors])
    response.headers["location"] = f"/parking/sites/{site_id}/power-limit"
    return await service.request_power_limit(site_id, limit_a=body.limit_a, limit_w=body.limit_w)
