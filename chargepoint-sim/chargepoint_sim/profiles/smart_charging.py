"""The Smart Charging profile (OCPP 1.6 §3.13, §5.16, §5.5, §5.7): charging profiles and their limit.

The profiles and the limit they put on a connector live in ``features.SmartCharging``
(``SimulatedCharger.smart_charging``); a session's meter never delivers more than that limit
(``CoreProfile._session``). ``SmartChargingHandlers`` answers SetChargingProfile,
ClearChargingProfile and GetCompositeSchedule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, GetCompositeScheduleStatus

from chargepoint_sim.profiles.base import ChargerBase

HARDWARE_LIMIT_W = 22_000.0
"""The charger's own limit: the composite schedule when no profile limits a connector."""


class SmartChargingHandlers:
    """The link's answers to the Smart Charging CALLs (mixed into ``OcppLink``)."""

    sim: ChargerBase

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any) -> Any:
        connector = self.sim._connectors.get(connector_id)
        status = self.sim.smart_charging.set(
            connector_id, cs_charging_profiles, transaction_id=connector.transaction_id if connector else None,
            connector_ids=set(self.sim._connectors))
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any) -> Any:
        return call_result.ClearChargingProfile(status=self.sim.smart_charging.clear(
            profile_id=id, connector_id=connector_id, purpose=charging_profile_purpose, stack_level=stack_level))

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, charging_rate_unit: str | None = None,
                                  **_: Any) -> Any:
        if connector_id != 0 and connector_id not in self.sim._connectors:
            return call_result.GetCompositeSchedule(status=GetCompositeScheduleStatus.rejected)
        now = datetime.now(UTC)
        started = None if connector_id == 0 else self.sim._connectors[connector_id].transaction_started
        limit_w = self.sim.smart_charging.limit_w(connector_id, now=now, transaction_started=started)
        if limit_w is None:
            limit_w = HARDWARE_LIMIT_W
        unit = charging_rate_unit or "W"
        limit = round(limit_w / (230.0 * 3), 1) if unit == "A" else limit_w
        return call_result.GetCompositeSchedule(
            status=GetCompositeScheduleStatus.accepted, connector_id=connector_id,
            schedule_start=now.isoformat().replace("+00:00", "Z"),
            charging_schedule={"duration": duration, "charging_rate_unit": unit,
                               "charging_schedule_period": [{"start_period": 0, "limit": limit}]})
