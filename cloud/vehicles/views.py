"""What the vehicle registry's use cases return and its API answers with.

Battery capacity and power are decimals in kWh and kW (JSON strings, exact); times are UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from cloud.vehicles.domain import Registration, SearchScope, SiteSync, Vehicle, VehicleStatus, VehicleType


class IdTagView(BaseModel):
    id_tag: str
    status: str
    blocked_reason: str | None = Field(default=None, description="why the registry blocked this idTag, if it did")


class SiteSyncView(BaseModel):
    site_id: str
    authorization_synced: bool = Field(description="the site's edge can authorize this vehicle's idTags offline")


class RegistrationView(BaseModel):
    plate: str
    owner_id: str | None
    started_at: datetime
    ended_at: datetime | None
    ended_because: str | None = Field(description="plate_changed | owner_changed | deleted; null while current")


def _tags(vehicle: Vehicle) -> list[IdTagView]:
    return [IdTagView(id_tag=t.id_tag, status=t.status.value, blocked_reason=t.blocked_reason)
            for t in vehicle.id_tags]


class VehicleView(BaseModel):
    vehicle_id: str
    plate: str
    type: str = Field(description="electric | plug_in_hybrid | hybrid | combustion")
    make: str | None
    model: str | None
    vehicle_type_id: str | None = Field(description="its entry in the vehicle-type catalogue, if any")
    battery_kwh: Decimal | None
    connector_types: list[str]
    version: int = Field(description="send it back with PUT: a stale version is a 409")
    created_at: datetime
    updated_at: datetime | None
    owner_id: str | None = Field(description="the account that registered the vehicle; null for vehicles "
                                             "registered before ownership (only an admin sees those)")
    id_tags: list[IdTagView]
    sites: list[SiteSyncView]
    registrations: list[RegistrationView] = Field(description="its plates and owners over time, oldest first")

    @classmethod
    def of(cls, vehicle: Vehicle, sites: Iterable[SiteSync], *, needed_version: int,
           registrations: Iterable[Registration] = ()) -> VehicleView:
        """The vehicle, and for each site whether its list has every change up to ``needed_version``."""
        return cls(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate, type=vehicle.kind, make=vehicle.make,
                   model=vehicle.model, vehicle_type_id=vehicle.vehicle_type_id, battery_kwh=vehicle.battery_kwh,
                   connector_types=list(vehicle.connector_types), version=vehicle.version,
                   created_at=vehicle.created_at, updated_at=vehicle.updated_at, owner_id=vehicle.owner_id,
                   id_tags=_tags(vehicle),
                   sites=[SiteSyncView(site_id=s.site_id, authorization_synced=s.has_authorization(needed_version))
                          for s in sites],
                   registrations=[RegistrationView(plate=r.plate, owner_id=r.owner_id, started_at=r.started_at,
                                                   ended_at=r.ended_at, ended_because=r.ended_because)
                                  for r in registrations])


class VehicleSummaryView(BaseModel):
    vehicle_id: str
    plate: str
    type: str
    make: str | None
    model: str | None
    vehicle_type_id: str | None
    battery_kwh: Decimal | None
    connector_types: list[str]
    owner_id: str | None
    version: int
    id_tags: list[IdTagView] | None = Field(description="null for an operator: an idTag is enough to clone a card")

    @classmethod
    def of(cls, vehicle: Vehicle, scope: SearchScope) -> VehicleSummaryView:
        return cls(vehicle_id=vehicle.vehicle_id, plate=vehicle.plate, type=vehicle.kind, make=vehicle.make,
                   model=vehicle.model, vehicle_type_id=vehicle.vehicle_type_id, battery_kwh=vehicle.battery_kwh,
                   connector_types=list(vehicle.connector_types), owner_id=vehicle.owner_id, version=vehicle.version,
                   id_tags=_tags(vehicle) if scope.shows_id_tags else None)


class SearchPage(BaseModel):
    """One page of a search, by plate."""

    vehicles: list[VehicleSummaryView]
    total: int = Field(description="how many vehicles match in all")
    limit: int
    offset: int


class VehicleTypeView(BaseModel):
    type_id: str
    make: str
    model: str
    type: str
    battery_kwh: Decimal | None
    max_ac_kw: Decimal | None
    max_dc_kw: Decimal | None
    connector_types: list[str]
    source: str | None = Field(description="where the figures come from")
    version: int

    @classmethod
    def of(cls, entry: VehicleType) -> VehicleTypeView:
        return cls(type_id=entry.type_id, make=entry.make, model=entry.model, type=entry.kind,
                   battery_kwh=entry.battery_kwh, max_ac_kw=entry.max_ac_kw, max_dc_kw=entry.max_dc_kw,
                   connector_types=list(entry.connector_types), source=entry.source, version=entry.version)


class LocationView(BaseModel):
    site_id: str
    bay_id: str | None = Field(description="null when no bay sensor tells which bay the charger serves")
    charger_id: str | None
    connector_id: int | None
    since: datetime | None


class SessionStatusView(BaseModel):
    session_id: str
    started_at: datetime | None
    energy_wh: int = Field(description="energy delivered as of the session's start event, in Wh")
    power_w: int | None = Field(description="null: no charging.* event carries the charging power yet")


class ReservationView(BaseModel):
    reservation_id: str
    site_id: str | None
    bay_id: str | None
    starts_at: datetime | None
    ends_at: datetime | None


class VehicleStatusView(BaseModel):
    """Where the vehicle is and what it does, as parking's and charging's events tell."""

    vehicle_id: str
    parked: bool
    location: LocationView | None
    charging: bool
    session: SessionStatusView | None
    reserved: bool = Field(description="parking publishes no reservation events yet: always false until it does")
    reservation: ReservationView | None
    updated_at: datetime | None

    @classmethod
    def of(cls, vehicle_id: str, status: VehicleStatus | None) -> VehicleStatusView:
        if status is None:
            return cls(vehicle_id=vehicle_id, parked=False, location=None, charging=False, session=None,
                       reserved=False, reservation=None, updated_at=None)
        location = (LocationView(site_id=status.site_id, bay_id=status.bay_id, charger_id=status.charger_id,
                                 connector_id=status.connector_id, since=status.parked_since)
                    if status.parked and status.site_id is not None else None)
        session = (SessionStatusView(session_id=status.session_id, started_at=status.charging_since,
                                     energy_wh=status.energy_wh, power_w=None)
                   if status.charging and status.session_id is not None else None)
        reservation = (ReservationView(reservation_id=status.reservation_id, site_id=status.reserved_site_id,
                                       bay_id=status.reserved_bay_id, starts_at=status.reserved_from,
                                       ends_at=status.reserved_until)
                       if status.reservation_id is not None else None)
        return cls(vehicle_id=vehicle_id, parked=location is not None, location=location,
                   charging=session is not None, session=session, reserved=reservation is not None,
                   reservation=reservation, updated_at=status.updated_at)
