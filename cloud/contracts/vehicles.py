"""Events of the vehicle registry, on the ``vehicle.events`` exchange.

Every event names the vehicle's owner (``owner_id``) and its kind (``type``: ``electric``,
``plug_in_hybrid``, ``hybrid`` or ``combustion``); ``id_tags`` are the vehicle's OCPP idTags as
registered (compare them case-insensitively, OCPP 1.6). ``vehicle.registered`` and
``vehicle.updated`` also carry what the registry keeps of its make, model and battery: as the
driver gave them or, where left out, from the vehicle's catalogue entry (null: not known).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from cloud.contracts.base import EventBody, event

_MAKE = "the vehicle's make as registered, or its catalogue entry's; null: not known"
_MODEL = "the vehicle's model as registered, or its catalogue entry's; null: not known"
_BATTERY_KWH = "battery capacity in kWh (a decimal string, at most three decimals); null: not known"


@event("vehicle.registered", "1.3", "A vehicle was registered with the RFID idTags that may charge it.")
class VehicleRegistered(EventBody):
    """1.1 added ``owner_id``; events of 1.0 have none (their vehicles belong to no driver). 1.2 added
    ``type`` (absent before: an electric vehicle). 1.3 added ``make``, ``model`` and ``battery_kwh``
    (absent before: not known)."""

    vehicle_id: str
    plate: str = Field(description="normalised: upper case, single spaces")
    id_tags: list[str] = Field(description="OCPP idTags (CiString20) that belong to the vehicle")
    owner_id: str | None = Field(default=None, description="the account that registered the vehicle (since 1.1)")
    type: str | None = Field(default=None, description="electric | plug_in_hybrid | hybrid | combustion (since 1.2)")
    make: str | None = Field(default=None, description=f"{_MAKE} (since 1.3)")
    model: str | None = Field(default=None, description=f"{_MODEL} (since 1.3)")
    battery_kwh: Decimal | None = Field(default=None, description=f"{_BATTERY_KWH} (since 1.3)")


@event("vehicle.updated", "1.1", "A vehicle's plate, kind, details, idTags or owner changed.")
class VehicleUpdated(EventBody):
    """1.1 added ``make``, ``model`` and ``battery_kwh`` (absent before: not known)."""

    vehicle_id: str
    plate: str = Field(description="normalised: upper case, single spaces")
    id_tags: list[str] = Field(description="every idTag of the vehicle now; any other one it had no longer charges it")
    owner_id: str | None = Field(default=None, description="the account the vehicle belongs to now")
    type: str = Field(description="electric | plug_in_hybrid | hybrid | combustion")
    version: int = Field(ge=1, description="the vehicle's version after the change")
    make: str | None = Field(default=None, description=f"{_MAKE} (since 1.1)")
    model: str | None = Field(default=None, description=f"{_MODEL} (since 1.1)")
    battery_kwh: Decimal | None = Field(default=None, description=f"{_BATTERY_KWH} (since 1.1)")


@event("vehicle.deleted", "1.0", "A vehicle was deleted; its idTags charge nothing any more.")
class VehicleDeleted(EventBody):
    vehicle_id: str
    plate: str
    id_tags: list[str] = Field(description="the idTags it had, withdrawn from every site's authorization list")
    owner_id: str | None = None
    type: str
