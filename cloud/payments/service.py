"""Payment use cases: read and change a site's tariff, and estimate what a stay would cost.

Every use case takes the caller (:class:`Principal`) and asks the domain whether they may
(``domain.check_may_*``) before it reads anything. A change is stored and announced
(``payment.tariff_changed``, with the whole tariff) in one unit of work: both or neither."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from cloud.contracts.identity import Principal
from cloud.payments import domain, events
from cloud.payments.domain import EstimateQuery
from cloud.payments.repository import PaymentsRepository
from cloud.payments.views import EstimateOut, RatesOut
from cloud.platform.unit_of_work import UnitOfWorkFactory
from cloud.pricing import Tariff

if TYPE_CHECKING:
    from cloud.payments.billing_service import BillingService

log = structlog.get_logger(__name__)


class PaymentService:
    def __init__(self, units: UnitOfWorkFactory[PaymentsRepository],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 billing: BillingService | None = None) -> None:
        self._units = units
        self._clock = clock
        self.billing = billing
        """Billing's use cases (invoices, payments, refunds, wallets), served by the same app."""

    async def rates(self, user: Principal, site_id: str) -> RatesOut:
        """The site's tariff in force, with its version."""
        domain.check_may_read_tariff(user, site_id)
        async with self._units() as uow:
            rates = await uow.repo.get(site_id)
        if rates is None:
            raise domain.no_tariff(site_id)
        return RatesOut.of(rates, show_who=domain.may_see_who_changed(user, site_id))

    def check_may_change_rates(self, user: Principal, site_id: str) -> None:
        """Refuses a caller who may not change the site's tariff, before the body is read."""
        domain.check_may_change_tariff(user, site_id)

    async def change_rates(self, user: Principal, site_id: str, tariff: Tariff) -> RatesOut:
        """Set the site's tariff: a new version, announced with ``payment.tariff_changed``; the
        tariff in force sent again changes nothing (same version, no event)."""
        domain.check_may_change_tariff(user, site_id)
        domain.check_tariff_site(site_id, tariff)
        async with self._units() as uow:
            current = await uow.repo.lock(site_id)
            changed = domain.change_tariff(current, tariff, user.subject, self._clock())
            if changed is not None:
                await uow.repo.save(changed)
                uow.emit(events.tariff_changed(changed))
        rates = changed or current
        assert rates is not None
        if changed is not None:
            log.info("tariff changed", site_id=site_id, version=changed.version, by=user.subject)
        return RatesOut.of(rates, show_who=domain.may_see_who_changed(user, site_id))

    async def estimate(self, user: Principal, site_id: str, query: EstimateQuery) -> EstimateOut:
        """What the engine would bill for the stay under the site's tariff in force."""
        domain.check_may_estimate(user)
        domain.check_estimate(query)
        async with self._units() as uow:
            rates = await uow.repo.get(site_id)
        if rates is None:
            raise domain.no_tariff(site_id)
        return EstimateOut.of(rates, query, domain.estimate(rates, query))
