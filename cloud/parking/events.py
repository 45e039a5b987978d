"""What the parking service publishes and consumes.

Publishes on ``parking.events`` (through the transactional outbox):

- ``parking.bay_changed`` {site_id, bay_id, state, changed_at}: a bay's occupancy changed.
- ``parking.inventory_changed`` {site_id, bays, chargers}: a site's hardware changed.
- ``parking.bay_idle_started`` / ``parking.bay_overstay_started`` {site_id, bay_id, charger_id,
  connector_id, transaction_id, started_at}: a car began blocking a charger without charging
  (idle: no session since it arrived; overstay: its session ended). For billing and driver
  notifications; no service subscribes yet.
- ``parking.bay_idle_ended`` / ``parking.bay_overstay_ended`` {same, ended_at, duration_s,
  next_state}: that period ended when the bay went to ``next_state``. ``next_state`` equal to the
  ended state means a new period of the same kind followed, and the reports in between were
  lost (the site's outbox dropped them), so ``ended_at`` is an upper bound.

Consumes from MQTT: ``bay.occupancy``, ``bay.usage``, ``site.inventory``, ``site.hello``,
``site.outbox_dropped`` and the ``command.result`` of ``site.set_power_limit``, of every site.
Sends over MQTT: ``site.set_power_limit`` commands.
"""

from __future__ import annotations

from cloud.parking.domain import IDLE, OVERSTAY, EndedPeriod, UsagePeriod
from cloud.parking.models import Bay
from cloud.platform.ports import Event

BAY_CHANGED = "parking.bay_changed"
INVENTORY_CHANGED = "parking.inventory_changed"
BAY_IDLE_STARTED = "parking.bay_idle_started"
BAY_IDLE_ENDED = "parking.bay_idle_ended"
BAY_OVERSTAY_STARTED = "parking.bay_overstay_started"
BAY_OVERSTAY_ENDED = "parking.bay_overstay_ended"
_STARTED = {IDLE: BAY_IDLE_STARTED, OVERSTAY: BAY_OVERSTAY_STARTED}
_ENDED = {IDLE: BAY_IDLE_ENDED, OVERSTAY: BAY_OVERSTAY_ENDED}


def bay_changed(bay: Bay) -> Event:
    return Event(name=BAY_CHANGED, source="parking", payload={
        "site_id": bay.site_id, "bay_id": bay.bay_id, "state": bay.state,
        "changed_at": bay.changed_at.isoformat()})


def inventory_changed(site_id: str, bays: int, chargers: int) -> Event:
    return Event(name=INVENTORY_CHANGED, source="parking",
                 payload={"site_id": site_id, "bays": bays, "chargers": chargers})


def _usage_payload(bay: Bay, period: UsagePeriod) -> dict[str, object]:
    return {"site_id": bay.site_id, "bay_id": bay.bay_id, "charger_id": bay.charger_id,
            "connector_id": bay.connector_id, "transaction_id": period.transaction_id,
            "started_at": period.since.isoformat()}


def usage_started(bay: Bay, period: UsagePeriod) -> Event:
    return Event(name=_STARTED[period.state], source="parking", payload=_usage_payload(bay, period))


def usage_ended(bay: Bay, ended: EndedPeriod) -> Event:
    return Event(name=_ENDED[ended.period.state], source="parking", payload={
        **_usage_payload(bay, ended.period), "ended_at": ended.ended_at.isoformat(),
        "duration_s": ended.duration_s, "next_state": ended.next_state})
