"""An in-memory tariff store for unit tests of the payment use cases."""

from __future__ import annotations

from cloud.contracts.errors import Conflict
from cloud.payments.domain import SiteTariff


class InMemoryPaymentsRepository:
    """:class:`~cloud.payments.repository.PaymentsRepository` in a dict (its values are frozen)."""

    def __init__(self) -> None:
        self.rates: dict[str, SiteTariff] = {}
        self.saves = 0
        self.fail_next_save = False
        """Set to make the next save fail as a database would when another writer got there first."""

    async def get(self, site_id: str) -> SiteTariff | None:
        return self.rates.get(site_id)

    async def lock(self, site_id: str) -> SiteTariff | None:
        return self.rates.get(site_id)

    async def save(self, rates: SiteTariff) -> None:
        if self.fail_next_save:
            self.fail_next_save = False
            raise Conflict("set meanwhile", code="tariff_changed")
        self.rates[rates.site_id] = rates
        self.saves += 1
