"""Analytics REST API: usage, revenue, peak hours, vehicle types (JSON, or CSV with ``Accept: text/csv``)
and ``GET /metrics/health``. Operators see their sites, admins all; another site is a 404."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query, Request, Response

from cloud.analytics.service import AnalyticsService
from cloud.analytics.views import HealthOut, PeakHoursOut, RevenueOut, UsageOut, VehicleTypesOut
from cloud.platform.identity import CurrentUser


class Report(Protocol):
    def rows(self) -> list[dict[str, Any]]: ...

    def model_dump_json(self) -> str: ...


def _service(request: Request) -> AnalyticsService:
    return request.app.state.analytics  # type: ignore[no-any-return]


Service = Annotated[AnalyticsService, Depends(_service)]
From = Annotated[datetime | None, Query(alias="from", description="start (inclusive, with a time zone); "
                                        "default: 30 days before 'to'")]
To = Annotated[datetime | None, Query(description="end (exclusive); default: now. At most 2 years after 'from'")]
Site = Annotated[str | None, Query(max_length=64, description="one site; default: every site of the caller")]
Granularity = Annotated[str | None, Query(max_length=16, description="hour, day (default), week or month")]

router = APIRouter(tags=["analytics"])


def answer(request: Request, report: Report) -> Response:
    """The report as JSON, or as CSV when the caller accepts ``text/csv`` (and not JSON first)."""
    accept = request.headers.get("accept", "")
    json_at, csv_at = accept.find("application/json"), accept.find("text/csv")
    if csv_at == -1 or -1 < json_at < csv_at:  # serialised once, here (a year by hour is 8,760 periods)
        return Response(report.model_dump_json(), media_type="application/json")
    rows = report.rows()
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")


@router.get("/analytics/usage", response_model=UsageOut)
async def usage(request: Request, user: CurrentUser, service: Service, start: From = None, to: To = None,
                site_id: Site = None, granularity: Granularity = None,
                bay_type: Annotated[str | None, Query(max_length=16)] = None) -> Any:
    """Stays, sessions, kWh, utilisation, idle and blocked minutes, reservations, first-attempt success."""
    return answer(request, await service.usage(user, start, to, granularity, site_id, bay_type))


@router.get("/analytics/revenue", response_model=RevenueOut)
async def revenue(request: Request, user: CurrentUser, service: Service, start: From = None, to: To = None,
                  site_id: Site = None, granularity: Granularity = None) -> Any:
    """Revenue by component, refunds and net per site, period and currency, by invoice date (site's zone)."""
    return answer(request, await service.revenue(user, start, to, granularity, site_id))


@router.get("/analytics/peak-hours", response_model=PeakHoursOut)
async def peak_hours(request: Request, user: CurrentUser, service: Service, start: From = None, to: To = None,
                     site_id: Site = None) -> Any:
    """Occupancy and charging by weekday x hour in the site's time zone (a heat map's data)."""
    return answer(request, await service.peak_hours(user, start, to, site_id))


@router.get("/analytics/vehicle-types", response_model=VehicleTypesOut)
async def vehicle_types(request: Request, user: CurrentUser, service: Service, start: From = None, to: To = None,
                        site_id: Site = None) -> Any:
    """Registered and visiting vehicles by type, make and battery size band."""
    return answer(request, await service.vehicle_types(user, start, to, site_id))


@router.get("/metrics/health", response_model=HealthOut)
async def health(request: Request, user: CurrentUser, service: Service) -> Any:
    """Every service's health and readiness (admin), every site's edge link, chargers offline or faulted."""
    return answer(request, await service.health(user))
