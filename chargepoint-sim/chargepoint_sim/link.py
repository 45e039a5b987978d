"""The ``ocpp`` library's view of one simulated charger's connection.

``OcppLink`` is an ``ocpp.v16.ChargePoint`` made of the handler mixins of every feature profile
(``chargepoint_sim.profiles``). Each ``@on`` handler answers at once; anything that needs a
CALL of our own is started by the matching ``@after`` hook, which the library runs only once
the answer is on the wire (never await your own CALL inside the handler of theirs: OCPP-J
§4.1.1, one CALL at a time).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING

from ocpp.v16 import ChargePoint
from websockets.asyncio.client import ClientConnection

from chargepoint_sim.profiles.core import CoreHandlers
from chargepoint_sim.profiles.firmware import FirmwareHandlers
from chargepoint_sim.profiles.local_auth_list import LocalAuthListHandlers
from chargepoint_sim.profiles.remote_trigger import RemoteTriggerHandlers
from chargepoint_sim.profiles.reservation import ReservationHandlers
from chargepoint_sim.profiles.smart_charging import SmartChargingHandlers

if TYPE_CHECKING:
    from chargepoint_sim.charger import SimulatedCharger

log = logging.getLogger("chargepoint_sim")


class OcppLink(CoreHandlers, FirmwareHandlers, LocalAuthListHandlers, ReservationHandlers,  # type: ignore[misc]
               SmartChargingHandlers, RemoteTriggerHandlers, ChargePoint):
    """Thin handlers for the central system's CALLs, one mixin per feature profile."""

    sim: SimulatedCharger

    def __init__(self, sim: SimulatedCharger, connection: ClientConnection, response_timeout: float) -> None:
        super().__init__(sim.charger_id, connection, response_timeout=response_timeout)
        self.sim = sim

    async def route_message(self, raw_msg: str) -> None:
        if self.sim.faults.silent:
            with contextlib.suppress(ValueError, TypeError, IndexError, KeyError):
                message = json.loads(raw_msg)
                if message[0] == 2 and message[2] in self.sim.faults.silent:
                    log.info("%s: %s left unanswered (fault)", self.sim.charger_id, message[2])
                    return
        await super().route_message(raw_msg)
