"""Site tariffs ⇄ the billing_rates table."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.exc import IntegrityError

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
