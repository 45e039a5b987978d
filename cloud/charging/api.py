"""Charging REST API: thin routers that call one use case each, with the verified caller.

Every route needs a bearer token (401 without); who sees what is the use case's rule.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from cloud.charging.service import ChargingService
from cloud.charging.views import AnomaliesView, HistoryView, StatusView
from cloud.platform.identity import CurrentUser

VehicleId = Annotated[str, Path(min_length=1, max_length=64, description="the vehicle's id from the registry")]


def _service(request: Request) -> ChargingService:
    return request.app.state.charging  # type: ignore[no-any-return]


ServiceDep = Annotated[ChargingService, Depends(_service)]

router = APIRouter(prefix="/charging", tags=["charging"])


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
