"""Events of the vehicle registry, on the ``vehicle.events`` exchange."""

from __future__ import annotations

from pydantic import Field

from cloud.contracts.base import EventBody, event


@event("vehicle.registered", "1.1", "A vehicle was registered with the RFID idTags that may charge it.")
class VehicleRegistered(EventBody):
    """1.1 added ``owner_id``; events of 1.0 have none (their vehicles belong to no driver)."""

    vehicle_id: str
    plate: str = Field(description="normalised: upper case, single spaces")
    id_tags: list[str] = Field(description="OCPP idTags (CiString20) that belong to the vehicle")
    owner_id: str | None = Field(default=None, description="the account that registered the vehicle (since 1.1)")
