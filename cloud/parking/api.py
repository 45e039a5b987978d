"""Parking REST API: thin routers that call one use case each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from cloud.parking.service import ParkingService

SiteId = Annotated[str, Path(min_length=1, max_length=64, description="the site's id")]


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


router = APIRouter(prefix="/parking", tags=["parking"])


@router.get("/sites/{site_id}/bays", response_model=BaysOut)
async def site_bays(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """Every bay of the site with its sensor's last state (occupied, free, unknown)."""
    return {"site_id": site_id, "bays": await service.bays(site_id)}


@router.get("/sites/{site_id}/availability", response_model=AvailabilityOut)
async def site_availability(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """How many bays are free, occupied, or unknown (sensor silent or faulty) right now."""
    return await service.availability(site_id)


@router.get("/sites/{site_id}/chargers", response_model=ChargerStationsOut)
async def site_chargers(site_id: SiteId, service: ServiceDep) -> dict[str, object]:
    """The site's charger stations, as the site's inventory lists them."""
    return {"site_id": site_id, "chargers": await service.chargers(site_id)}
