"""An in-memory :class:`~cloud.parking.booking_repository.BookingRepository` for unit tests of the
booking use cases; hands out copies, as a database would."""

from __future__ import annotations

import copy
from datetime import datetime

from cloud.parking import booking
from cloud.parking.booking import HOLDING, RESERVED, Debt, Lot, Reservation, Stay, Vehicle
from cloud.parking.domain import Bay


class InMemoryBookingRepository:
    def __init__(self) -> None:
        self.sites: dict[str, list[int]] = {}
        """site id → [reservation seq, status version]"""
        self.bays: dict[tuple[str, str], Bay] = {}
        self.lots: dict[str, Lot] = {}
        self.vehicles: dict[str, Vehicle] = {}
        self.reservations: dict[str, Reservation] = {}
        self.stays: dict[str, Stay] = {}
        self.debts: dict[str, Debt] = {}

    async def lock_site_for_booking(self, site_id: str) -> int | None:
        if site_id not in self.sites:
            return None
        self.sites[site_id][0] += 1
        self.sites[site_id][1] += 1
        return self.sites[site_id][0]

    async def bump_status(self, site_id: str) -> None:
        if site_id in self.sites:
            self.sites[site_id][1] += 1

    async def status_version(self, site_id: str) -> int | None:
        return self.sites[site_id][1] if site_id in self.sites else None

    async def bays_of(self, site_id: str) -> list[Bay]:
        return copy.deepcopy([self.bays[k] for k in sorted(self.bays) if k[0] == site_id])

    async def get_bay(self, site_id: str, bay_id: str) -> Bay | None:
        return copy.deepcopy(self.bays.get((site_id, bay_id)))

    async def one_snapshot(self) -> None:
        """Nothing to do: the fake's reads of one unit of work see no other writer."""

    async def bay_by_slot(self, slot_id: str) -> Bay | None:
        return copy.deepcopy(next((b for b in self.bays.values()
                                   if booking.slot_id_of(b.site_id, b.bay_id) == slot_id), None))

    async def bay_by_connector(self, site_id: str, charger_id: str, connector_id: int | None) -> Bay | None:
        return copy.deepcopy(next((b for k, b in sorted(self.bays.items()) if b.site_id == site_id
                                   and b.charger_id == charger_id and b.connector_id in (connector_id, None)), None))

    async def save_bay(self, bay: Bay) -> None:
        self.bays[(bay.site_id, bay.bay_id)] = copy.deepcopy(bay)

    async def site_exists(self, site_id: str) -> bool:
        return site_id in self.sites

    async def get_lot(self, site_id: str) -> Lot | None:
        return copy.deepcopy(self.lots.get(site_id))

    async def save_lot(self, lot: Lot) -> None:
        self.lots[lot.site_id] = copy.deepcopy(lot)

    async def get_vehicle(self, vehicle_id: str) -> Vehicle | None:
        return copy.deepcopy(self.vehicles.get(vehicle_id))

    async def save_vehicle(self, vehicle: Vehicle) -> None:
        self.vehicles[vehicle.vehicle_id] = copy.deepcopy(vehicle)

    async def holding(self, site_id: str, starts_at: datetime, ends_at: datetime) -> list[Reservation]:
        return copy.deepcopy([r for r in self.reservations.values() if r.site_id == site_id and r.status in HOLDING
                              and r.starts_at < ends_at and r.ends_at > starts_at])

    async def get_reservation(self, reservation_id: str, *, lock: bool = True) -> Reservation | None:
        return copy.deepcopy(self.reservations.get(reservation_id))

    async def reservation_by_command(self, command_id: str) -> Reservation | None:
        return copy.deepcopy(next((r for r in self.reservations.values()
                                   if command_id in (r.reserve_command_id, r.cancel_command_id)), None))

    async def save_reservation(self, reservation: Reservation) -> None:
        self.reservations[reservation.reservation_id] = copy.deepcopy(reservation)

    async def reservations_of_bay(self, site_id: str, bay_id: str, since: datetime, *,
                                  lock: bool = True) -> list[Reservation]:
        return copy.deepcopy(sorted((r for r in self.reservations.values() if (r.site_id, r.bay_id) == (site_id, bay_id)
                                     and r.status in HOLDING and r.ends_at > since), key=lambda r: r.starts_at))

    async def reservations_of_vehicle(self, vehicle_id: str, statuses: tuple[str, ...] | None = None
                                      ) -> list[Reservation]:
        return copy.deepcopy(sorted((r for r in self.reservations.values() if r.vehicle_id == vehicle_id
                                     and (statuses is None or r.status in statuses)),
                                    key=lambda r: r.starts_at, reverse=True))

    async def reserved_before(self, at: datetime) -> list[Reservation]:
        return copy.deepcopy([r for r in self.reservations.values() if r.status == RESERVED and r.starts_at < at])

    async def commands_due(self, at: datetime) -> list[Reservation]:
        return copy.deepcopy(sorted((r for r in self.reservations.values() if (
            r.status == RESERVED and r.charger_id is not None and r.reserve_sent_at is None and r.starts_at <= at)
            or (r.cancel_wanted and r.cancel_sent_at is None)), key=lambda r: r.starts_at))

    async def open_stay(self, site_id: str, bay_id: str, *, lock: bool = True) -> Stay | None:
        return copy.deepcopy(next((s for s in self.stays.values()
                                   if (s.site_id, s.bay_id) == (site_id, bay_id) and s.open), None))

    async def get_stay(self, stay_id: str) -> Stay | None:
        return copy.deepcopy(self.stays.get(stay_id))

    async def save_stay(self, stay: Stay) -> None:
        self.stays[stay.stay_id] = copy.deepcopy(stay)

    async def stays_of_vehicle(self, vehicle_id: str) -> list[Stay]:
        return copy.deepcopy(sorted((s for s in self.stays.values() if s.vehicle_id == vehicle_id),
                                    key=lambda s: s.arrived_at, reverse=True))

    async def open_stays_past_limit(self, at: datetime) -> list[Stay]:
        return copy.deepcopy([s for s in self.stays.values() if s.open and s.overstay_at is None and s.limit_at < at])

    async def debt(self, invoice_id: str) -> Debt | None:
        return self.debts.get(invoice_id)  # frozen: no copy needed

    async def save_debt(self, debt: Debt) -> None:
        self.debts[debt.invoice_id] = debt

    async def refusing_debt(self, account_id: str, site_id: str) -> Debt | None:
        return next(iter(sorted((d for d in self.debts.values() if d.account_id == account_id
                                 and d.site_id == site_id and d.refuses),
                                key=lambda d: (d.failed_at is None, d.failed_at, d.invoice_id))), None)
