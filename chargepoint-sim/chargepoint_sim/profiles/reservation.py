"""The Reservation profile (OCPP 1.6 §5.13, §5.2): ReserveNow and CancelReservation.

A reserved connector turns Reserved, takes only a session of the reservation's id tag and
turns Available again when the reservation expires, is cancelled or is used by a transaction
(``CoreProfile._session``). Connector 0 cannot be reserved (ReserveConnectorZeroSupported false).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, CancelReservationStatus, ChargePointStatus, ReservationStatus

from chargepoint_sim.profiles.base import ChargerBase, Connector


class ReservationProfile(ChargerBase):
    """Reservations on the charger's connectors."""

    def _reserve(self, connector_id: int, id_tag: str, reservation_id: int, expiry: datetime) -> str:
        if connector_id == 0:
            return ReservationStatus.rejected  # ReserveConnectorZeroSupported is false
        connector = self._connectors.get(connector_id)
        if connector is None:
            return ReservationStatus.rejected
        if connector.faulted:
            return ReservationStatus.faulted
        if not connector.operative:
            return ReservationStatus.unavailable
        if connector.busy or (connector.reservation is not None and connector.reservation[0] != reservation_id):
            return ReservationStatus.occupied
        connector.reservation = (reservation_id, id_tag, expiry)
        return ReservationStatus.accepted

    async def _reserved(self, connector: Connector, reservation_id: int, expiry: datetime) -> None:
        await self._set_status(connector, ChargePointStatus.reserved)
        await asyncio.sleep(max(0.0, (expiry - datetime.now(UTC)).total_seconds()))
        if connector.reservation is not None and connector.reservation[0] == reservation_id:
            connector.reservation = None  # expired (§5.13)
            if not connector.busy:
                await self._set_status(connector, ChargePointStatus.available)

    def _cancel_reservation(self, reservation_id: int) -> Connector | None:
        for connector in self._connectors.values():
            if connector.reservation is not None and connector.reservation[0] == reservation_id:
                connector.reservation = None
                return connector
        return None


class ReservationHandlers:
    """The link's answers to ReserveNow and CancelReservation (mixed into ``OcppLink``)."""

    sim: ReservationProfile
    _reservation: tuple[int, int, datetime] | None = None
    _freed: Connector | None = None

    @on(Action.reserve_now)
    def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                       **_: Any) -> Any:
        expiry = datetime.fromisoformat(expiry_date.replace("Z", "+00:00"))
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        status = self.sim._reserve(connector_id, id_tag, reservation_id, expiry)
        if status == ReservationStatus.accepted:
            self._reservation = (connector_id, reservation_id, expiry)
        return call_result.ReserveNow(status=status)

    @after(Action.reserve_now)
    def after_reserve_now(self, **_: Any) -> None:
        if self._reservation is not None:
            connector_id, reservation_id, expiry = self._reservation
            self._reservation = None
            self.sim._spawn(self.sim._reserved(self.sim._connectors[connector_id], reservation_id, expiry),
                            f"reservation-{reservation_id}")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        connector = self.sim._cancel_reservation(reservation_id)
        if connector is None:
            return call_result.CancelReservation(status=CancelReservationStatus.rejected)
        self._freed = connector
        return call_result.CancelReservation(status=CancelReservationStatus.accepted)

    @after(Action.cancel_reservation)
    def after_cancel_reservation(self, **_: Any) -> None:
        if self._freed is not None:
            connector, self._freed = self._freed, None
            if not connector.busy:
                self.sim._spawn(self.sim._set_status(connector, ChargePointStatus.available), "reservation-cancelled")
