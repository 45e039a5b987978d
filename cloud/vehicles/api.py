"""Vehicle registry REST API: thin routers that call one use case each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from cloud.platform.identity import CurrentUser
from cloud.vehicles.domain import RegisterVehicle
from cloud.vehicles.service import VehicleService
from cloud.vehicles.views import VehicleView


def _service(request: Request) -> VehicleService:
    return request.app.state.vehicles  # type: ignore[no-any-return]


ServiceDep = Annotated[VehicleService, Depends(_service)]


class RegisterVehicleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"plate": "EV-123-PK", "make": "Renault", "model": "Zoe", "id_tags": ["04A2B3C4D5"]}]})

    plate: str = Field(min_length=1, max_length=16, description="licence plate")
    id_tags: list[str] = Field(min_length=1, max_length=10, description="RFID idTags (OCPP CiString20)")
    make: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=64)


router = APIRouter(prefix="/vehicles", tags=["vehicles"])


@router.post("/register", response_model=VehicleView, status_code=201)
async def register_vehicle(body: RegisterVehicleIn, user: CurrentUser, service: ServiceDep) -> VehicleView:
    """Register a vehicle of the caller (a driver or an admin; 403 for others) and the idTags that
    may charge it; every site learns the idTags."""
    return await service.register(user, RegisterVehicle(plate=body.plate, id_tags=tuple(body.id_tags),
                                                        make=body.make, model=body.model))


@router.get("", response_model=list[VehicleView])
async def find_vehicles(plate: Annotated[str, Query(min_length=1, max_length=16, description="licence plate")],
                        user: CurrentUser, service: ServiceDep) -> list[VehicleView]:
    """Find the caller's vehicle by its plate (an admin: any vehicle); an empty list when none is
    registered or it is another's. Drivers and admins only (403 for others)."""
    return await service.find_by_plate(user, plate)


@router.get("/{vehicle_id}", response_model=VehicleView)
async def get_vehicle(vehicle_id: Annotated[str, Path(min_length=1, max_length=64)],
                      user: CurrentUser, service: ServiceDep) -> VehicleView:
    """The caller's vehicle (an admin: any), its idTags, and whether each site can authorize them;
    another's vehicle is a 404, exactly as an unknown one."""
    return await service.get(user, vehicle_id)
