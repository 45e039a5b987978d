"""Payment REST API: thin routers that call one use case each, passing the verified caller.

Every route needs a bearer token (:data:`CurrentUser`; none or an invalid one → 401); what the
caller may see or change is the use cases' (and their domain rules') to decide.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime

from cloud.payments import domain
from cloud.payments.service import PaymentService
from cloud.payments.views import EstimateOut, RatesOut
from cloud.platform.identity import CurrentUser
from cloud.pricing import Tariff
from cloud.pricing.tariff import BayType, PowerClass

SiteId = Annotated[str, Path(min_length=1, max_length=64, description="the site's id")]
T = TypeVar("T")


def _service(request: Request) -> PaymentService:
    return request.app.state.payments  # type: ignore[no-any-return]


ServiceDep = Annotated[PaymentService, Depends(_service)]


def _invalid(where: Literal["body", "query"], exc: domain.InvalidInput) -> RequestValidationError:
    """A domain's refusal of the request's fields as FastAPI's own validation error (422 naming each)."""
    return RequestValidationError([{"loc": (where, *loc), "msg": message, "type": "value_error"}
                                   for loc, message in exc.errors])


async def _answer(where: Literal["body", "query"], call: Awaitable[T]) -> T:
    try:
        return await call
    except domain.InvalidInput as exc:
        raise _invalid(where, exc) from None


async def _tariff_in(request: Request, site_id: str) -> Tariff:
    """The body of a tariff PUT, read only once the caller may change the tariff (so a caller who
    may not is refused whatever they sent). Numbers are read as exact decimals; invalid → 422
    naming the fields, as FastAPI would."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if not (content_type == "application/json" or content_type.endswith("+json")):
        raise RequestValidationError([{"loc": ("body",), "msg": "send a JSON body (content-type application/json)",
                                       "type": "content_type"}])
    try:
        data: Any = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": f"JSON decode error: {exc}",
                                       "type": "json_invalid"}]) from None
    try:
        return domain.read_tariff(site_id, data)
    except domain.InvalidTariff as exc:
        raise _invalid("body", exc) from None


_TARIFF_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": Tariff.model_json_schema(ref_template="#/components/schemas/{model}")}}}}
"""The PUT's body in the OpenAPI document (the route reads it itself, after checking the caller)."""

router = APIRouter(prefix="/billing", tags=["billing"])


@router.get("/rates/{site_id}", response_model=RatesOut)
async def get_rates(site_id: SiteId, user: CurrentUser, service: ServiceDep) -> RatesOut:
    """The site's tariff in force, with its version and when it was set; 404 when it has none.
    For every driver, an admin and the site's operators and technicians."""
    return await service.rates(user, site_id)


@router.put("/rates/{site_id}", response_model=RatesOut, openapi_extra=_TARIFF_BODY)
async def put_rates(site_id: SiteId, user: CurrentUser, service: ServiceDep, request: Request) -> RatesOut:
    """Set the site's whole tariff (its ``site_id`` is the path's, or left out): the stored tariff
    with its new version, announced as ``payment.tariff_changed``. The tariff in force sent again
    changes nothing. Invalid → 422 naming the field, and nothing is stored. For an admin and the
    site's operators (a technician reads the tariff but does not change it)."""
    service.check_may_change_rates(user, site_id)
    tariff = await _tariff_in(request, site_id)
    return await _answer("body", service.change_rates(user, site_id, tariff))


@router.get("/estimate", response_model=EstimateOut)
async def estimate(
        user: CurrentUser, service: ServiceDep,
        site_id: Annotated[str, Query(min_length=1, max_length=64, description="the site's id")],
        bay_type: Annotated[BayType, Query(description="the bay the car parks in")],
        arrive: Annotated[AwareDatetime, Query(description="arrival, with its offset: 2026-11-23T18:00:00Z")],
        leave: Annotated[AwareDatetime, Query(description="departure, after arrival")],
        power_class: Annotated[PowerClass, Query(description="the charger's: ac or dc")] = "ac",
        energy_kwh: Annotated[Decimal, Query(ge=0, le=domain.MAX_ESTIMATE_KWH, decimal_places=3,
                                             description="energy charged; 0: parking only")] = Decimal(0),
) -> EstimateOut:
    """The lines and total the site's tariff bills for such a stay (one charging session of
    ``energy_kwh``), as the invoice would; money as decimal strings. 404 when the site has no
    tariff. For every signed-in caller."""
    query = domain.EstimateQuery(bay_type=bay_type, power_class=power_class, arrive=arrive, leave=leave,
                                 energy_kwh=energy_kwh)
    return await _answer("query", service.estimate(user, site_id, query))
