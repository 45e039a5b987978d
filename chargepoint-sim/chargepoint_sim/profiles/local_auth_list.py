"""The Local Auth List Management profile (OCPP 1.6 §3.5, §5.10, §5.15).

The list lives in ``features.LocalAuthList`` (``SimulatedCharger.local_list``); while offline,
Authorize is answered from it (``ChargerBase._call``). ``LocalAuthListHandlers`` answers
GetLocalListVersion and SendLocalList.
"""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

from chargepoint_sim.profiles.base import ChargerBase


class LocalAuthListHandlers:
    """The link's answers to the Local Auth List Management CALLs (mixed into ``OcppLink``)."""

    sim: ChargerBase

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(list_version=self.sim.local_list.version)

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str,
                           local_authorization_list: list[dict[str, Any]] | None = None, **_: Any) -> Any:
        return call_result.SendLocalList(
            status=self.sim.local_list.update(list_version, update_type, local_authorization_list))
