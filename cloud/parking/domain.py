"""Parking rules, free of I/O: how a sensor report changes a bay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cloud.parking.models import Bay
from mqtt import BayOccupancy, InventoryBay

NEVER_REPORTED = datetime(1970, 1, 1, tzinfo=UTC)
"""``changed_at`` of a bay known from the inventory whose sensor has not reported yet: any
real report is newer."""

OCCUPIED = "occupied"
FREE = "free"
UNKNOWN = "unknown"


def apply_occupancy(bay: Bay, report: BayOccupancy, now: datetime) -> bool:
    """Apply a sensor report; returns True when the bay's state changed.

    A report older than the one already applied (a replayed backlog arriving after a newer
    live message) never overwrites the newer state.
    """
    if report.changed_at < bay.changed_at:
        return False
    changed = bay.state != report.state
    bay.state = report.state
    bay.changed_at = report.changed_at
    bay.updated_at = now
    return changed


def apply_inventory_bay(bay: Bay, item: InventoryBay, now: datetime) -> None:
    """The site's file says what the bay is; its occupancy stays what the sensor said."""
    bay.type = item.type
    bay.charger_id = item.charger_id
    bay.connector_id = item.connector_id
    bay.in_service = True
    bay.updated_at = now


@dataclass(frozen=True)
class Availability:
    total: int
    free: int
    occupied: int
    unknown: int

    @classmethod
    def of(cls, bays: list[Bay]) -> Availability:
        states = [bay.state for bay in bays if bay.in_service]
        return cls(total=len(states), free=states.count(FREE), occupied=states.count(OCCUPIED),
                   unknown=states.count(UNKNOWN))
