"""What the charging service publishes and consumes (the models live in :mod:`cloud.contracts`).

Publishes on ``charging.events``: ``charging.started``, ``charging.completed`` (1.1: with the
vehicle's ``owner_id`` when known; 1.2: the edge's ``store_id``, and how the session was closed; 1.3: stop
reason, duration, meter summary, energy-finished time, power class), ``charging.anomaly``,
``charging.failed``, ``charging.energy_finished``, ``charging.charger_faulted``, ``charging.charger_offline``,
``charging.charger_online``.
Consumes ``payment.tariff_changed`` (the ``charging_rates`` read model behind "cost so far" and
``GET /charging/rates``), ``payment.failed`` and ``payment.completed`` (the ``charging_debts`` projection:
a remote start is refused with 402 while the driver has an unpaid invoice at a site that says so).
Consumes from ``vehicle.events``: ``vehicle.registered``, ``vehicle.updated``, ``vehicle.deleted``
(idTag → vehicle and vehicle → owner projections).
Consumes from MQTT: the ``session`` category of every site (and, for the gap tracker of
end-to-end delivery, the ``site`` category's ``site.hello``, ``site.high_water`` and ``site.resent``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from cloud.charging.domain import Session
from cloud.contracts.charging import (
    ChargerFaulted,
    ChargerOffline,
    ChargerOnline,
    ChargingAnomaly,
    ChargingCompleted,
    ChargingFailed,
    ChargingStarted,
    EnergyFinished,
    SessionFacts,
)

QUEUE = "charging.vehicle-events"

F = TypeVar("F", bound=SessionFacts)


def session_event(kind: type[F], session: Session, vehicle_id: str | None, owner_id: str | None = None,
                  **extra: Any) -> F:
    return kind(**extra,
        session_id=session.id, site_id=session.site_id, store_id=session.store_id,
        transaction_id=session.transaction_id,
        charger_id=session.charger_id, connector_id=session.connector_id, id_tag=session.id_tag,
        vehicle_id=vehicle_id, owner_id=owner_id, started_at=session.started_at, stopped_at=session.stopped_at,
        energy_wh=session.energy_wh, clock_suspect=session.clock_suspect)


def started(session: Session, vehicle_id: str | None, owner_id: str | None = None) -> ChargingStarted:
    return session_event(ChargingStarted, session, vehicle_id, owner_id)


def completed(session: Session, vehicle_id: str | None, owner_id: str | None = None) -> ChargingCompleted:
    """1.3: with the stop reason (``Local`` when the charger sent none, OCPP 1.6 §7.45), duration, meter
    summary, energy-finished time and power class."""
    event = session_event(ChargingCompleted, session, vehicle_id, owner_id)
    reason = session.stop_reason
    if reason is None and session.closed_by != "reconciliation":
        reason = "Local"
    finished = session.energy_finished_at
    if finished is not None and session.stopped_at is not None and finished > session.stopped_at:
        finished = None
    return event.model_copy(update={
        "closed_by": session.closed_by or "stop", "stop_reason": reason, "duration_s": session.duration_seconds(),
        "meter_start_wh": session.meter_start_wh, "meter_stop_wh": session.meter_stop_wh,
        "energy_finished_at": finished, "power_class": session.power_class})


def energy_finished(session: Session, vehicle_id: str | None, owner_id: str | None, trigger: str) -> EnergyFinished:
    return session_event(EnergyFinished, session, vehicle_id, owner_id, energy_finished_at=session.energy_finished_at,
                         trigger=trigger)


RATES_QUEUE = "charging.tariff-events"

DEBTS_QUEUE = "charging.payment-events"
"""``payment.failed`` and ``payment.completed``: the driver-debt projection behind refused remote starts."""

__all__ = ["DEBTS_QUEUE", "QUEUE", "RATES_QUEUE",
           "ChargerFaulted", "ChargerOffline", "ChargerOnline", "ChargingAnomaly",
           "ChargingCompleted", "ChargingFailed", "ChargingStarted", "EnergyFinished", "completed", "energy_finished",
           "session_event", "started"]
