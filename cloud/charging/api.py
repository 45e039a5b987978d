"""Charging REST API: thin routers that call one use case each, with the verified caller.

Every route needs a bearer token (401 without); who sees what is the use case's rule.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from cloud.charging.domain import DriverInDebt
from cloud.charging.service import ChargingService
from cloud.charging.views import (
    AnomaliesView,
    AvailabilityRequest,
    CommandAnswer,
    HistoryView,
    RatesView,
    ResetRequest,
    StartRequest,
    StationCommandAnswer,
    StationsView,
    StatusView,
    StopRequest,
    UnlockRequest,
)
from cloud.platform.app import problem
from cloud.platform.identity import CurrentUser

SiteId = Annotated[str, Path(min_length=1, max_length=64)]
ChargerId = Annotated[str, Path(min_length=1, max_length=64)]
SiteQuery = Annotated[str, Query(min_length=1, max_length=64, description="the site")]
VehicleId = Annotated[str, Path(min_length=1, max_length=64, description="the vehicle's id from the registry")]


def _service(request: Request) -> ChargingService:
    return request.app.state.charging  # type: ignore[no-any-return]


ServiceDep = Annotated[ChargingService, Depends(_service)]

router = APIRouter(prefix="/charging", tags=["charging"])

COMMAND_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"description": "unknown vehicle, session, charger or connector, or not yours"},
    409: {"description": "the charger is offline, the connector busy, or the vehicle charging already (or not)"},
    503: {"description": "the command could not be sent to the site"},
    504: {"description": "the site or the charger did not answer in time; the command has expired at the site"},
}


@router.get("/status/{vehicle_id}", response_model=StatusView)
async def charging_status(vehicle_id: VehicleId, service: ServiceDep, user: CurrentUser) -> StatusView:
    """Whether the vehicle is charging now, with its running sessions and energy so far.

    Its owner and an admin see every session; an operator or technician only those at their
    sites, without idTags; anyone else gets 404, as for an unknown vehicle."""
    return await service.status(user, vehicle_id)


@router.get("/history/{vehicle_id}", response_model=HistoryView)
async def charging_history(
    vehicle_id: VehicleId,
    service: ServiceDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> HistoryView:
    """The vehicle's completed charging sessions, newest first.

    Its owner and an admin see every session; an operator or technician only those at their
    sites, without idTags; anyone else gets 404, as for an unknown vehicle."""
    return await service.history(user, vehicle_id, limit=limit, offset=offset)


@router.get("/anomalies", response_model=AnomaliesView)
async def charging_anomalies(
    service: ServiceDep,
    user: CurrentUser,
    site_id: Annotated[str | None, Query(min_length=1, max_length=64, description="one site; all yours if absent")]
    = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AnomaliesView:
    """What the charging service could not explain about sessions (a stop from another charger, a session
    the edge lost, a meter value out of range), newest first.

    Operators of the site and admins only (403 for other roles; another operator's site is 404)."""
    return await service.anomalies(user, site_id, limit=limit, offset=offset)


START_ANSWERS: dict[int | str, dict[str, Any]] = {
    402: {"description": "the vehicle's owner has an unpaid invoice at this site, which refuses remote starts until "
                         "it is paid: a problem with code unpaid_invoice and the invoice_id, amount and currency"},
    **COMMAND_ANSWERS,
}


@router.post("/start", response_model=CommandAnswer, responses=START_ANSWERS)
async def charging_start(request: StartRequest, http: Request, service: ServiceDep,
                         user: CurrentUser) -> CommandAnswer | JSONResponse:
    """Start charging a vehicle of yours on a charger (RemoteStartTransaction with its first idTag).

    Answers within 20 s with the charger's answer; 409 when the charger is offline, the connector busy or
    the vehicle charging already; 504 when the site or charger did not answer (the command has expired
    at the site: a car plugged in later starts nothing); another driver's vehicle is 404; 402 while the
    vehicle's owner has an unpaid invoice at the site and the site refuses remote starts until it is paid."""
    try:
        return await service.remote_start(user, request)
    except DriverInDebt as exc:
        return problem(exc.status, exc.title, exc.detail, instance=http.url.path, code=exc.code,
                       invoice_id=exc.invoice_id, amount=str(exc.amount), currency=exc.currency)


@router.post("/stop", response_model=CommandAnswer, responses=COMMAND_ANSWERS)
async def charging_stop(request: StopRequest, service: ServiceDep, user: CurrentUser) -> CommandAnswer:
    """Stop a running session, by ``session_id`` or ``vehicle_id`` (RemoteStopTransaction), answered as a start."""
    return await service.remote_stop(user, request)


@router.get("/rates", response_model=RatesView)
async def charging_rates(site_id: SiteQuery, service: ServiceDep, user: CurrentUser) -> RatesView:
    """What a driver pays at the site, per bay type and power class (the site's tariff in force)."""
    return await service.rates(user, site_id)


@router.get("/stations", response_model=StationsView)
async def charging_stations(site_id: SiteQuery, service: ServiceDep, user: CurrentUser) -> StationsView:
    """The site's chargers and connectors with live status, maximum power and power class; the session on each
    for the site's operators and technicians and admins. Another operator's site is 404."""
    return await service.stations(user, site_id)


@router.post("/stations/{site_id}/{charger_id}/unlock", response_model=StationCommandAnswer,
             responses=COMMAND_ANSWERS)
async def station_unlock(site_id: SiteId, charger_id: ChargerId, request: UnlockRequest, service: ServiceDep,
                         user: CurrentUser) -> StationCommandAnswer:
    """UnlockConnector: the site's operators and technicians, admins (404 for anyone else)."""
    return await service.unlock(user, site_id, charger_id, request)


@router.post("/stations/{site_id}/{charger_id}/reset", response_model=StationCommandAnswer,
             responses=COMMAND_ANSWERS)
async def station_reset(site_id: SiteId, charger_id: ChargerId, request: ResetRequest, service: ServiceDep,
                        user: CurrentUser) -> StationCommandAnswer:
    """Reset (Soft by default): the site's operators and technicians, admins (404 for anyone else)."""
    return await service.reset(user, site_id, charger_id, request)


@router.post("/stations/{site_id}/{charger_id}/availability", response_model=StationCommandAnswer,
             responses=COMMAND_ANSWERS)
async def station_availability(site_id: SiteId, charger_id: ChargerId, request: AvailabilityRequest,
                               service: ServiceDep, user: CurrentUser) -> StationCommandAnswer:
    """ChangeAvailability (connector 0: the whole charger): the site's operators and technicians, admins."""
    return await service.change_availability(user, site_id, charger_id, request)
