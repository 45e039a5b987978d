"""Events of the vehicle registry, on the ``vehicle.events`` exchange.

Every event names the vehicle's owner (``owner_id``) and its kind (``type``: ``electric``,
``plug_in_hybrid``, ``hybrid`` or ``combustion``); ``id_tags`` are the vehicle's OCPP idTags as
registered (compare them case-insensitively, OCPP 1.6).
"""

from __future__ import annotations

from pydantic import Field

from cloud.contracts.base import EventBody, event


@event("vehicle.registered", "1.2", "A vehicle was registered with the RFID idTags that may charge it.")
class VehicleRegistered(EventBody):
    """1.1 added ``owner_id``; events of 1.0 have none (their vehicles belong to no driver). 1.2 added
    ``type`` (absent before: an electric vehicle)."""

    vehicle_id: str
    plate: str = Field(description="normalised: upper case, single spaces")
    id_tags: list[str] = Field(description="OCPP idTags (CiString20) that belong to the vehicle")
    owner_id: str | None = Field(default=None, description="the account that registered the vehicle (since 1.1)")
    type: str | None = Field(default=None, description="electric | plug_in_hybrid | hybrid | combustion (since 1.2)")


@event("vehicle.updated", "1.0", "A vehicle's plate, kind, details, idTags or owner changed.")
class VehicleUpdated(EventBody):
    vehicle_id: str
    plate: str = Field(description="normalised: upper case, single spaces")
    id_tags: list[str] = Field(description="every idTag of the vehicle now; any other one it had no longer charges it")
    owner_id: str | None = Field(default=None, description="the account the vehicle belongs to now")
    type: str = Field(description="electric | plug_in_hybrid | hybrid | combustion")
    version: int = Field(ge=1, description="the vehicle's version after the change")


@event("vehicle.deleted", "1.0", "A vehicle was deleted; its idTags charge nothing any more.")
class VehicleDeleted(EventBody):
    vehicle_id: str
    plate: str
    id_tags: list[str] = Field(description="the idTags it had, withdrawn from every site's authorization list")
    owner_id: str | None = None
    type: str
