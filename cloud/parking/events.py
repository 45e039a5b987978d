"""What the parking service publishes and consumes.

Publishes on ``parking.events`` (through the transactional outbox):

- ``parking.bay_changed`` {site_id, bay_id, state, changed_at}: a bay's occupancy changed.
- ``parking.inventory_changed`` {site_id, bays, chargers}: a site's hardware changed.
- ``parking.bay_idle_started`` / ``parking.bay_overstay_started`` {site_id, bay_id, charger_id,
  connector_id, transaction_id, started_at}: a car began blocking a charger without charging
  (the event's "idle": no session since it arrived, the glossary's *blocked*; its "overstay": its
  session ended, the glossary's *idle*; the events keep their 1.0 words, ``next_state`` too). For billing and driver
  notifications; no service subscribes yet.
- ``parking.bay_idle_ended`` / ``parking.bay_overstay_ended`` {same, ended_at, duration_s,
  next_state}: that period ended when the bay went to ``next_state``. ``next_state`` equal to the
  ended state means a new period of the same kind followed, and the reports in between were
  lost (the site's outbox dropped them), so ``ended_at`` is an upper bound.

- ``parking.site_online`` {site_id, since, reason, offline_since}: a site's edge is connected
  (its link status, or a hello from an edge that sends none).
- ``parking.site_offline`` {site_id, since, reason, online_since, connected_at}: its link ended:
  ``stopped`` (the edge shut down cleanly) or ``lost`` (its last will: the broker saw the
  connection end without a goodbye).

- ``parking.reserved`` / ``parking.cancelled`` / ``parking.no_show`` (a reservation's facts), and
  ``parking.arrived`` / ``parking.released`` / ``parking.overstay`` (a stay's facts; released adds
  departure, duration, overstay minutes, the charging ``session_ids`` and ``sensor_known``): emitted
  by :mod:`cloud.parking.booking_service`.

Consumes ``charging.started`` / ``charging.completed`` (stays: attribution, sensorless bays) and
``vehicle.registered`` / ``updated`` / ``deleted`` (the vehicle projection: kind, owner, first idTag), and
``payment.failed`` / ``payment.completed`` (the ``parking_debts`` projection, queue ``parking.payment-events``:
a reservation is refused with 402 while the driver has an unpaid invoice at a site that says so).

Consumes from MQTT: ``bay.occupancy``, ``bay.usage``, ``site.inventory``, ``site.hello``,
``site.outbox_dropped``, the sites' link status (``<root>/sites/+/status``) and the
``command.result`` of ``site.set_power_limit``, of every site.
Sends over MQTT: ``site.set_power_limit``, ``charger.reserve`` and ``charger.cancel_reservation``
commands (and reads the ``command.result`` of the last two).
"""

from __future__ import annotations

from cloud.contracts.parking import (
    BayChanged,
    BayIdleEnded,
    BayIdleStarted,
    BayOverstayEnded,
    BayOverstayStarted,
    BayUsagePeriod,
    BayUsagePeriodEnded,
    InventoryChanged,
    SiteOffline,
    SiteOnline,
)
from cloud.parking.domain import BLOCKED, IDLE, Bay, EndedPeriod, LinkChange, MirroredInventory, Site, UsagePeriod
from mqtt.link import ONLINE

# The bay-usage events keep the words they were declared with (1.0): their "idle" is the glossary's
# blocked, their "overstay" the glossary's idle; next_state is given in those words too.
_STARTED: dict[str, type[BayUsagePeriod]] = {BLOCKED: BayIdleStarted, IDLE: BayOverstayStarted}
_ENDED: dict[str, type[BayUsagePeriodEnded]] = {BLOCKED: BayIdleEnded, IDLE: BayOverstayEnded}
_EVENT_WORDS = {BLOCKED: "idle", IDLE: "overstay"}


def bay_changed(bay: Bay) -> BayChanged:
    return BayChanged(site_id=bay.site_id, bay_id=bay.bay_id, state=bay.state, changed_at=bay.changed_at)


def inventory_changed(site: Site, mirrored: MirroredInventory) -> InventoryChanged:
    listed = [s for s in mirrored.stations if s.in_service]
    powers = [s.max_power_w for s in listed]
    return InventoryChanged(site_id=site.site_id, bays=mirrored.listed_bays, chargers=mirrored.listed_chargers,
                            max_power_w=None if any(p is None for p in powers) else sum(p for p in powers if p))


def usage_started(bay: Bay, period: UsagePeriod) -> BayUsagePeriod:
    return _STARTED[period.state](site_id=bay.site_id, bay_id=bay.bay_id, charger_id=bay.charger_id,
                                  connector_id=bay.connector_id, transaction_id=period.transaction_id,
                                  started_at=period.since)


def usage_ended(bay: Bay, ended: EndedPeriod) -> BayUsagePeriodEnded:
    return _ENDED[ended.period.state](
        site_id=bay.site_id, bay_id=bay.bay_id, charger_id=bay.charger_id, connector_id=bay.connector_id,
        transaction_id=ended.period.transaction_id, started_at=ended.period.since, ended_at=ended.ended_at,
        duration_s=ended.duration_s, next_state=_EVENT_WORDS.get(ended.next_state, ended.next_state))


def link_changed(site: Site, change: LinkChange) -> SiteOnline | SiteOffline:
    if change.state == ONLINE:
        return SiteOnline(site_id=site.site_id, since=change.since,
                          reason="hello" if change.reason == "hello" else "connected",
                          offline_since=change.previous_since)
    return SiteOffline(site_id=site.site_id, since=change.since, reason="stopped" if change.reason == "stopped"
                       else "lost", online_since=change.previous_since, connected_at=change.connected_at)
