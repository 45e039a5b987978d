"""The parking service: bays, their occupancy and charger usage; the sites' power limits."""

from pathlib import Path

from cloud.contracts.parking import (
    BayChanged,
    BayIdleEnded,
    BayIdleStarted,
    BayOverstayEnded,
    BayOverstayStarted,
    InventoryChanged,
    SiteOffline,
    SiteOnline,
)
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="parking",
    port=8103,
    app="cloud.parking.app:build_app",
    description="Parking bays, their occupancy and charger usage as the sites report them; the list of sites, "
                "their link state and power limits.",
    prefixes=("/parking",),
    migrations=Path(__file__).parent / "migrations",
    publishes=(BayChanged, InventoryChanged, BayIdleStarted, BayIdleEnded, BayOverstayStarted, BayOverstayEnded,
               SiteOnline, SiteOffline),
    mqtt_categories=("bay", "site", "result"),
)
