"""Events of the vehicle registry, on the ``vehicle.events`` exchange."""

from __future__ import annotations

from pydantic import Field

from cloud.contracts.base import EventBody, event


@event("vehicle.registered", "1.0", "A vehicle was registered with the RFID idTags that may charge it.")
class VehicleRegistered(EventBody):
    vehicle_id: str
    plate: str = Field(description="normalised: upper case, single spaces")
    id_tags: list[str] = Field(description="OCPP idTags (CiString20) that belong to the vehicle")
