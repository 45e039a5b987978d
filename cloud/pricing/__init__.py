"""Pricing: tariffs and the one engine that prices stays (owned by payments, imported by charging).

Pure: it imports only the standard library (zoneinfo included) and pydantic (an import-linter contract checks it),
so the estimate, the cost shown while charging and the invoice are computed by the same code.
"""

from cloud.pricing.engine import estimate, price, running_cost
from cloud.pricing.tariff import (
    Invoice,
    InvoiceLine,
    PriceComponent,
    Restrictions,
    SessionUsage,
    Stay,
    Tariff,
    TariffElement,
)

__all__ = ["Invoice", "InvoiceLine", "PriceComponent", "Restrictions", "SessionUsage", "Stay", "Tariff",
           "TariffElement", "estimate", "price", "running_cost"]
