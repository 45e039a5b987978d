"""Tables of the analytics service (its own database): the event log, the rollups, and what it knows
of sites, chargers and vehicles."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)

from cloud.analytics.domain import PEAK_FIELDS, USAGE_FIELDS
from cloud.platform.types import UtcDateTime

metadata = MetaData()

event_logs = Table(
    "event_logs", metadata,
    Column("event_id", String(36), primary_key=True, doc="the envelope's id: a redelivery is the same row"),
    Column("name", String(64), nullable=False),
    Column("version", String(16), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("site_id", String(64)),
    Column("subject", String(64), doc="what the event is about: session, stay, reservation, vehicle, charger id"),
    Column("related", String(64), doc="parking.released: its first session (first-attempt success)"),
    Column("payload", Text, nullable=False, doc="the event's payload as JSON"),
    Column("logged_at", UtcDateTime(), nullable=False),
    Index("ix_event_logs_name_site_time", "name", "site_id", "occurred_at", "related"),  # covers visitors
    Index("ix_event_logs_subject", "subject"),
    Index("ix_event_logs_related_site_time", "related", "site_id", "occurred_at"),  # a visitor's arrivals
    Index("ix_event_logs_occurred_at", "occurred_at"),
)

usage_metrics = Table(
    "usage_metrics", metadata,
    Column("site_id", String(64), nullable=False),
    Column("bay_type", String(16), nullable=False),
    Column("hour", UtcDateTime(), nullable=False, doc="the UTC hour the figures belong to"),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in USAGE_FIELDS),
    PrimaryKeyConstraint("site_id", "hour", "bay_type"),
)

# Derived from usage_metrics in each site's time zone (kept beside it as events arrive, derived again
# for a site whose time zone changes, rebuilt with it): a year's report reads days or months, not hours.
usage_daily = Table(
    "usage_daily", metadata,
    Column("site_id", String(64), nullable=False),
    Column("bay_type", String(16), nullable=False),
    Column("day", Date, nullable=False, doc="the local date (site's time zone) of the hours' start"),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in USAGE_FIELDS),
    PrimaryKeyConstraint("site_id", "day", "bay_type"),
)

# Every site's hourly rows summed (site-less rows left out), kept beside usage_metrics as events arrive
# and rebuilt with it: the report by hour of every site (an admin's) reads one row an hour, not one a site.
# By UTC hour, so a site's time zone changing changes nothing here.
usage_network = Table(
    "usage_network", metadata,
    Column("bay_type", String(16), nullable=False),
    Column("hour", UtcDateTime(), nullable=False, doc="the UTC hour the figures belong to"),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in USAGE_FIELDS),
    PrimaryKeyConstraint("hour", "bay_type"),
)

usage_peak = Table(
    "usage_peak", metadata,
    Column("site_id", String(64), nullable=False),
    Column("month", Date, nullable=False, doc="the local month (its first day) of the hours' start"),
    Column("weekday", SmallInteger, nullable=False, doc="ISO weekday of the hours' local start"),
    Column("local_hour", SmallInteger, nullable=False),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in PEAK_FIELDS),
    PrimaryKeyConstraint("site_id", "month", "weekday", "local_hour"),
)

revenue_metrics = Table(
    "revenue_metrics", metadata,
    Column("site_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("day", Date, nullable=False, doc="the document's issue date in the site's time zone"),
    Column("kind", String(16), nullable=False, doc="invoice | credit_note"),
    Column("component", String(32), nullable=False, doc="parking, energy, idle ...; #net, #tax, #total: the "
           "documents' own figures"),
    Column("amount_e4", BigInteger, nullable=False, doc="the sum in 1/10000 of the currency (exact)"),
    Column("documents", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("site_id", "day", "currency", "kind", "component"),
)

system_health = Table(
    "system_health", metadata,
    Column("site_id", String(64), nullable=False),
    Column("subject", String(80), nullable=False, doc="'edge', or 'charger:<charger_id>'"),
    Column("status", String(16), nullable=False, doc="edge: connected | offline; charger: online | offline | faulted"),
    Column("since", UtcDateTime(), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("event_at", UtcDateTime(), nullable=False, doc="the time of the event that set it (latest wins)"),
    PrimaryKeyConstraint("site_id", "subject"),
)

analytics_sites = Table(
    "analytics_sites", metadata,
    Column("site_id", String(64), primary_key=True),
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
    Column("bays", Integer, doc="from parking.inventory_changed"),
    Column("chargers", Integer),
    Column("max_power_w", BigInteger, doc="the chargers' maximum power together (parking.inventory_changed 1.1)"),
    Column("last_event_at", UtcDateTime(), doc="the latest event about the site"),
)

analytics_vehicles = Table(
    "analytics_vehicles", metadata,
    Column("vehicle_id", String(36), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("make", String(64), doc="as the latest vehicle.registered / updated gave it (spaces single); null: not "
           "known"),
    Column("battery_wh", Integer, doc="the battery size in Wh (battery_kwh x 1000); null: not known"),
    Column("registered", Boolean, nullable=False),
    Column("version_at", UtcDateTime(), nullable=False, doc="the time of the event that set it (latest wins)"),
)

# How many registered vehicles there are of each type, make and battery, kept as analytics_vehicles
# changes (one row per group: the registered distribution without reading every vehicle).
analytics_vehicle_counts = Table(
    "analytics_vehicle_counts", metadata,
    Column("type", String(32), nullable=False),
    Column("make", String(64), nullable=False, doc="'' : not known (a kept make is never blank)"),
    Column("battery_wh", Integer, nullable=False, doc="-1: not known"),
    Column("vehicles", Integer, nullable=False, doc="registered vehicles of the group (0: none now)"),
    PrimaryKeyConstraint("type", "make", "battery_wh"),
)

# One row per vehicle and site it arrived at: the distinct visitors of a range without reading every
# arrival (a rollup, rebuilt from event_logs).
analytics_visitors = Table(
    "analytics_visitors", metadata,
    Column("site_id", String(64), nullable=False),
    Column("vehicle_id", String(64), nullable=False, doc="parking.arrived's vehicle_id (event_logs.related)"),
    Column("first_at", UtcDateTime(), nullable=False, doc="its earliest logged arrival at the site"),
    Column("last_at", UtcDateTime(), nullable=False, doc="its latest logged arrival at the site"),
    PrimaryKeyConstraint("site_id", "vehicle_id"),
)

# One row per vehicle that arrived anywhere, with its type, make and battery as analytics_vehicles has
# them: an admin's visitors of a range (every site's) without joining tens of thousands of visitors to the
# vehicles (a rollup, rebuilt from event_logs and analytics_vehicles).
analytics_network_visitors = Table(
    "analytics_network_visitors", metadata,
    Column("vehicle_id", String(64), primary_key=True),
    Column("first_at", UtcDateTime(), nullable=False, doc="its earliest logged arrival at any site"),
    Column("last_at", UtcDateTime(), nullable=False, doc="its latest logged arrival at any site"),
    Column("type", String(32), doc="analytics_vehicles' (null: a vehicle analytics never heard of)"),
    Column("make", String(64)),
    Column("battery_wh", Integer),
)
