"""Parking REST API: thin routers that call one use case each, passing the verified caller.

Every route needs a bearer token (:data:`CurrentUser`; none or an invalid one → 401); what the
caller may see or change is the use cases' (and their domain rules') to decide.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from cloud.parking import booking, domain
from cloud.parking.booking_service import BookingService
from cloud.parking.service import ParkingService
from cloud.parking.views import (
    AvailabilityOut,
    BaysOut,
    ChargerStationsOut,
    HistoryOut,
    LotOut,
    PowerLimitOut,
    ReservationOut,
    SiteOut,
    SlotDetailOut,
    SlotOut,
    StatusOut,
    Usage,
)
from cloud.platform.app import problem
from cloud.platform.identity import CurrentUser

SiteId = Annotated[str, Path(min_length=1, max_length=64, description="the site's id")]


def _service(request: Request) -> ParkingService:
    return request.app.state.parking  # type: ignore[no-any-return]


ServiceDep = Annotated[ParkingService, Depends(_service)]


def _booking(request: Request) -> BookingService:
    return request.app.state.booking  # type: ignore[no-any-return]


BookingDep = Annotated[BookingService, Depends(_booking)]
T = TypeVar("T")


async def _fields(call: Awaitable[T], where: str = "body") -> T:
    """A rule of the booking domain refusing a field is a 422 naming it, as FastAPI's own."""
    try:
        return await call
    except booking.InvalidField as exc:
        raise RequestValidationError([{"loc": (where, *exc.field.split(".")), "msg": exc.message,
                                       "type": "value_error"}]) from None


Id = Annotated[str, Field(min_length=1, max_length=64)]


class ReserveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"vehicle_id": "veh-1", "site_id": "site-1", "bay_type": "ev", "starts_at": "2026-12-03T08:00:00Z",
         "ends_at": "2026-12-03T10:00:00Z"}]})

    vehicle_id: Id
    site_id: Id
    bay_id: Id | None = None
    bay_type: Literal["ev", "regular", "accessible"] | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reservation_id: Id | None = None
    vehicle_id: Id | None = None


class LotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=120)
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    opening_hours: dict[str, list[str]] | None = None
    reservable_types: list[Literal["ev", "regular", "accessible"]] = Field(
        default_factory=lambda: list(booking.BAY_TYPES))
    max_reservation_minutes: int = Field(default=24 * 60, strict=True)
    booking_horizon_days: int = Field(default=30, strict=True)
    arrival_grace_minutes: int = Field(default=15, strict=True)
    max_stay_minutes: int = Field(default=24 * 60, strict=True)


class ServiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    in_service: bool = Field(strict=True)
    reason: str = Field(min_length=1, max_length=200)


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
                        description="only bays in this usage, e.g. ?usage=idle or ?usage=blocked&usage=idle "
                                    "for every car blocking a charger")] = None) -> BaysOut:
    """Every bay of the site with its sensor's last state (occupied, free, unknown) and, for bays
    served by a charger, how they are used (charging, blocked, idle). For an admin and the site's
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


# --- reservations, status, stays, the lot ----------------------------------------------------------


@router.post("/reserve", response_model=ReservationOut, status_code=201,
             responses={402: {"description": "the driver has an unpaid invoice at this site, which refuses new "
                                    "reservations until it is paid: a problem with code unpaid_invoice and the "
                                    "invoice_id, amount and currency"},
                        404: {"description": "unknown site, bay or vehicle, or another's vehicle"},
                        409: {"description": "no bay free, or the bay is held for an overlapping window"}})
async def reserve(body: ReserveIn, user: CurrentUser, service: BookingDep, response: Response,
                  http: Request) -> ReservationOut | JSONResponse:
    """Reserve a bay (``bay_id``) or a bay of a type (``bay_type``: the service picks a free one) for
    a window, for one of the caller's vehicles. 409 when none is free or the bay is held for an
    overlapping window (windows are half-open: one may start when another ends); 422 naming the
    field for a window in the past, reversed, too long, beyond the booking horizon or outside the
    opening hours, or a vehicle that may not hold an EV bay; another's vehicle is a 404; 402 while
    the driver has an unpaid invoice at the site and the site refuses new reservations until it is
    paid (the same problem as ``POST /charging/start``; nothing is stored)."""
    try:
        out = await _fields(service.reserve(user, vehicle_id=body.vehicle_id, site_id=body.site_id,
                                            bay_id=body.bay_id, bay_type=body.bay_type, starts_at=body.starts_at,
                                            ends_at=body.ends_at))
    except booking.DriverInDebt as exc:
        return problem(exc.status, exc.title, exc.detail, instance=http.url.path, code=exc.code,
                       invoice_id=exc.invoice_id, amount=str(exc.amount), currency=exc.currency)
    response.headers["location"] = f"/parking/slots/{out.slot_id}"
    return out


@router.get("/status", response_model=StatusOut, responses={404: {"description": "no bays are known for the site"}})
async def status(user: CurrentUser, service: BookingDep,
                 site_id: Annotated[str, Query(min_length=1, max_length=64)]) -> Response:
    """Every bay of the site: state (free, occupied, reserved, out_of_service, unknown), usage, and
    counts per state and per type. For every signed-in caller."""
    return Response(await service.status_json(user, site_id), media_type="application/json")


@router.get("/slots/{slot_id}", response_model=SlotDetailOut)
async def slot(slot_id: Annotated[str, Path(min_length=1, max_length=64)], user: CurrentUser,
               service: BookingDep) -> SlotDetailOut:
    """One bay with its current stay or reservation and the next reservations (whose they are only
    for the holder, the site's operators and admins)."""
    return await service.slot(user, slot_id)


@router.delete("/release", response_model=ReservationOut,
               responses={404: {"description": "unknown reservation or vehicle, or another's"},
                          409: {"description": "the reservation has ended already"}})
async def release(user: CurrentUser, service: BookingDep, request: Request,
                  reservation_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                  vehicle_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None) -> ReservationOut:
    """Cancel a reservation not yet fulfilled, or release the hold of a fulfilled one
    (``?reservation_id=`` or ``?vehicle_id=``: the vehicle's next holding reservation; a JSON body
    with either is accepted too)."""
    if reservation_id is None and vehicle_id is None:
        raw = await request.body()
        if raw:
            try:
                body = ReleaseIn.model_validate_json(raw)
            except ValidationError as exc:
                raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
            reservation_id, vehicle_id = body.reservation_id, body.vehicle_id
    return await _fields(service.release(user, reservation_id=reservation_id, vehicle_id=vehicle_id), "query")


@router.get("/history/{vehicle_id}", response_model=HistoryOut)
async def history(vehicle_id: Annotated[str, Path(min_length=1, max_length=64)], user: CurrentUser,
                  service: BookingDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                  offset: Annotated[int, Query(ge=0)] = 0) -> HistoryOut:
    """The vehicle's stays and reservations (completed, released, cancelled, no-show), newest first.
    For its owner and admins."""
    return await service.history(user, vehicle_id, limit=limit, offset=offset)


@router.get("/lots/{site_id}", response_model=LotOut)
async def get_lot(site_id: SiteId, user: CurrentUser, service: BookingDep) -> LotOut:
    """The lot's configuration (defaults from the glossary until an operator sets it). For an admin
    and the site's operators and technicians."""
    return await service.lot(user, site_id)


@router.put("/lots/{site_id}", response_model=LotOut)
async def put_lot(site_id: SiteId, body: LotIn, user: CurrentUser, service: BookingDep) -> LotOut:
    """Set the lot's configuration (every field; those left out take their defaults). For an admin
    and the site's operators."""
    service.check_may_configure(user, site_id)
    lot = booking.Lot(site_id=site_id, name=body.name, time_zone=body.time_zone, opening_hours=body.opening_hours,
                      reservable_types=list(body.reservable_types),
                      max_reservation_minutes=body.max_reservation_minutes,
                      booking_horizon_days=body.booking_horizon_days, arrival_grace_minutes=body.arrival_grace_minutes,
                      max_stay_minutes=body.max_stay_minutes)
    return await _fields(service.configure_lot(user, lot))


@router.put("/slots/{slot_id}/service", response_model=SlotOut)
async def put_slot_service(slot_id: Annotated[str, Path(min_length=1, max_length=64)], body: ServiceIn,
                           user: CurrentUser, service: BookingDep) -> SlotOut:
    """Put a bay out of service (``in_service: false``) or back, with a reason. For an admin and the
    site's operators."""
    return await service.set_service(user, slot_id, in_service=body.in_service, reason=body.reason)
