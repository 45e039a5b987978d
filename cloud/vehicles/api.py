"""Vehicle registry REST API: thin routers that call one use case each."""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cloud.platform.identity import CurrentUser
from cloud.vehicles.domain import (
    CONNECTOR_TYPES,
    KINDS,
    InvalidVehicle,
    RegisterVehicle,
    UpdateVehicle,
    VehicleType,
    has_control_characters,
)
from cloud.vehicles.repository import SearchFilters
from cloud.vehicles.service import VehicleService
from cloud.vehicles.views import SearchPage, VehicleStatusView, VehicleTypeView, VehicleView

T = TypeVar("T")


def _no_control_characters(value: str) -> str:
    if has_control_characters(value):
        raise ValueError("must not contain NUL or other control characters")
    return value


Text = Annotated[str, AfterValidator(_no_control_characters)]
"""A string field: NUL, control and format characters are a 422 naming the field."""
Kind = Literal["electric", "plug_in_hybrid", "hybrid", "combustion"]
Connector = Literal["type1", "type2", "ccs1", "ccs2", "chademo", "nacs", "gbt"]
Kilo = Annotated[Decimal, Field(gt=0, le=1000, decimal_places=3)]
VehicleId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
                                description="the vehicle's id")]
TypeId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$",
                             description="the catalogue entry's id")]
assert set(KINDS) == set(Kind.__args__) and set(CONNECTOR_TYPES) == set(Connector.__args__)  # type: ignore[attr-defined]


async def _checked(call: Awaitable[T]) -> T:
    """A domain rule that refuses a field answers like the request's validation: 422 naming it."""
    try:
        return await call
    except InvalidVehicle as exc:
        if exc.field is None:
            raise
        raise RequestValidationError([{"loc": ("body", exc.field), "msg": exc.detail, "type": exc.code}]) from None


def _service(request: Request) -> VehicleService:
    return request.app.state.vehicles  # type: ignore[no-any-return]


ServiceDep = Annotated[VehicleService, Depends(_service)]


class VehicleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plate: Text = Field(min_length=1, max_length=32, description="licence plate; case, spaces and dashes "
                        "do not tell two plates apart")
    type: Kind = Field(default="electric", description="what the vehicle is")
    make: Text | None = Field(default=None, max_length=64)
    model: Text | None = Field(default=None, max_length=64)
    vehicle_type_id: Text | None = Field(default=None, max_length=64,
                                         description="an entry of GET /vehicles/types: fills make, model, "
                                                     "battery and connectors not given")
    battery_kwh: Kilo | None = Field(default=None, description="usable battery capacity, kWh")
    connector_types: list[Connector] | None = Field(default=None, max_length=7)
    id_tags: list[Text] = Field(default_factory=list, max_length=10,
                                description="RFID idTags (OCPP CiString20, case-insensitive)")


class RegisterVehicleIn(VehicleFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"plate": "EV-123-PK", "type": "electric", "vehicle_type_id": "renault-zoe-r135-ze50",
                      "id_tags": ["04A2B3C4D5"]}]})

    def command(self) -> RegisterVehicle:
        return RegisterVehicle(plate=self.plate, id_tags=tuple(self.id_tags), make=self.make, model=self.model,
                               kind=self.type, vehicle_type_id=self.vehicle_type_id, battery_kwh=self.battery_kwh,
                               connector_types=None if self.connector_types is None else tuple(self.connector_types))


class UpdateVehicleIn(VehicleFields):
    version: int = Field(ge=1, le=2**31 - 1, description="the version you read: a stale one is a 409")
    owner_id: Text | None = Field(default=None, max_length=255, description="give the vehicle to another "
                                  "account (admin only); absent: the owner stays")

    def command(self) -> UpdateVehicle:
        return UpdateVehicle(version=self.version, plate=self.plate, id_tags=tuple(self.id_tags), make=self.make,
                             model=self.model, kind=self.type, vehicle_type_id=self.vehicle_type_id,
                             battery_kwh=self.battery_kwh,
                             connector_types=None if self.connector_types is None else tuple(self.connector_types),
                             owner_id=self.owner_id)


class VehicleTypeFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    make: Text = Field(min_length=1, max_length=64)
    model: Text = Field(min_length=1, max_length=64)
    type: Kind = "electric"
    battery_kwh: Kilo | None = None
    max_ac_kw: Kilo | None = Field(default=None, description="the on-board charger's maximum, kW")
    max_dc_kw: Kilo | None = Field(default=None, description="peak fast-charging power, kW")
    connector_types: list[Connector] = Field(default_factory=list, max_length=7)
    source: Text | None = Field(default=None, max_length=300, description="where the figures come from")

    def entry(self, type_id: str, version: int) -> VehicleType:
        return VehicleType(type_id=type_id, make=self.make, model=self.model, kind=self.type,
                           battery_kwh=self.battery_kwh, max_ac_kw=self.max_ac_kw, max_dc_kw=self.max_dc_kw,
                           connector_types=tuple(self.connector_types), source=self.source, version=version)


class NewVehicleTypeIn(VehicleTypeFields):
    type_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
                                description="a slug; absent: one is made up")


class VehicleTypeIn(VehicleTypeFields):
    version: int = Field(ge=1, le=2**31 - 1, description="the version you read: a stale one is a 409")


router = APIRouter(prefix="/vehicles", tags=["vehicles"])


@router.post("/register", response_model=VehicleView, status_code=201)
async def register_vehicle(body: RegisterVehicleIn, user: CurrentUser, service: ServiceDep) -> VehicleView:
    """Register a vehicle of the caller (a driver or an admin; 403 for others) and the idTags that
    may charge it; every site learns the idTags."""
    return await _checked(service.register(user, body.command()))


@router.get("", response_model=list[VehicleView])
async def find_vehicles(plate: Annotated[str, Query(min_length=1, max_length=16, description="licence plate")],
                        user: CurrentUser, service: ServiceDep) -> list[VehicleView]:
    """Find the caller's vehicle by its plate (an admin: any vehicle); an empty list when none is
    registered or it is another's. Drivers and admins only (403 for others)."""
    return await service.find_by_plate(user, plate)


@router.get("/search", response_model=SearchPage)
async def search_vehicles(
    user: CurrentUser, service: ServiceDep,
    type: Annotated[Kind | None, Query(description="what the vehicles are")] = None,
    plate: Annotated[Text | None, Query(min_length=1, max_length=32, description="plates starting so")] = None,
    make: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
    model: Annotated[Text | None, Query(min_length=1, max_length=64)] = None,
    owner: Annotated[Text | None, Query(min_length=1, max_length=255,
                                        description="an account id (operators and admins)")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> SearchPage:
    """Search vehicles, by plate: a driver among their own, an operator (without idTags) or an
    admin among all, also by owner. Technicians: 403."""
    return await service.search(user, SearchFilters(kind=type, plate=plate, make=make, model=model, owner_id=owner),
                                limit=limit, offset=offset)


@router.get("/types", response_model=list[VehicleTypeView])
async def vehicle_types(user: CurrentUser, service: ServiceDep) -> list[VehicleTypeView]:
    """The vehicle-type catalogue (any signed-in caller with a role)."""
    return await service.types(user)


@router.post("/types", response_model=VehicleTypeView, status_code=201)
async def add_vehicle_type(body: NewVehicleTypeIn, user: CurrentUser, service: ServiceDep) -> VehicleTypeView:
    """Add an entry to the catalogue (admin; 409 when its make and model, or its id, exist)."""
    return await _checked(service.add_type(user, body.entry(body.type_id or "", 1)))


@router.get("/types/{type_id}", response_model=VehicleTypeView)
async def get_vehicle_type(type_id: TypeId, user: CurrentUser, service: ServiceDep) -> VehicleTypeView:
    """One catalogue entry."""
    return await service.get_type(user, type_id)


@router.put("/types/{type_id}", response_model=VehicleTypeView)
async def update_vehicle_type(type_id: TypeId, body: VehicleTypeIn, user: CurrentUser,
                              service: ServiceDep) -> VehicleTypeView:
    """Replace a catalogue entry (admin) over the version read (stale: 409)."""
    return await _checked(service.update_type(user, type_id, body.entry(type_id, body.version)))


@router.get("/{vehicle_id}", response_model=VehicleView)
async def get_vehicle(vehicle_id: VehicleId, user: CurrentUser, service: ServiceDep) -> VehicleView:
    """The caller's vehicle (an admin: any), its idTags, and whether each site can authorize them;
    another's vehicle is a 404, exactly as an unknown one."""
    return await service.get(user, vehicle_id)


@router.put("/{vehicle_id}", response_model=VehicleView)
async def update_vehicle(vehicle_id: VehicleId, body: UpdateVehicleIn, user: CurrentUser,
                         service: ServiceDep) -> VehicleView:
    """Replace the caller's vehicle (an admin: any) with the body, over the ``version`` read: a
    stale version or a plate or idTag of another vehicle is a 409; idTags left out are withdrawn
    from every site."""
    return await _checked(service.update(user, vehicle_id, body.command()))


@router.delete("/{vehicle_id}", status_code=204, response_class=Response)
async def delete_vehicle(vehicle_id: VehicleId, user: CurrentUser, service: ServiceDep) -> Response:
    """Delete the caller's vehicle (an admin: any); its idTags are withdrawn from every site's
    authorization list (the edge then answers Invalid)."""
    await service.delete(user, vehicle_id)
    return Response(status_code=204)


@router.get("/{vehicle_id}/status", response_model=VehicleStatusView)
async def vehicle_status(vehicle_id: VehicleId, user: CurrentUser, service: ServiceDep) -> VehicleStatusView:
    """Where the caller's vehicle (an admin: any) is parked (site, bay, since), whether it charges
    (session), and whether it is reserved, from parking's and charging's events."""
    return await service.status(user, vehicle_id)
