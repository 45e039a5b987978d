"""Site tariffs ⇄ the billing_rates table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, select

from cloud.contracts.errors import Conflict
from cloud.payments import models
from cloud.payments.domain import SiteTariff
from cloud.platform.outbox import Transaction
from cloud.pricing import Tariff


class PaymentsRepository(Protocol):
    async def get(self, site_id: str) -> SiteTariff | None:
        """The site's tariff in force, if it has one."""

    async def lock(self, site_id: str) -> SiteTariff | None:
        """The same, kept from other writers until the unit of work ends."""

    async def save(self, rates: SiteTariff) -> None:
        """Store the site's new tariff version; :class:`Conflict` when another writer stored a
        version meanwhile (the one before ``rates.version`` is no longer the one in force)."""


class SqlPaymentsRepository:
    """:class:`PaymentsRepository` over a platform transaction."""

    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session

    async def get(self, site_id: str) -> SiteTariff | None:
        row = await self._session.get(models.BillingRate, site_id)
        return None if row is None else _rates(row)

    async def lock(self, site_id: str) -> SiteTariff | None:
        # locked until the transaction ends on PostgreSQL; SQLite has one writer and ignores FOR UPDATE
        row = await self._session.get(models.BillingRate, site_id, with_for_update=True, populate_existing=True)
        return None if row is None else _rates(row)

    async def save(self, rates: SiteTariff) -> None:
        # Optimistic: the row changes only if it still holds the version this one follows. SQLite
        # ignores FOR UPDATE and reads outside a write lock, so the lock alone cannot stop two
        # writers who read the same version from both storing the next.
        tariff = rates.tariff.model_dump(mode="json")
        table = models.BillingRate.__table__  # type: ignore[attr-defined]
        if rates.version == 1:
            statement = table.insert().values(site_id=rates.site_id, tariff=tariff, version=1,
                                              updated_at=rates.updated_at, updated_by=rates.updated_by)
        else:
            statement = (table.update().where(table.c.site_id == rates.site_id, table.c.version == rates.version - 1)
                         .values(tariff=tariff, version=rates.version, updated_at=rates.updated_at,
                                 updated_by=rates.updated_by))
        try:
            result = await self._session.execute(statement)
        except IntegrityError:  # two first tariffs for one site at once: the other one won
            raise _changed_meanwhile(rates.site_id) from None
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _changed_meanwhile(rates.site_id)


def _changed_meanwhile(site_id: str) -> Conflict:
    return Conflict(f"the tariff of site {site_id!r} was set meanwhile; read it and send yours again",
                    code="tariff_changed")


def _rates(row: models.BillingRate) -> SiteTariff:
    return SiteTariff(site_id=row.site_id, tariff=Tariff.model_validate(row.tariff), version=row.version,
                      updated_at=row.updated_at, updated_by=row.updated_by)


# --- billing -------------------------------------------------------------------------------------


class SqlBillingRepository:
    """Stays, sessions, invoices, credit notes, payments, refunds, transactions, payment methods,
    wallets, idempotency records and site settings over a platform transaction.

    Everything that must not race is one conditional statement, atomic on SQLite and PostgreSQL:
    the next document number (``UPDATE document_counters SET last = last + 1 ... RETURNING``, the
    row locked on PostgreSQL until the invoice commits: no gap, no repeat), a refund
    (``refunded = refunded + x WHERE refunded + x <= amount``) and a wallet debit
    (``balance = balance - x WHERE balance >= x``)."""

    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session
        self.tariffs = SqlPaymentsRepository(tx)

    @property
    def _dialect(self) -> str:
        return self._session.get_bind().dialect.name

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self._dialect == "postgresql" else sqlite_insert)(table)

    async def add(self, row: SQLModel) -> None:
        self._session.add(row)
        await self._session.flush()

    # stays and sessions

    async def stay(self, stay_id: str, *, lock: bool = False) -> models.BillingStay | None:
        return await self._session.get(models.BillingStay, stay_id, with_for_update=lock, populate_existing=lock)

    async def session(self, session_id: str, *, lock: bool = False) -> models.BillingSession | None:
        return await self._session.get(models.BillingSession, session_id, with_for_update=lock,
                                       populate_existing=lock)

    async def sessions(self, ids: Sequence[str], *, lock: bool = False) -> list[models.BillingSession]:
        """The sessions; ``lock``: on PostgreSQL locked until the transaction ends, and read afresh."""
        if not ids:
            return []
        query = select(models.BillingSession).where(col(models.BillingSession.session_id).in_(list(ids)))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        rows = await self._session.execute(query)
        return list(rows.scalars())

    async def list_sessions(self, stay_id: str, session_ids: Sequence[str]) -> None:
        """Record that the stay lists these sessions (a session listed already keeps its stay)."""
        table = models.StaySession.__table__  # type: ignore[attr-defined]
        for session_id in session_ids:
            await self._session.execute(self._insert(table).values(session_id=session_id, stay_id=stay_id)
                                        .on_conflict_do_nothing())

    async def stay_listing(self, session_id: str) -> str | None:
        row = await self._session.get(models.StaySession, session_id)
        return None if row is None else row.stay_id

    async def lone_sessions(self, completed_before: datetime) -> list[str]:
        """Sessions completed before the bound, not billed, listed by no stay, and with no stay open
        (arrived, not released) on their charger: billed alone."""
        s, st, ss = models.BillingSession, models.BillingStay, models.StaySession
        open_stay = (select(st.stay_id).where(st.site_id == s.site_id, st.charger_id == s.charger_id,
                                              col(st.released).is_(False), col(st.outcome).is_(None))
                     .where(or_(col(st.connector_id).is_(None), col(s.connector_id).is_(None),
                                col(st.connector_id) == col(s.connector_id))))
        listed = select(ss.session_id).where(ss.session_id == s.session_id)
        rows = await self._session.execute(
            select(s.session_id).where(col(s.outcome).is_(None), col(s.stay_id).is_(None),
                                       col(s.completed_at) < completed_before, ~open_stay.exists(),
                                       ~listed.exists()).order_by(col(s.completed_at)).limit(200))
        return list(rows.scalars())

    async def waiting_stays(self) -> list[str]:
        """Ended stays neither billed nor settled otherwise (waiting for a session, or for a retry)."""
        st = models.BillingStay
        rows = await self._session.execute(select(st.stay_id).where(col(st.released).is_(True),
                                                                    col(st.outcome).is_(None)).limit(200))
        return list(rows.scalars())

    # documents

    async def next_number(self, site_id: str, series: str) -> int:
        """The next number of the site's series; the counter row stays locked (PostgreSQL) or the
        database written (SQLite) until this transaction ends, so numbers are given in commit order."""
        table = models.DocumentCounter.__table__  # type: ignore[attr-defined]
        await self._session.execute(self._insert(table).values(site_id=site_id, series=series, last=0)
                                    .on_conflict_do_nothing())
        result = await self._session.execute(
            table.update().where(table.c.site_id == site_id, table.c.series == series)
            .values(last=table.c.last + 1).returning(table.c.last))
        return int(result.scalar_one())

    async def invoice(self, invoice_id: str, *, lock: bool = False) -> models.InvoiceRow | None:
        return await self._session.get(models.InvoiceRow, invoice_id, with_for_update=lock, populate_existing=lock)

    async def invoice_by(self, *, stay_id: str | None = None, payment_id: str | None = None,
                         session_id: str | None = None) -> models.InvoiceRow | None:
        i = models.InvoiceRow
        where = (i.stay_id == stay_id) if stay_id else (i.payment_id == payment_id) if payment_id \
            else (i.session_id == session_id)
        return (await self._session.execute(select(i).where(where))).scalars().first()

    async def due_invoices(self, account_id: str, site_id: str | None = None) -> list[models.InvoiceRow]:
        i = models.InvoiceRow
        query = select(i).where(i.account_id == account_id, i.status == "due")
        if site_id is not None:
            query = query.where(i.site_id == site_id)
        return list((await self._session.execute(query.order_by(col(i.issued_at), col(i.id)))).scalars())

    async def site_debts(self, site_id: str) -> list[models.InvoiceRow]:
        i = models.InvoiceRow
        rows = await self._session.execute(select(i).where(i.site_id == site_id, i.status == "due")
                                           .order_by(col(i.issued_at), col(i.id)))
        return list(rows.scalars())

    async def settle(self, invoice_id: str, paid_minor: int) -> bool:
        """Mark a due invoice paid; False when it was no longer due (paid meanwhile)."""
        table = models.InvoiceRow.__table__  # type: ignore[attr-defined]
        result = await self._session.execute(table.update().where(table.c.id == invoice_id, table.c.status == "due")
                                             .values(status="paid", paid_minor=paid_minor))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    # payments

    async def payment(self, payment_id: str) -> models.PaymentRow | None:
        return await self._session.get(models.PaymentRow, payment_id, populate_existing=True)

    async def reserve_refund(self, payment_id: str, amount_minor: int) -> bool:
        """Add to the payment's refunded amount unless that would exceed the payment (atomic)."""
        table = models.PaymentRow.__table__  # type: ignore[attr-defined]
        result = await self._session.execute(
            table.update().where(table.c.id == payment_id, table.c.status == "completed",
                                 table.c.refunded_minor + amount_minor <= table.c.amount_minor)
            .values(refunded_minor=table.c.refunded_minor + amount_minor))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def history(self, account_id: str) -> tuple[list[models.PaymentRow], list[models.RefundRow],
                                                      list[models.InvoiceRow], list[models.CreditNoteRow]]:
        async def of(model: Any, when: Any) -> list[Any]:
            rows = await self._session.execute(select(model).where(model.account_id == account_id)
                                               .order_by(col(when).desc()).limit(500))
            return list(rows.scalars())

        return (await of(models.PaymentRow, models.PaymentRow.created_at),
                await of(models.RefundRow, models.RefundRow.created_at),
                await of(models.InvoiceRow, models.InvoiceRow.issued_at),
                await of(models.CreditNoteRow, models.CreditNoteRow.issued_at))

    # wallets and methods

    async def wallets(self, account_id: str) -> list[models.WalletRow]:
        rows = await self._session.execute(select(models.WalletRow).where(models.WalletRow.account_id == account_id)
                                           .order_by(col(models.WalletRow.currency)))
        return list(rows.scalars())

    async def wallet_credit(self, account_id: str, currency: str, amount_minor: int) -> None:
        table = models.WalletRow.__table__  # type: ignore[attr-defined]
        await self._session.execute(self._insert(table).values(account_id=account_id, currency=currency,
                                                               balance_minor=0).on_conflict_do_nothing())
        await self._session.execute(table.update().where(table.c.account_id == account_id,
                                                         table.c.currency == currency)
                                    .values(balance_minor=table.c.balance_minor + amount_minor))

    async def wallet_debit(self, account_id: str, currency: str, amount_minor: int) -> bool:
        """Take from the wallet unless it holds less (never negative; atomic)."""
        table = models.WalletRow.__table__  # type: ignore[attr-defined]
        result = await self._session.execute(
            table.update().where(table.c.account_id == account_id, table.c.currency == currency,
                                 table.c.balance_minor >= amount_minor)
            .values(balance_minor=table.c.balance_minor - amount_minor))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def methods(self, account_id: str) -> list[models.PaymentMethodRow]:
        m = models.PaymentMethodRow
        rows = await self._session.execute(select(m).where(m.account_id == account_id)
                                           .order_by(col(m.created_at), col(m.id)))
        return list(rows.scalars())

    async def method(self, method_id: str) -> models.PaymentMethodRow | None:
        return await self._session.get(models.PaymentMethodRow, method_id)

    async def delete(self, row: SQLModel) -> None:
        await self._session.delete(row)
        await self._session.flush()

    # idempotency and settings

    async def idempotency(self, account_id: str, key: str) -> models.IdempotencyRecord | None:
        return await self._session.get(models.IdempotencyRecord, (account_id, key), populate_existing=True)

    async def site_settings(self, site_id: str) -> models.SiteBillingSettings | None:
        return await self._session.get(models.SiteBillingSettings, site_id)

    async def merge(self, row: SQLModel) -> None:
        await self._session.merge(row)
        await self._session.flush()
