"""Parking REST API: thin routers that call one use case each, passing the verified caller.

Every route needs a bearer token (:data:`CurrentUser`; none or an invalid one → 401); what the
caller may see or change is the use cases' (and their domain rules') to decide.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud.parking import domain
from cloud.parking.service import ParkingService
from cloud.parking.views import AvailabilityOut, BaysOut, ChargerStationsOut, PowerLimitOut, SiteOut, Usage
from cloud.platform.identity import CurrentUser

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


async def _power_limit_in(request: Request) -> PowerLimitIn:
    """The body of a power-limit PUT, read only once the caller may change the limit (so a caller
    who may not is refused whatever they sent); invalid → 422 naming the fields, as FastAPI would."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if not (content_type == "application/json" or content_type.endswith("+json")):
        raise RequestValidationError([{"loc": ("body",), "msg": "send a JSON body (content-type application/json)",
                                       "type": "content_type"}])
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": f"JSON decode error: {exc}",
                                       "type": "json_invalid"}]) from None
    try:
        body = PowerLimitIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from None
    errors = domain.power_limit_errors(body.limit_a, body.limit_w)
    if errors:
        raise RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}
                                      for field, message in errors])
    return body


_POWER_LIMIT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": PowerLimitIn.model_json_schema()}}}}
"""The PUT's body in the OpenAPI document (the route reads it itself, after checking the caller)."""

router = APIRouter(prefix="/parking", tags=["parking"])


@router.get("/sites/{site_id}", response_model=SiteOut)
async def site(site_id: SiteId, user: CurrentUser, service: ServiceDep) -> SiteOut:
    """The site: its inventory in numbers, its power limit, and what its uplink dropped while offline.
    For an admin and the site's operators and technicians."""
    return await service.site(user, site_id)


@router.get("/sites/{site_id}/bays", response_model=BaysOut)
async def site_bays(site_id: SiteId, user: CurrentUser, service: ServiceDep,
                    usage: Annotated[list[Usage] | None, Query(
                        description="only bays in this usage, e.g. ?usage=overstay or ?usage=idle&usage=overstay "
                                    "for every car blocking a charger")] = None) -> BaysOut:
    """Every bay of the site with its sensor's last state (occupied, free, unknown) and, for bays
    served by a charger, how they are used (charging, idle, overstay). For an admin and the site's
    operators and technicians."""
    return await service.bays(user, site_id, usage)


@router.get("/sites/{site_id}/availability", response_model=AvailabilityOut)
async def site_availability(site_id: SiteId, user: CurrentUser, service: ServiceDep) -> AvailabilityOut:
    """How many bays are free, occupied, or unknown (sensor silent or faulty) right now. For every
    signed-in caller."""
    return await service.availability(user, site_id)


@router.get("/sites/{site_id}/chargers", response_model=ChargerStationsOut)
async def site_chargers(site_id: SiteId, user: CurrentUser, service: ServiceDep) -> ChargerStationsOut:
    """The site's charger stations, as the site's inventory lists them. For an admin and the site's
    operators and technicians."""
    return await service.chargers(user, site_id)


@router.get("/sites/{site_id}/power-limit", response_model=PowerLimitOut)
async def get_power_limit(site_id: SiteId, user: CurrentUser, service: ServiceDep) -> PowerLimitOut:
    """The limit last requested for the site, its status, and the limit the site applies. For an
    admin and the site's operators and technicians."""
    return await service.power_limit(user, site_id)


@router.put("/sites/{site_id}/power-limit", response_model=PowerLimitOut, status_code=202,
            openapi_extra=_POWER_LIMIT_BODY)
async def put_power_limit(site_id: SiteId, user: CurrentUser, service: ServiceDep, request: Request,
                          response: Response) -> PowerLimitOut:
    """Ask the site to change the limit its load management shares: exactly one of ``limit_a``
    (amps per phase) or ``limit_w`` (watts). Accepted for delivery (202): the command goes out
    at once, or when the site's MQTT link is back; follow it with GET. For an admin and the
    site's operators (a technician sees the limit but does not change it)."""
    service.check_may_change_power_limit(user, site_id)
    body = await _power_limit_in(request)
    response.headers["location"] = f"/parking/sites/{site_id}/power-limit"
    return await service.request_power_limit(user, site_id, limit_a=body.limit_a, limit_w=body.limit_w)
