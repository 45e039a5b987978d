"""Events of the payment domain, on the ``payment.events`` exchange.

The tariff travels whole, as JSON (``cloud.pricing.Tariff.model_dump(mode="json")``: money as
decimal strings), so that this package needs nothing of the pricing engine; a consumer that
prices with it reads the tariff back with ``Tariff.model_validate(event.tariff)``.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, Field

from cloud.contracts.base import EventBody, event


@event("payment.tariff_changed", "1.0", "A site's tariff was set or changed; the event carries the whole tariff.")
class TariffChanged(EventBody):
    site_id: str = Field(description="the site whose tariff changed")
    currency: str = Field(description="ISO 4217 code of the tariff's prices, e.g. EUR")
    version: int = Field(ge=1, description="the site's tariff version: 1 for its first tariff, one more per change")
    changed_at: AwareDatetime = Field(description="when this version was set")
    tariff: dict[str, Any] = Field(description="the whole tariff as GET /billing/rates/{site_id} answers it "
                                   "(cloud.pricing.Tariff in JSON; amounts as decimal strings)")
