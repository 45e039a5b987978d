"""Parking REST API: thin routers that call one use case each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from cloud.parking import domain
from cloud.parking.service import ParkingService
from cloud.parking.views import AvailabilityOut, BaysOut, ChargerStationsOut, PowerLimitOut, SiteOut, Usage

SiteId = Annotated[str, Path(min_length=1, max_length=64, description="the site's id")]


def _service(request: Request) -> ParkingService:
    return request.app.state.parking  # type: ignore[no-any-return]


ServiceDep = Annotated[ParkingService, Depends(_service)]


class PowerLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"limit_a": 40}, {"limit_w": 27600}]})

    limit_a: float | None = Field(default=None, strict=True, gt=0, le=domain.MAX_LIMIT_A,
                                  description="amps per phase")
    limit_w: float | None = Field(default=None, strict=True, gt=0, le=domain.MAX_LIMIT_W,
                                  description="watts; the site converts with its phases and voltage")


router = APIRouter(prefix="/parking", tags=["parking"])


@router.get("/sites/{site_id}", response_model=SiteOut)
async def site(site_id: SiteId, service: ServiceDep) -> SiteOut:
    """The site: its inventory in numbers, its power limit, and what its uplink dropped while offline."""
    return await service.site(site_id)


@router.get("/sites/{site_id}/bays", response_model=BaysOut)
async def site_bays(site_id: SiteId, service: ServiceDep,
                    usage: Annotated[list[Usage] | None, Query(
                        description="only bays in this usage, e.g. ?usage=overstay or ?usage=idle&usage=overstay "
                                    "for every car blocking a charger")] = None) -> BaysOut:
    """Every bay of the site with its sensor's last state (occupied, free, unknown) and, for bays
    served by a charger, how they are used (charging, idle, overstay)."""
    return await service.bays(site_id, usage)


@router.get("/sites/{site_id}/availability", response_model=AvailabilityOut)
async def site_availability(site_id: SiteId, service: ServiceDep) -> AvailabilityOut:
    """How many bays are free, occupied, or unknown (sensor silent or faulty) right now."""
    return await service.availability(site_id)


@router.get("/sites/{site_id}/chargers", response_model=ChargerStationsOut)
async def site_chargers(site_id: SiteId, service: ServiceDep) -> ChargerStationsOut:
    """The site's charger stations, as the site's inventory lists them."""
    return await service.chargers(site_id)


@router.get("/sites/{site_id}/power-limit", response_model=PowerLimitOut)
async def get_power_limit(site_id: SiteId, service: ServiceDep) -> PowerLimitOut:
    """The limit last requested for the site, its status, and the limit the site applies."""
    return await service.power_limit(site_id)


@router.put("/sites/{site_id}/power-limit", response_model=PowerLimitOut, status_code=202)
async def put_power_limit(site_id: SiteId, body: PowerLimitIn, service: ServiceDep,
                          response: Response) -> PowerLimitOut:
    """Ask the site to change the limit its load management shares: exactly one of ``limit_a``
    (amps per phase) or ``limit_w`` (watts). Accepted for delivery (202): the command goes out
    at once, or when the site's MQTT link is back; follow it with GET."""
    errors = domain.power_limit_errors(body.limit_a, body.limit_w)
    if errors:
        raise RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}
                                      for field, message in errors])
    response.headers["location"] = f"/parking/sites/{site_id}/power-limit"
    return await service.request_power_limit(site_id, limit_a=body.limit_a, limit_w=body.limit_w)
