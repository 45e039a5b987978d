"""Charging REST API: thin routers that call one use case each."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from cloud.charging.service import ChargingService

VehicleId = Annotated[str, Path(min_length=1, max_length=64, description="the vehicle's id from the registry")]


def _service(request: Request) -> ChargingService:
    return request.app.state.charging  # type: ignore[no-any-return]


ServiceDep = Annotated[ChargingService, Depends(_service)]


class SessionOut(BaseModel):
    session_id: str
    site_id: str
    charger_id: str
    connector_id: int | None
    transaction_id: int
    id_tag: str | None
    status: str
    started_at: datetime | None
    stopped_at: datetime | None
    duration_s: int | None
    energy_wh: int
    stop_reason: str | None
    clock_suspect: bool


class StatusOut(BaseModel):
    vehicle_id: str
    charging: bool
    sessions: list[SessionOut]


class HistoryOut(BaseModel):
    vehicle_id: str
    sessions: list[SessionOut]
    limit: int
    offset: int


router = APIRouter(prefix="/charging", tags=["charging"])


@router.get("/status/{vehicle_id}", response_model=StatusOut)
async def charging_status(vehicle_id: VehicleId, service: ServiceDep) -> dict[str, object]:
    """Whether the vehicle is charging now, with its running sessions and energy so far."""
    return await service.status(vehicle_id)


@router.get("/history/{vehicle_id}", response_model=HistoryOut)
async def charging_history(
    vehicle_id: VehicleId,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, object]:
    """The vehicle's completed charging sessions, newest first."""
    sessions = await service.history(vehicle_id, limit=limit, offset=offset)
    return {"vehicle_id": vehicle_id, "sessions": sessions, "limit": limit, "offset": offset}
