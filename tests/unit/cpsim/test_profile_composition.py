"""SimulatedCharger is composed of one module per OCPP 1.6 feature profile: none may go missing."""

from __future__ import annotations

import asyncio
import json

from ocpp.v16.enums import Action

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.link import OcppLink

# The CALLs a central system sends, by feature profile (OCPP 1.6 §3, Annex "Feature Profiles").
PROFILE_CALLS = {
    "Core": {Action.change_availability, Action.change_configuration, Action.clear_cache, Action.data_transfer,
             Action.get_configuration, Action.remote_start_transaction, Action.remote_stop_transaction,
             Action.reset, Action.unlock_connector},
    "FirmwareManagement": {Action.get_diagnostics, Action.update_firmware},
    "LocalAuthListManagement": {Action.get_local_list_version, Action.send_local_list},
    "Reservation": {Action.cancel_reservation, Action.reserve_now},
    "SmartCharging": {Action.clear_charging_profile, Action.get_composite_schedule, Action.set_charging_profile},
    "RemoteTrigger": {Action.trigger_message},
}


class _Wire:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)


async def test_every_call_of_every_announced_profile_has_a_handler() -> None:
    charger = SimulatedCharger("CP-1", "ws://127.0.0.1:1/ocpp")
    announced = charger._config["SupportedFeatureProfiles"][0].split(",")
    assert sorted(announced) == sorted(PROFILE_CALLS)
    link = OcppLink(charger, _Wire(), response_timeout=1)  # type: ignore[arg-type]
    missing = {profile: sorted(a.value for a in calls if "_on_action" not in link.route_map.get(a, {}))
               for profile, calls in PROFILE_CALLS.items()}
    assert not any(missing.values()), f"CALLs answered NotImplemented: {missing}"


async def test_a_profile_call_is_answered_through_the_composed_link() -> None:
    charger = SimulatedCharger("CP-1", "ws://127.0.0.1:1/ocpp", connectors=2)
    wire = _Wire()
    link = OcppLink(charger, wire, response_timeout=1)  # type: ignore[arg-type]
    await link.route_message(json.dumps([2, "u-1", "GetLocalListVersion", {}]))
    await link.route_message(json.dumps([2, "u-2", "GetCompositeSchedule", {"connectorId": 3, "duration": 60}]))
    await link.route_message(json.dumps([2, "u-3", "TriggerMessage", {"requestedMessage": "Heartbeat",
                                                                       "connectorId": 9}]))
    await asyncio.sleep(0)
    assert [json.loads(frame) for frame in wire.sent] == [
        [3, "u-1", {"listVersion": 0}],
        [3, "u-2", {"status": "Rejected"}],  # there is no connector 3
        [3, "u-3", {"status": "Rejected"}],  # nor 9
    ]
