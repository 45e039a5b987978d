"""What the payment service publishes (through the transactional outbox), and consumes (nothing).

Publishes on ``payment.events``:

- ``payment.tariff_changed`` {site_id, currency, version, changed_at, tariff}: a site's tariff
  was set or changed by ``PUT /billing/rates/{site_id}``; ``tariff`` is the whole tariff in JSON,
  so the charging and notification services keep read models of it without asking.
"""

from __future__ import annotations

from cloud.contracts.payments import TariffChanged
from cloud.payments.domain import SiteTariff


def tariff_changed(rates: SiteTariff) -> TariffChanged:
    return TariffChanged(site_id=rates.site_id, currency=rates.tariff.currency, version=rates.version,
                         changed_at=rates.updated_at, tariff=rates.tariff.model_dump(mode="json"))
