"""analytics: event log, usage / revenue rollups, system health, sites and vehicles, platform tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.tables import create_platform_tables, drop_platform_tables
from cloud.platform.types import UtcDateTime

revision = "0001"
down_revision = None

USAGE_FIELDS = ("stays", "occupied_s", "sessions", "energy_wh", "charging_s", "idle_s", "blocked_s",
                "reservations", "kept", "cancelled", "no_shows", "visits", "first_attempt_ok")


def upgrade() -> None:
    create_platform_tables(op.get_bind())
    op.create_table(
        "event_logs",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("site_id", sa.String(64)),
        sa.Column("subject", sa.String(64)),
        sa.Column("related", sa.String(64)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("logged_at", UtcDateTime(), nullable=False),
    )
    # with related: the visiting vehicles of a range are read from the index alone
    op.create_index("ix_event_logs_name_site_time", "event_logs", ["name", "site_id", "occurred_at", "related"])
    op.create_index("ix_event_logs_subject", "event_logs", ["subject"])
    op.create_index("ix_event_logs_related", "event_logs", ["related"])
    op.create_index("ix_event_logs_occurred_at", "event_logs", ["occurred_at"])
    op.create_table(
        "usage_metrics",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("bay_type", sa.String(16), nullable=False),
        sa.Column("hour", UtcDateTime(), nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in USAGE_FIELDS),
        sa.PrimaryKeyConstraint("site_id", "hour", "bay_type"),
    )
    op.create_table(
        "revenue_metrics",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("amount_e4", sa.BigInteger, nullable=False),
        sa.Column("documents", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("site_id", "day", "currency", "kind", "component"),
    )
    op.create_table(
        "system_health",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("event_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "subject"),
    )
    op.create_table(
        "analytics_sites",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
        sa.Column("bays", sa.Integer),
        sa.Column("chargers", sa.Integer),
        sa.Column("last_event_at", UtcDateTime()),
    )
    op.create_table(
        "analytics_vehicles",
        sa.Column("vehicle_id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("registered", sa.Boolean, nullable=False),
        sa.Column("version_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("analytics_vehicles", "analytics_sites", "system_health", "revenue_metrics", "usage_metrics",
                  "event_logs"):
        op.drop_table(table)
    drop_platform_tables(op.get_bind())
