"""analytics: usage per local day (``usage_daily``) and per local month x ISO weekday x local hour
(``usage_peak``) in each site's time zone, beside the hourly ``usage_metrics``: a year's usage by day
or the peak hours read hundreds of rows per site, not 8,760

Revision ID: 0005
Revises: 0004
"""

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

USAGE_FIELDS = ("stays", "occupied_s", "sessions", "energy_wh", "charging_s", "idle_s", "blocked_s",
                "reservations", "kept", "cancelled", "no_shows", "visits", "first_attempt_ok")
PEAK_FIELDS = ("occupied_s", "sessions", "energy_wh", "charging_s")


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("bay_type", sa.String(16), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in USAGE_FIELDS),
        sa.PrimaryKeyConstraint("site_id", "day", "bay_type"),
    )
    op.create_table(
        "usage_peak",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("weekday", sa.SmallInteger, nullable=False),
        sa.Column("local_hour", sa.SmallInteger, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in PEAK_FIELDS),
        sa.PrimaryKeyConstraint("site_id", "month", "weekday", "local_hour"),
    )
    # Filled from the hourly rows at once (what the service keeps, and `evpark analytics rebuild`
    # gives), so the reports are right on their first request after the upgrade.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        local = "(u.hour AT TIME ZONE COALESCE(s.time_zone, 'UTC'))"
        source = "FROM usage_metrics u LEFT JOIN analytics_sites s ON s.site_id = u.site_id"
        op.execute(f"INSERT INTO usage_daily (site_id, bay_type, day, {', '.join(USAGE_FIELDS)}) "
                   f"SELECT u.site_id, u.bay_type, {local}::date, {', '.join(f'sum(u.{n})' for n in USAGE_FIELDS)} "
                   f"{source} GROUP BY 1, 2, 3")
        op.execute(f"INSERT INTO usage_peak (site_id, month, weekday, local_hour, {', '.join(PEAK_FIELDS)}) "
                   f"SELECT u.site_id, date_trunc('month', {local})::date, extract(isodow FROM {local})::int, "
                   f"extract(hour FROM {local})::int, {', '.join(f'sum(u.{n})' for n in PEAK_FIELDS)} {source} "
                   f"GROUP BY 1, 2, 3, 4")
        return
    zones = {site: _zone(name) for site, name in bind.execute(sa.text(
        "SELECT site_id, time_zone FROM analytics_sites"))}
    daily: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(USAGE_FIELDS))
    peak: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * len(PEAK_FIELDS))
    for row in bind.execute(sa.text(f"SELECT site_id, bay_type, hour, {', '.join(USAGE_FIELDS)} FROM usage_metrics")):
        hour = row[2] if isinstance(row[2], datetime) else datetime.fromisoformat(str(row[2]))
        moment = (hour if hour.tzinfo else hour.replace(tzinfo=UTC)).astimezone(zones.get(row[0]) or _zone(None))
        figures = dict(zip(USAGE_FIELDS, row[3:], strict=True))
        into = daily[(row[0], row[1], moment.date())]
        for n, name in enumerate(USAGE_FIELDS):
            into[n] += int(figures[name] or 0)
        cell = peak[(row[0], moment.date().replace(day=1), moment.isoweekday(), moment.hour)]
        for n, name in enumerate(PEAK_FIELDS):
            cell[n] += int(figures[name] or 0)
    if daily:
        op.bulk_insert(sa.table("usage_daily", sa.column("site_id"), sa.column("bay_type"), sa.column("day", sa.Date),
                                *(sa.column(c) for c in USAGE_FIELDS)),
                       [dict(zip(("site_id", "bay_type", "day", *USAGE_FIELDS), (*key, *sums), strict=True))
                        for key, sums in daily.items()])
        op.bulk_insert(sa.table("usage_peak", sa.column("site_id"), sa.column("month", sa.Date),
                                *(sa.column(c) for c in ("weekday", "local_hour", *PEAK_FIELDS))),
                       [dict(zip(("site_id", "month", "weekday", "local_hour", *PEAK_FIELDS), (*key, *sums),
                                 strict=True)) for key, sums in peak.items()])


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def downgrade() -> None:
    op.drop_table("usage_peak")
    op.drop_table("usage_daily")
