"""Billing use cases: stays and sessions billed automatically, invoices and credit notes, payments,
refunds, wallets, payment methods and the debt rule.

**When a stay is billed.** A stay is billed once ``parking.released`` arrived and every session in
its ``session_ids`` has completed (``charging.completed``), whichever comes last; a stay without an
owner (unattributed) is recorded and never billed. A completed session that no stay lists is billed
alone (an EV bay from its start to its end, idle ending at the session's end) once its completion
has been here for ``grace`` (``EVPARK_BILLING_SESSION_GRACE_SECONDS``, default 120 s) while no stay is
open (``parking.arrived`` without its release) on its charger: a charger that serves no sensed bay.
A redelivered event changes nothing (the inbox claim, and a stay or session is stored once by id).

**Numbers.** An invoice is priced, then numbered and stored in one transaction: the site's counter
row is incremented as the transaction's last write, so the numbers commit in order without a gap;
a transaction that rolls back gives its number back. Credit notes have their own series.

**Payment.** After the invoice commits the payer's default method is charged (none, or the wallet:
the wallet; a card: the card provider, outside any transaction); a failure leaves the invoice due,
publishes ``payment.failed`` (``refuse_driver`` per the site's setting) and a later wallet top-up
pays the due invoices, oldest first (``payment.completed`` with their ``invoice_id``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import structlog

from cloud import pricing
from cloud.contracts import Received
from cloud.contracts.charging import ChargingCompleted
from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.identity import Principal
from cloud.contracts.parking import Arrived, Released
from cloud.contracts.payments import (
    CreditNoteIssued,
    InvoiceIssued,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
)
from cloud.payments import domain, models
from cloud.payments.domain import InvalidAmount, PaymentDeclined, from_minor, to_minor
from cloud.payments.providers import CardProvider
from cloud.payments.repository import SqlBillingRepository
from cloud.payments.views import (
    BalanceOut,
    CreditNoteOut,
    DebtOut,
    DueOut,
    HistoryOut,
    InvoiceLineOut,
    InvoiceOut,
    MethodOut,
    MethodsOut,
    PaymentOut,
    RefundOut,
    SiteDebtsOut,
    SiteSettingsOut,
    WalletOut,
)
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

QUEUE = "payments.billing-events"
IDEMPOTENCY_TTL = timedelta(hours=24)
Uow = UnitOfWork[SqlBillingRepository]


def _id() -> str:
    return str(uuid.uuid4())


class BillingService:
    def __init__(self, units: UnitOfWorkFactory[SqlBillingRepository], cards: CardProvider, *,
                 grace: timedelta = timedelta(seconds=120),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._units = units
        self._cards = cards
        self._grace = grace
        self._clock = clock

    # --- consuming parking and charging events --------------------------------------------------

    async def on_arrived(self, event: Received[Arrived]) -> None:
        """An open stay: a session completing on its charger waits for the stay's release."""
        body = event.body
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE) or await uow.repo.stay(body.stay_id) is not None:
                return
            await uow.repo.add(models.BillingStay(
                stay_id=body.stay_id, site_id=body.site_id, charger_id=body.charger_id,
                connector_id=body.connector_id, owner_id=body.owner_id, released=False,
                facts=body.model_dump(mode="json")))

    async def on_released(self, event: Received[Released]) -> None:
        body = event.body
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE):
                return
            stay = await uow.repo.stay(body.stay_id, lock=True)
            if stay is not None and stay.released:
                return  # the same stay's release again (another message id): billed once
            facts = body.model_dump(mode="json")
            if stay is None:
                stay = models.BillingStay(stay_id=body.stay_id, site_id=body.site_id, charger_id=body.charger_id,
                                          connector_id=body.connector_id, owner_id=body.owner_id, released=True,
                                          facts=facts)
                await uow.repo.add(stay)
            else:
                stay.released, stay.facts, stay.owner_id = True, facts, body.owner_id
                await uow.repo.add(stay)
            await uow.repo.list_sessions(body.stay_id, body.session_ids)
            invoice_id = await self._bill_stay(uow, stay)
        if invoice_id is not None:
            await self._collect(invoice_id)

    async def on_completed(self, event: Received[ChargingCompleted]) -> None:
        body = event.body
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE) or await uow.repo.session(body.session_id) is not None:
                return
            await uow.repo.add(models.BillingSession(
                session_id=body.session_id, site_id=body.site_id, charger_id=body.charger_id,
                connector_id=body.connector_id, owner_id=body.owner_id, facts=body.model_dump(mode="json"),
                completed_at=self._clock()))  # the grace runs from its arrival here (a late backlog waits too)
            stay_id = await uow.repo.stay_listing(body.session_id)
            stay = None if stay_id is None else await uow.repo.stay(stay_id, lock=True)
            invoice_id = None if stay is None or not stay.released else await self._bill_stay(uow, stay)
        if invoice_id is not None:
            await self._collect(invoice_id)

    async def bill_lone_sessions(self) -> int:
        """Bill every completed session that no stay claimed within the grace (see the module), and
        every ended stay whose sessions have all completed but that is not billed yet (a release and
        a completion committed at the same moment each missed the other)."""
        async with self._units() as uow:
            ids = await uow.repo.lone_sessions(self._clock() - self._grace)
            stays = await uow.repo.waiting_stays()
        billed = 0
        for stay_id in stays:
            async with self._units() as uow:
                stay = await uow.repo.stay(stay_id, lock=True)
                invoice_id = None if stay is None else await self._bill_stay(uow, stay)
            if invoice_id is not None:
                billed += 1
                await self._collect(invoice_id)
        for session_id in ids:
            async with self._units() as uow:
                row = await uow.repo.session(session_id, lock=True)  # then the listing: a stay may claim it now
                if row is None or row.outcome is not None or await uow.repo.stay_listing(session_id):
                    continue
                invoice_id = await self._bill_lone(uow, row)
            if invoice_id is not None:
                billed += 1
                await self._collect(invoice_id)
        return billed

    async def run_lone_session_billing(self, every: float = 5.0) -> None:
        import asyncio

        while True:
            await self.bill_lone_sessions()
            await asyncio.sleep(every)

    async def _bill_stay(self, uow: Uow, stay: models.BillingStay) -> str | None:
        """The stay's invoice id, issued now if it is ready; None when it waits or is never billed."""
        if stay.invoice_id is not None or stay.outcome in ("unattributed", "free", "invoiced"):
            return None
        listed = list(stay.facts.get("session_ids") or [])
        # locked (the stay is): a session the lone-session loop is billing at this moment is seen billed, not
        # billed a second time with the stay (CI saw two invoices for one stay and its session)
        sessions = await uow.repo.sessions(listed, lock=True)
        if len(sessions) < len(set(listed)):
            return None  # a session is still running (or its completion is on its way)
        mine = [s for s in sessions if s.outcome is None]  # one billed alone before the release stays so
        if stay.owner_id is None:
            stay.outcome = "unattributed"
            for session in mine:
                session.stay_id, session.outcome = stay.stay_id, "unattributed"
            await uow.repo.add(stay)
            log.info("unattributed stay not billed", stay_id=stay.stay_id, site_id=stay.site_id)
            return None
        rates = await uow.repo.tariffs.get(stay.site_id)
        if rates is None:
            stay.outcome = "no_tariff"
            await uow.repo.add(stay)
            log.warning("stay not billed: its site has no tariff", stay_id=stay.stay_id, site_id=stay.site_id)
            return None
        priced = pricing.price(rates.tariff, domain.stay_usage(stay.facts, [s.facts for s in mine]))
        invoice = await self._issue(uow, site_id=stay.site_id, account_id=stay.owner_id, priced=priced,
                                    tariff_version=rates.version, stay_id=stay.stay_id,
                                    session_ids=[s.session_id for s in mine], facts=stay.facts)
        stay.invoice_id, stay.outcome = invoice.id, "invoiced"
        await uow.repo.add(stay)
        for session in mine:
            session.stay_id, session.invoice_id, session.outcome = stay.stay_id, invoice.id, "invoiced"
            await uow.repo.add(session)
        return invoice.id

    async def _bill_lone(self, uow: Uow, session: models.BillingSession) -> str | None:
        rates = await uow.repo.tariffs.get(session.site_id)
        stay = domain.lone_session_stay(session.facts)
        if session.owner_id is None or rates is None or stay is None:
            session.outcome = "unattributed" if session.owner_id is None else "no_tariff" if rates is None else "free"
            await uow.repo.add(session)
            return None
        invoice = await self._issue(uow, site_id=session.site_id, account_id=session.owner_id,
                                    priced=pricing.price(rates.tariff, stay), tariff_version=rates.version,
                                    session_id=session.session_id, session_ids=[session.session_id],
                                    facts={"charger_id": session.charger_id, "arrived_at": stay.arrived_at.isoformat(),
                                           "departed_at": stay.ends_at.isoformat()})
        session.invoice_id, session.outcome = invoice.id, "invoiced"
        await uow.repo.add(session)
        return invoice.id

    async def _issue(self, uow: Uow, *, site_id: str, account_id: str, priced: pricing.Invoice | None = None,
                     lines: list[dict[str, Any]] | None = None, currency: str | None = None,
                     net: Decimal | None = None, tax: Decimal | None = None, tariff_version: int | None = None,
                     stay_id: str | None = None, session_id: str | None = None, session_ids: Sequence[str] = (),
                     payment_id: str | None = None, facts: dict[str, Any] | None = None,
                     paid: bool = False) -> models.InvoiceRow:
        """Finalise an invoice: its number is taken last, in this transaction (no gap, no repeat)."""
        if priced is not None:
            currency, net, tax = priced.currency, priced.subtotal, priced.tax
            lines = [line.model_dump(mode="json") for line in priced.lines]
            parts = domain.components(priced)
        else:
            parts = {"charge": net or Decimal(0)}
        assert currency is not None and net is not None and tax is not None and lines is not None
        facts = facts or {}
        now = self._clock()
        total = to_minor(net, currency) + to_minor(tax, currency)
        sequence = await uow.repo.next_number(site_id, "invoice")
        row = models.InvoiceRow(
            id=_id(), site_id=site_id, account_id=account_id,
            number=domain.document_number(site_id, "invoice", sequence), sequence=sequence,
            stay_id=stay_id, session_id=session_id, payment_id=payment_id, currency=currency,
            tariff_version=tariff_version, net_minor=to_minor(net, currency), tax_minor=to_minor(tax, currency),
            total_minor=total, paid_minor=total if paid else 0, status="paid" if paid else "due", issued_at=now,
            document={"lines": lines, "session_ids": list(session_ids), "bay_id": facts.get("bay_id"),
                      "arrived_at": facts.get("arrived_at"), "departed_at": facts.get("departed_at")})
        await uow.repo.add(row)
        uow.emit(InvoiceIssued(site_id=site_id, account_id=account_id, currency=currency, number=row.number,
                               issued_at=now, components=parts, net=net, tax=tax,
                               total=from_minor(total, currency), invoice_id=row.id, stay_id=stay_id,
                               session_ids=list(session_ids)))
        return row

    # --- collecting: the payer's method, the wallet, the card provider --------------------------

    async def _refuses(self, uow: Uow, site_id: str | None) -> bool:
        settings = None if site_id is None else await uow.repo.site_settings(site_id)
        return bool(settings and settings.refuse_when_in_debt)

    async def _collect(self, invoice_id: str) -> None:
        """Charge a due invoice to its payer's default method (the wallet when none)."""
        async with self._units() as uow:
            invoice = await uow.repo.invoice(invoice_id)
            if invoice is None or invoice.status != "due":
                return
            methods = await uow.repo.methods(invoice.account_id)
            method = next((m for m in methods if m.is_default), None)
            due = invoice.total_minor - invoice.paid_minor
            if method is None or method.kind == "wallet":
                ok = await uow.repo.wallet_debit(invoice.account_id, invoice.currency, due)
                await self._record(uow, invoice, "wallet", None, due, None if ok else "insufficient_funds", None)
                return
        reference = _id()
        amount = from_minor(due, invoice.currency)
        result = await self._card_charge(method.provider_token or "", amount, invoice.currency, reference)
        async with self._units() as uow:
            fresh = await uow.repo.invoice(invoice_id, lock=True)
            if fresh is not None and fresh.status == "due":
                await self._record(uow, fresh, "card", method.id, due, result[1], result[0], payment_id=reference)
            elif result[1] is None:  # paid meanwhile (a top-up): the captured money goes to the wallet
                await self._record(uow, None, "card", method.id, due, None, result[0], payment_id=reference,
                                   account_id=invoice.account_id, site_id=invoice.site_id, currency=invoice.currency,
                                   description=f"invoice {invoice.number} was paid meanwhile: credited to the wallet")
                await uow.repo.wallet_credit(invoice.account_id, invoice.currency, due)

    async def _card_charge(self, token: str, amount: Decimal, currency: str,
                           reference: str) -> tuple[str | None, str | None]:
        """(the capture's reference, None) or (None, the reason it failed)."""
        authorised = await self._cards.authorise(token, amount, currency, reference)
        if not authorised.ok:
            return None, authorised.reason or "declined"
        captured = await self._cards.capture(authorised.reference, amount, currency)
        if not captured.ok:
            return None, captured.reason or "declined"
        return captured.reference, None

    async def _record(self, uow: Uow, invoice: models.InvoiceRow | None, method: str, method_id: str | None,
                      amount_minor: int, failure: str | None, provider_ref: str | None, *,
                      payment_id: str | None = None, account_id: str | None = None, site_id: str | None = None,
                      currency: str | None = None, description: str | None = None) -> models.PaymentRow:
        """Store a payment (completed, or failed with the reason), its transactions and its event;
        a completed one pays the invoice."""
        now = self._clock()
        account_id = invoice.account_id if invoice is not None else account_id
        site_id = invoice.site_id if invoice is not None else site_id
        currency = invoice.currency if invoice is not None else currency
        assert account_id is not None and currency is not None
        payment = models.PaymentRow(
            id=payment_id or _id(), account_id=account_id, site_id=site_id,
            invoice_id=None if invoice is None else invoice.id, method=method, method_id=method_id,
            currency=currency, amount_minor=amount_minor, status="failed" if failure else "completed",
            reason=failure, description=description, provider_ref=provider_ref, created_at=now)
        await uow.repo.add(payment)
        kinds = ("authorise", "capture") if method == "card" else ("wallet_debit",)
        if failure is None:
            for kind in kinds:
                await uow.repo.add(models.TransactionRow(id=_id(), account_id=account_id, payment_id=payment.id,
                                                         kind=kind, method=method, currency=currency,
                                                         amount_minor=amount_minor, provider_ref=provider_ref, at=now))
        amount = from_minor(amount_minor, currency)
        facts: dict[str, Any] = {"payment_id": payment.id, "account_id": account_id, "site_id": site_id,
                                 "amount": amount, "currency": currency, "invoice_id": payment.invoice_id,
                                 "stay_id": None if invoice is None else invoice.stay_id, "method": method}
        if failure is None:
            if invoice is not None:
                await uow.repo.settle(invoice.id, invoice.total_minor)
            uow.emit(PaymentCompleted(**facts, completed_at=now))
        else:
            uow.emit(PaymentFailed(**facts, reason=failure, failed_at=now,
                                   refuse_driver=invoice is not None and await self._refuses(uow, site_id)))
            log.info("payment failed", payment_id=payment.id, reason=failure, invoice_id=payment.invoice_id)
        return payment

    # --- ad-hoc charges -----------------------------------------------------------------------

    async def charge(self, user: Principal, request: domain.ChargeRequest) -> PaymentOut:
        """An operator's (or an admin's) ad-hoc charge of an account at their site: the account's
        card (its default card, else its first) or its wallet. A refusal is stored, announced
        (``payment.failed``) and answered 402."""
        domain.check_may_charge(user, request.site_id)
        minor = to_minor(request.amount, request.currency)
        card: models.PaymentMethodRow | None = None
        async with self._units() as uow:
            if request.method == "wallet":
                ok = await uow.repo.wallet_debit(request.account_id, request.currency, minor)
                payment = await self._record(uow, None, "wallet", None, minor, None if ok else "insufficient_funds",
                                             None, account_id=request.account_id, site_id=request.site_id,
                                             currency=request.currency, description=request.description)
            else:
                cards = [m for m in await uow.repo.methods(request.account_id) if m.kind == "card"]
                if not cards:
                    raise InvalidAmount([(("method",), "the account has no card: add one, or charge its wallet")])
                card = next((m for m in cards if m.is_default), cards[0])
        if card is not None:
            reference = _id()
            captured, failure = await self._card_charge(card.provider_token or "", request.amount, request.currency,
                                                        reference)
            async with self._units() as uow:
                payment = await self._record(uow, None, "card", card.id, minor, failure, captured, payment_id=reference,
                                             account_id=request.account_id, site_id=request.site_id,
                                             currency=request.currency, description=request.description)
        out = _payment_out(payment)
        if payment.status == "failed":
            raise PaymentDeclined(f"the payment failed: {payment.reason}", code=payment.reason or "declined",
                                  payment_id=payment.id)
        return out

    # --- refunds ------------------------------------------------------------------------------

    async def refund(self, user: Principal, payment_id: str, amount: Any, reason: str) -> RefundOut:
        """Refund part or all of a completed payment, never more than was paid in total (the
        refunded amount grows by one conditional update), with a credit note of the payment's
        invoice (issued now when the payment had none)."""
        async with self._units() as uow:
            payment = await uow.repo.payment(payment_id)
            if payment is None:
                raise NotFound("no such payment", code="unknown_payment")
            domain.check_may_refund(user, payment.account_id, payment.site_id)
            value = domain.read_amount(amount, payment.currency)
            minor = to_minor(value, payment.currency)
            if payment.status != "completed":
                raise Conflict("only a completed payment is refunded", code="payment_not_completed")
            if not await uow.repo.reserve_refund(payment_id, minor):
                left = from_minor(payment.amount_minor - payment.refunded_minor, payment.currency)
                raise Conflict(f"a refund of {value} exceeds what is left of the payment ({left} "
                               f"{payment.currency})", code="refund_exceeds_payment")
            now = self._clock()
            refund_id = _id()
            if payment.method == "card":
                result = await self._cards.refund(payment.provider_ref or "", value, payment.currency, refund_id)
                if not result.ok:
                    raise PaymentDeclined(f"the card provider refused the refund: {result.reason}",
                                          code=result.reason or "refund_failed", payment_id=payment_id)
                provider_ref: str | None = result.reference
            else:
                await uow.repo.wallet_credit(payment.account_id, payment.currency, minor)
                provider_ref = None
            invoice = await self._payment_invoice(uow, payment)
            tax = domain.share(minor, invoice.total_minor, invoice.tax_minor)
            sequence = await uow.repo.next_number(invoice.site_id, "credit_note")
            note = models.CreditNoteRow(
                id=_id(), site_id=invoice.site_id, account_id=payment.account_id, invoice_id=invoice.id,
                refund_id=refund_id, number=domain.document_number(invoice.site_id, "credit_note", sequence),
                sequence=sequence, currency=payment.currency, reason=reason, net_minor=minor - tax, tax_minor=tax,
                total_minor=minor, issued_at=now)
            refund = models.RefundRow(id=refund_id, payment_id=payment_id, account_id=payment.account_id,
                                      currency=payment.currency, amount_minor=minor, reason=reason,
                                      credit_note_id=note.id, created_at=now)
            await uow.repo.add(note)
            await uow.repo.add(refund)
            await uow.repo.add(models.TransactionRow(id=_id(), account_id=payment.account_id, payment_id=payment_id,
                                                     kind="refund", method=payment.method, currency=payment.currency,
                                                     amount_minor=minor, provider_ref=provider_ref, at=now))
            uow.emit(PaymentRefunded(refund_id=refund_id, payment_id=payment_id, account_id=payment.account_id,
                                     site_id=payment.site_id, amount=value, currency=payment.currency,
                                     credit_note_id=note.id, credit_note_number=note.number, reason=reason,
                                     refunded_at=now))
            # its net per component, as an invoice's: positive, summing to its net (analytics subtracts credit
            # notes; a negative one showed refunds of -0.84 beside a refunded net of 0.84)
            uow.emit(CreditNoteIssued(site_id=note.site_id, account_id=note.account_id, currency=note.currency,
                                      number=note.number, issued_at=now,
                                      components={"refund": from_minor(minor - tax, note.currency)},
                                      net=from_minor(note.net_minor, note.currency),
                                      tax=from_minor(tax, note.currency), total=value, credit_note_id=note.id,
                                      invoice_id=invoice.id, refund_id=refund_id))
        return _refund_out(refund, note)

    async def _payment_invoice(self, uow: Uow, payment: models.PaymentRow) -> models.InvoiceRow:
        if payment.invoice_id is not None:
            invoice = await uow.repo.invoice(payment.invoice_id)
            assert invoice is not None
            return invoice
        found = await uow.repo.invoice_by(payment_id=payment.id)
        if found is not None:
            return found
        if payment.site_id is None:
            raise Conflict("a payment without a site has no invoice", code="payment_without_site")
        rates = await uow.repo.tariffs.get(payment.site_id)
        rate = rates.tariff.tax_rate if rates is not None else Decimal(0)
        net_minor, tax_minor = domain.split_tax(payment.amount_minor, rate)
        net, tax = from_minor(net_minor, payment.currency), from_minor(tax_minor, payment.currency)
        line = {"type": "charge", "description": payment.description or "charge", "quantity": "1", "unit": "stay",
                "unit_price": str(net), "amount": str(net), "period_start": None, "period_end": None}
        tax_line = {"type": "tax", "description": f"tax {rate * 100:f} % of {net}", "quantity": f"{rate * 100:f}",
                    "unit": "%", "unit_price": str(net.scaleb(-2)), "amount": str(tax), "period_start": None,
                    "period_end": None}
        return await self._issue(uow, site_id=payment.site_id, account_id=payment.account_id,
                                 lines=[line, tax_line], currency=payment.currency, net=net, tax=tax,
                                 tariff_version=None if rates is None else rates.version, payment_id=payment.id,
                                 paid=True)

    # --- invoices -----------------------------------------------------------------------------

    async def generate(self, user: Principal, *, stay_id: str | None, payment_id: str | None) -> InvoiceOut:
        """The invoice of a stay or a payment: the existing one, or issued now (a stay that is not
        complete yet is a 409; one never billed, unattributed, is a 409 too)."""
        async with self._units() as uow:
            if payment_id is not None:
                payment = await uow.repo.payment(payment_id)
                if payment is None or not domain.may_see_document(user, payment.account_id, payment.site_id):
                    raise NotFound("no such payment", code="unknown_payment")
                if payment.status != "completed":
                    raise Conflict("a failed payment has no invoice", code="payment_not_completed")
                invoice = await self._payment_invoice(uow, payment)
                return _invoice_out(invoice)
            assert stay_id is not None
            existing = await uow.repo.invoice_by(stay_id=stay_id)
            stay = await uow.repo.stay(stay_id, lock=True)
            owner = existing.account_id if existing is not None else None if stay is None else stay.owner_id
            site = existing.site_id if existing is not None else None if stay is None else stay.site_id
            if (existing is None and stay is None) or not domain.may_see_document(user, owner or "", site):
                raise NotFound("no such stay", code="unknown_stay")
            if existing is not None:
                return _invoice_out(existing)
            assert stay is not None
            if not stay.released:
                raise Conflict("the stay has not ended", code="stay_open")
            if stay.owner_id is None:
                raise Conflict("an unattributed stay is never billed", code="stay_unattributed")
            if stay.outcome == "no_tariff":
                stay.outcome = None
            invoice_id = await self._bill_stay(uow, stay)
            if invoice_id is None:
                raise Conflict("the stay waits for its charging sessions to complete", code="stay_incomplete")
            issued = await uow.repo.invoice(invoice_id)
            assert issued is not None
            out = _invoice_out(issued)
        await self._collect(invoice_id)
        return out

    async def invoice(self, user: Principal, invoice_id: str) -> InvoiceOut:
        async with self._units() as uow:
            invoice = await uow.repo.invoice(invoice_id)
        if invoice is None or not domain.may_see_document(user, invoice.account_id, invoice.site_id):
            raise NotFound(f"no invoice {invoice_id!r}", code="unknown_invoice")
        return _invoice_out(invoice)

    async def time_zone(self, site_id: str) -> str | None:
        """The site's time zone (its tariff's), for showing times."""
        async with self._units() as uow:
            rates = await uow.repo.tariffs.get(site_id)
        return None if rates is None else rates.tariff.time_zone

    # --- the account: history, wallet, methods, debt ------------------------------------------

    def _check_account(self, user: Principal, account_id: str) -> None:
        if not domain.may_see_account(user, account_id):
            raise NotFound(f"no account {account_id!r}", code="unknown_account")

    async def history(self, user: Principal, account_id: str) -> HistoryOut:
        self._check_account(user, account_id)
        async with self._units() as uow:
            payments, refunds, invoices, notes = await uow.repo.history(account_id)
        return HistoryOut(account_id=account_id, payments=[_payment_out(p) for p in payments],
                          refunds=[_refund_out(r, None) for r in refunds],
                          invoices=[_invoice_out(i) for i in invoices], credit_notes=[_note_out(n) for n in notes])

    async def wallet(self, user: Principal) -> WalletOut:
        async with self._units() as uow:
            rows = await uow.repo.wallets(user.subject)
        return WalletOut(account_id=user.subject, balances=[BalanceOut(currency=w.currency,
                                                                       balance=from_minor(w.balance_minor, w.currency))
                                                            for w in rows])

    async def top_up(self, user: Principal, amount: Any, currency: Any, method_id: str) -> WalletOut:
        """Put money in the caller's wallet from one of their cards, then pay their due invoices in
        that currency from it, oldest first, while it holds enough."""
        code = domain.read_currency(currency)
        value = domain.read_amount(amount, code)
        minor = to_minor(value, code)
        async with self._units() as uow:
            method = await uow.repo.method(method_id)
        if method is None or method.account_id != user.subject or method.kind != "card":
            raise InvalidAmount([(("method_id",), "must be the id of one of your cards")])
        reference = _id()
        captured, failure = await self._card_charge(method.provider_token or "", value, code, reference)
        if failure is not None:
            raise PaymentDeclined(f"the card was refused: {failure}", code=failure)
        paid: list[str] = []
        async with self._units() as uow:
            now = self._clock()
            await uow.repo.wallet_credit(user.subject, code, minor)
            await uow.repo.add(models.TransactionRow(id=_id(), account_id=user.subject, kind="top_up", method="card",
                                                     currency=code, amount_minor=minor, provider_ref=captured, at=now))
            for invoice in await uow.repo.due_invoices(user.subject):
                due = invoice.total_minor - invoice.paid_minor
                if invoice.currency == code and await uow.repo.wallet_debit(user.subject, code, due):
                    await self._record(uow, invoice, "wallet", None, due, None, None)
                    paid.append(invoice.id)
            rows = await uow.repo.wallets(user.subject)
        return WalletOut(account_id=user.subject, paid_invoices=paid,
                         balances=[BalanceOut(currency=w.currency, balance=from_minor(w.balance_minor, w.currency))
                                   for w in rows])

    async def methods(self, user: Principal) -> MethodsOut:
        async with self._units() as uow:
            return MethodsOut(methods=[_method_out(m) for m in await uow.repo.methods(user.subject)])

    async def add_method(self, user: Principal, kind: Literal["card", "wallet"], card_number: str | None,
                         make_default: bool) -> MethodOut:
        """Add a card (a sandbox test card, tokenised: its number is not kept) or the wallet as a method."""
        token = None
        if kind == "card":
            token = await self._cards.tokenise(domain.check_card_number(card_number))
        async with self._units() as uow:
            existing = await uow.repo.methods(user.subject)
            if kind == "wallet" and any(m.kind == "wallet" for m in existing):
                raise Conflict("the wallet is a payment method already", code="method_exists")
            row = models.PaymentMethodRow(id=_id(), account_id=user.subject, kind=kind,
                                          brand=None if token is None else token.brand,
                                          last4=None if token is None else token.last4,
                                          provider_token=None if token is None else token.token,
                                          is_default=make_default or not existing, created_at=self._clock())
            if row.is_default:
                for other in existing:
                    if other.is_default:
                        other.is_default = False
                        await uow.repo.add(other)
            await uow.repo.add(row)
        return _method_out(row)

    async def delete_method(self, user: Principal, method_id: str) -> None:
        async with self._units() as uow:
            row = await uow.repo.method(method_id)
            if row is None or row.account_id != user.subject:
                raise NotFound(f"no payment method {method_id!r}", code="unknown_method")
            await uow.repo.delete(row)

    async def debt(self, user: Principal, account_id: str, site_id: str | None) -> DebtOut:
        """The account's due invoices (at ``site_id`` when given) and whether that site refuses the
        driver new reservations and remote starts: for the driver, an admin and (with ``site_id``)
        the site's operators and technicians. Parking and charging ask this (or keep a read model
        of ``payment.failed`` with ``refuse_driver`` and ``payment.completed`` of the same invoice)."""
        if not (domain.may_see_account(user, account_id) or (site_id is not None and user.operates(site_id))):
            raise NotFound(f"no account {account_id!r}", code="unknown_account")
        async with self._units() as uow:
            due = await uow.repo.due_invoices(account_id, site_id)
            refuses = await self._refuses(uow, site_id)
        return DebtOut(account_id=account_id, site_id=site_id, in_debt=bool(due), refused=bool(due) and refuses,
                       due=[_due_out(i) for i in due])

    async def site_debts(self, user: Principal, site_id: str) -> SiteDebtsOut:
        domain.check_site_staff(user, site_id)
        async with self._units() as uow:
            return SiteDebtsOut(site_id=site_id, due=[_due_out(i) for i in await uow.repo.site_debts(site_id)])

    async def site_settings(self, user: Principal, site_id: str) -> SiteSettingsOut:
        domain.check_site_staff(user, site_id)
        async with self._units() as uow:
            row = await uow.repo.site_settings(site_id)
        return SiteSettingsOut(site_id=site_id, refuse_when_in_debt=bool(row and row.refuse_when_in_debt))

    async def change_site_settings(self, user: Principal, site_id: str, refuse_when_in_debt: bool) -> SiteSettingsOut:
        domain.check_site_staff(user, site_id, manage=True)
        async with self._units() as uow:
            await uow.repo.merge(models.SiteBillingSettings(site_id=site_id, refuse_when_in_debt=refuse_when_in_debt,
                                                            updated_at=self._clock()))
        return SiteSettingsOut(site_id=site_id, refuse_when_in_debt=refuse_when_in_debt)

    # --- idempotency keys (Stripe's semantics) ------------------------------------------------

    async def begin_idempotent(self, user: Principal, key: str, route: str,
                               body: Any) -> tuple[int, dict[str, Any]] | None:
        """None: go ahead (the key is now in flight). Else the stored answer to replay. The same key
        with another body is a 422, while the first request is in flight a 409; a key is kept 24 h."""
        digest = hashlib.sha256(json.dumps([route, body], sort_keys=True, default=str).encode()).hexdigest()
        now = self._clock()
        async with self._units() as uow:
            record = await uow.repo.idempotency(user.subject, key)
            if record is not None and record.created_at < now - IDEMPOTENCY_TTL:
                await uow.repo.delete(record)
                record = None
            if record is None:
                await uow.repo.add(models.IdempotencyRecord(account_id=user.subject, key=key, route=route,
                                                            request_hash=digest, state="in_flight", created_at=now))
                return None
        if record.request_hash != digest:
            raise domain.InvalidInput("this Idempotency-Key was used with another request",
                                      [(("Idempotency-Key",), "was used with another request body or route")],
                                      code="idempotency_key_reused")
        if record.state == "in_flight":
            raise Conflict("a request with this Idempotency-Key is still in flight", code="idempotency_in_flight")
        assert record.status_code is not None and record.response is not None
        return record.status_code, record.response

    async def finish_idempotent(self, user: Principal, key: str, status: int | None,
                                response: dict[str, Any] | None) -> None:
        """Store the answer to replay; with ``status`` None (the request failed unexpectedly) forget
        the key so that a retry runs again."""
        async with self._units() as uow:
            record = await uow.repo.idempotency(user.subject, key)
            if record is None:
                return
            if status is None:
                await uow.repo.delete(record)
                return
            record.state, record.status_code, record.response = "done", status, response
            await uow.repo.add(record)


# --- read models ------------------------------------------------------------------------------


def _payment_out(p: models.PaymentRow) -> PaymentOut:
    return PaymentOut(id=p.id, account_id=p.account_id, site_id=p.site_id, invoice_id=p.invoice_id, method=p.method,
                      currency=p.currency, amount=from_minor(p.amount_minor, p.currency),
                      refunded=from_minor(p.refunded_minor, p.currency), status=p.status, reason=p.reason,
                      description=p.description, created_at=p.created_at)


def _note_out(n: models.CreditNoteRow) -> CreditNoteOut:
    c = n.currency
    return CreditNoteOut(id=n.id, number=n.number, invoice_id=n.invoice_id, site_id=n.site_id, refund_id=n.refund_id,
                         currency=c, reason=n.reason, net=from_minor(n.net_minor, c), tax=from_minor(n.tax_minor, c),
                         total=from_minor(n.total_minor, c), issued_at=n.issued_at)


def _refund_out(r: models.RefundRow, note: models.CreditNoteRow | None) -> RefundOut:
    return RefundOut(id=r.id, payment_id=r.payment_id, currency=r.currency,
                     amount=from_minor(r.amount_minor, r.currency), reason=r.reason,
                     created_at=r.created_at, credit_note=None if note is None else _note_out(note))


def _invoice_out(i: models.InvoiceRow) -> InvoiceOut:
    c, doc = i.currency, i.document
    return InvoiceOut(
        id=i.id, number=i.number, site_id=i.site_id, account_id=i.account_id, stay_id=i.stay_id,
        session_ids=list(doc.get("session_ids") or []), payment_id=i.payment_id, bay_id=doc.get("bay_id"),
        arrived_at=doc.get("arrived_at"), departed_at=doc.get("departed_at"), currency=c,
        tariff_version=i.tariff_version, lines=[InvoiceLineOut.model_validate(line) for line in doc["lines"]],
        net=from_minor(i.net_minor, c), tax=from_minor(i.tax_minor, c), total=from_minor(i.total_minor, c),
        paid=from_minor(i.paid_minor, c), amount_due=from_minor(i.total_minor - i.paid_minor, c), status=i.status,
        issued_at=i.issued_at)


def _due_out(i: models.InvoiceRow) -> DueOut:
    return DueOut(invoice_id=i.id, number=i.number, site_id=i.site_id, account_id=i.account_id, currency=i.currency,
                  amount_due=from_minor(i.total_minor - i.paid_minor, i.currency), issued_at=i.issued_at)


def _method_out(m: models.PaymentMethodRow) -> MethodOut:
    return MethodOut(id=m.id, kind=m.kind, brand=m.brand, last4=m.last4, is_default=m.is_default,
                     created_at=m.created_at)
