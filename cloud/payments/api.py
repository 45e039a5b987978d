"""Payment REST API: thin routers that call one use case each, passing the verified caller.

Every route needs a bearer token (:data:`CurrentUser`; none or an invalid one → 401); what the
caller may see or change is the use cases' (and their domain rules') to decide.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from cloud.payments import domain
from cloud.payments.billing_service import BillingService
from cloud.payments.pdf import invoice_pdf
from cloud.payments.service import PaymentService
from cloud.payments.views import (
    DebtOut,
    EstimateOut,
    HistoryOut,
    InvoiceOut,
    MethodOut,
    MethodsOut,
    PaymentOut,
    RatesOut,
    RefundOut,
    SiteDebtsOut,
    SiteSettingsOut,
    WalletOut,
)
from cloud.platform.app import PROBLEM_JSON, problem
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


# --- billing: payments and invoices ------------------------------------------------------------


def _billing(request: Request) -> BillingService:
    billing = _service(request).billing
    assert billing is not None
    return billing


BillingDep = Annotated[BillingService, Depends(_billing)]


async def _json_body(request: Request) -> Any:
    """The JSON body, numbers read as exact decimals; 422 naming the body when it is not JSON."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
    try:
        return json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": f"JSON decode error: {exc}",
                                       "type": "json_invalid"}]) from None


def _object(data: Any, *required: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise RequestValidationError([{"loc": ("body",), "msg": "send a JSON object", "type": "dict_type"}])
    missing = [name for name in required if data.get(name) is None]
    if missing:
        raise RequestValidationError([{"loc": ("body", name), "msg": "Field required", "type": "missing"}
                                      for name in missing])
    return data


async def _problem_of(request: Request, exc: Exception) -> JSONResponse | None:
    """The answer the app's own problem handlers give for ``exc`` (None: an unexpected error)."""
    for kind in type(exc).__mro__:
        handler = request.app.exception_handlers.get(kind)
        if handler is not None and kind is not Exception:
            return await handler(request, exc)  # type: ignore[no-any-return]
    return None


def _payment_problem(exc: domain.PaymentDeclined) -> JSONResponse:
    return problem(exc.status, exc.title, exc.detail, code=exc.code, payment_id=exc.payment_id)


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                              description="required: the client's key; the first answer is "
                                              "replayed for 24 h")]

payments_router = APIRouter(prefix="/payments", tags=["payments"])
invoices_router = APIRouter(prefix="/invoices", tags=["invoices"])


@payments_router.post("/charge", status_code=201, response_model=PaymentOut,
                      responses={402: {"description": "the payment method refused"},
                                 404: {"description": "a site that is not the operator's"}})
async def charge(request: Request, user: CurrentUser, billing: BillingDep,
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """An ad-hoc charge of ``account_id`` at ``site_id`` (an operator of the site or an admin):
    ``{"account_id", "site_id", "amount", "currency", "method": "card"|"wallet", "description"}``.
    With Stripe's ``Idempotency-Key`` semantics: the first answer (errors included) is stored and
    replayed for 24 h (``Idempotent-Replayed: true``); the same key with another body → 422; while
    the first is in flight → 409. A refused card or a short wallet → 402, the payment stored as failed."""
    body = await _json_body(request)
    site_id = body.get("site_id") if isinstance(body, dict) else None
    domain.check_may_charge(user, site_id if isinstance(site_id, str) else None)  # who may, before the key
    if idempotency_key is None:
        raise RequestValidationError([{"loc": ("header", "Idempotency-Key"), "msg": "Field required: send a key "
                                       "of your own (e.g. a UUID) to make the charge safe to retry",
                                       "type": "missing"}])
    stored = await billing.begin_idempotent(user, idempotency_key, "POST /payments/charge", body)
    if stored is not None:
        return JSONResponse(stored[1], status_code=stored[0], headers={"Idempotent-Replayed": "true"},
                            media_type=PROBLEM_JSON if stored[0] >= 400 else None)
    try:
        try:
            out = await billing.charge(user, domain.read_charge(body))
        except domain.InvalidInput as exc:
            raise _invalid("body", exc) from None
        response: JSONResponse = JSONResponse(out.model_dump(mode="json"), status_code=201)
    except domain.PaymentDeclined as exc:
        response = _payment_problem(exc)
    except Exception as exc:
        answer = await _problem_of(request, exc)
        if answer is None or answer.status_code >= 500:
            await billing.finish_idempotent(user, idempotency_key, None, None)
            raise
        response = answer
    await billing.finish_idempotent(user, idempotency_key, response.status_code, json.loads(bytes(response.body)))
    return response


@payments_router.post("/refund", status_code=201, response_model=RefundOut,
                      responses={402: {"description": "the card provider refused the refund"},
                                 404: {"description": "an unknown payment, or another's"}})
async def refund(request: Request, user: CurrentUser, billing: BillingDep) -> RefundOut | JSONResponse:
    """Refund part or all of a payment (``{"payment_id", "amount", "reason"}``; an operator of the
    payment's site or an admin): never more than was paid in total (409), with a credit note of the
    payment's invoice; announced as ``payment.refunded`` and ``payment.credit_note_issued``."""
    data = _object(await _json_body(request), "payment_id", "amount", "reason")
    reason, payment_id = data["reason"], data["payment_id"]
    errors = []
    if not isinstance(payment_id, str) or not 1 <= len(payment_id) <= 64:
        errors.append({"loc": ("body", "payment_id"), "msg": "a payment id (a string)", "type": "value_error"})
    if not isinstance(reason, str) or not 1 <= len(reason) <= 500:
        errors.append({"loc": ("body", "reason"), "msg": "a reason of 1 to 500 characters", "type": "value_error"})
    if errors:
        raise RequestValidationError(errors)
    try:
        return await _answer("body", billing.refund(user, payment_id, data["amount"], reason))
    except domain.PaymentDeclined as exc:
        return _payment_problem(exc)


@payments_router.get("/history/{customer_id}", response_model=HistoryOut)
async def history(customer_id: Annotated[str, Path(min_length=1, max_length=64)], user: CurrentUser,
                  billing: BillingDep) -> HistoryOut:
    """An account's payments, refunds, invoices and credit notes, newest first: the account's own
    and an admin's (anybody else: 404)."""
    return await billing.history(user, customer_id)


@payments_router.get("/wallet", response_model=WalletOut)
async def wallet(user: CurrentUser, billing: BillingDep) -> WalletOut:
    """The caller's prepaid wallet: a balance per currency, never negative."""
    return await billing.wallet(user)


@payments_router.post("/wallet/top-up", response_model=WalletOut,
                      responses={402: {"description": "the card refused"}})
async def top_up(request: Request, user: CurrentUser, billing: BillingDep) -> WalletOut | JSONResponse:
    """Put ``{"amount", "currency"}`` in the caller's wallet from their card ``method_id``; the due
    invoices in that currency are then paid from it, oldest first (``paid_invoices``)."""
    data = _object(await _json_body(request), "amount", "currency", "method_id")
    try:
        return await _answer("body", billing.top_up(user, data["amount"], data["currency"], str(data["method_id"])))
    except domain.PaymentDeclined as exc:
        return _payment_problem(exc)


class MethodIn(BaseModel):
    kind: Literal["card", "wallet"]
    card_number: str | None = Field(default=None, max_length=32, description="a sandbox test card (kind card)")
    make_default: bool = False


@payments_router.get("/methods", response_model=MethodsOut)
async def methods(user: CurrentUser, billing: BillingDep) -> MethodsOut:
    """The caller's payment methods (cards show brand and last four digits only)."""
    return await billing.methods(user)


@payments_router.post("/methods", status_code=201, response_model=MethodOut)
async def add_method(body: MethodIn, user: CurrentUser, billing: BillingDep) -> MethodOut:
    """Add a card (``card_number``: a sandbox test card, see the README) or the wallet; the first
    method, or one with ``make_default``, is the default that automatic billing charges."""
    return await _answer("body", billing.add_method(user, body.kind, body.card_number, body.make_default))


@payments_router.delete("/methods/{method_id}", status_code=204)
async def delete_method(method_id: Annotated[str, Path(min_length=1, max_length=64)], user: CurrentUser,
                        billing: BillingDep) -> Response:
    """Remove one of the caller's payment methods (another's: 404)."""
    await billing.delete_method(user, method_id)
    return Response(status_code=204)


@payments_router.get("/debt/{account_id}", response_model=DebtOut)
async def debt(account_id: Annotated[str, Path(min_length=1, max_length=64)], user: CurrentUser,
               billing: BillingDep,
               site_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None) -> DebtOut:
    """The account's due invoices and, with ``site_id``, whether that site refuses the driver new
    reservations and remote starts until paid. For the account, an admin and (with ``site_id``)
    the site's operators and technicians."""
    return await billing.debt(user, account_id, site_id)


@payments_router.get("/sites/{site_id}/debts", response_model=SiteDebtsOut)
async def site_debts(site_id: SiteId, user: CurrentUser, billing: BillingDep) -> SiteDebtsOut:
    """The site's due invoices (an admin, the site's operators and technicians)."""
    return await billing.site_debts(user, site_id)


@payments_router.get("/sites/{site_id}/settings", response_model=SiteSettingsOut)
async def site_settings(site_id: SiteId, user: CurrentUser, billing: BillingDep) -> SiteSettingsOut:
    """The site's billing settings (an admin, the site's operators and technicians)."""
    return await billing.site_settings(user, site_id)


class SiteSettingsIn(BaseModel):
    refuse_when_in_debt: bool


@payments_router.put("/sites/{site_id}/settings", response_model=SiteSettingsOut)
async def change_site_settings(site_id: SiteId, body: SiteSettingsIn, user: CurrentUser,
                               billing: BillingDep) -> SiteSettingsOut:
    """Set whether drivers with a due invoice at the site are refused (an admin, the site's operators)."""
    return await billing.change_site_settings(user, site_id, body.refuse_when_in_debt)


class GenerateIn(BaseModel):
    stay_id: str | None = Field(default=None, min_length=1, max_length=64)
    payment_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> GenerateIn:
        if (self.stay_id is None) == (self.payment_id is None):
            raise ValueError("send exactly one of stay_id and payment_id")
        return self


@invoices_router.post("/generate", response_model=InvoiceOut,
                      responses={404: {"description": "an unknown stay or payment, or another's"}})
async def generate(body: GenerateIn, user: CurrentUser, billing: BillingDep) -> InvoiceOut:
    """The invoice of a stay (``{"stay_id"}``) or a payment (``{"payment_id"}``): the existing one,
    or issued now (numbered at finalisation). A stay not ended or still charging → 409. For the
    payer, the site's operators and technicians, an admin."""
    return await billing.generate(user, stay_id=body.stay_id, payment_id=body.payment_id)


@invoices_router.get("/{invoice_id}", response_model=InvoiceOut,
                     responses={200: {"content": {"application/pdf": {}}}})
async def get_invoice(invoice_id: Annotated[str, Path(min_length=1, max_length=64)], request: Request,
                      user: CurrentUser, billing: BillingDep) -> InvoiceOut | Response:
    """An invoice as JSON, or as a PDF with ``Accept: application/pdf`` (the site, the lines with
    their periods in the site's time zone, the tariff version). The payer's, the site's operators'
    and technicians', an admin's; anybody else: 404."""
    invoice = await billing.invoice(user, invoice_id)
    if "application/pdf" in request.headers.get("accept", ""):
        zone = await billing.time_zone(invoice.site_id)
        return Response(invoice_pdf(invoice, time_zone=zone), media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{invoice.number}.pdf"'})
    return invoice


routes = APIRouter()
"""Every route of the payment service: /billing, /payments and /invoices."""
routes.include_router(router)
routes.include_router(payments_router)
routes.include_router(invoices_router)
