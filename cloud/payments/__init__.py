"""The payment service: each site's tariff (``billing_rates``) and the price estimate of a stay,
priced by the one engine (:mod:`cloud.pricing`)."""

from pathlib import Path

from cloud.contracts.payments import TariffChanged
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="payments",
    port=8105,
    app="cloud.payments.app:build_app",
    description="Tariffs per site (OCPI-style: energy, time, parking, flat and idle fees) and the price "
                "estimate of a stay, from the one pricing engine.",
    prefixes=("/billing",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(TariffChanged,),
)
