"""What the vehicle registry's use cases return and its API answers with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, Field

from cloud.vehicles.domain import SiteSync, Vehicle


class IdTagView(BaseModel):
    id_tag: str
    status: str


class SiteSyncView(BaseModel):
    site_id: str
    authorization_synced: bool = Field(description="the site's edge can authorize this vehicle's idTags offline")


class VehicleView(BaseModel):
    vehicle_id: str
    plate: str
    make: str | None
    model: str | None
    created_at: datetime
    owner_id: str | None = Field(description="the account that registered the vehicle; null for vehicles "
                                             "registered before ownership (only an admin sees those)")
    id_tags: list[IdTagView]
    sites: list[SiteSyncView]

    @classmethod
    def of(cls, vehicle: Vehicle, sites: Iterable[SiteSync], *, needed_version: int) -> VehicleView:
        """The vehicle, and for each site whether its list has every change up to ``needed_version``."""
        return cls(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate, make=vehicle.make, model=vehicle.model,
                   created_at=vehicle.created_at, owner_id=vehicle.owner_id,
                   id_tags=[IdTagView(id_tag=t.id_tag, status=t.status.value) for t in vehicle.id_tags],
                   sites=[SiteSyncView(site_id=s.site_id, authorization_synced=s.has_authorization(needed_version))
                          for s in sites])
