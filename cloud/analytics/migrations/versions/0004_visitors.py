"""analytics: each vehicle's first and last arrival per site (the distinct visitors of a range without
reading every arrival), and the index that finds a visitor's arrivals at a site

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.types import UtcDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "analytics_visitors",
        sa.Column("site_id", sa.String(64), nullable=False),
        sa.Column("vehicle_id", sa.String(64), nullable=False),
        sa.Column("first_at", UtcDateTime(), nullable=False),
        sa.Column("last_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "vehicle_id"),
    )
    # Filled from the log at once (what `evpark analytics rebuild` gives), so the report is right on
    # its first request after the upgrade.
    op.execute("INSERT INTO analytics_visitors (site_id, vehicle_id, first_at, last_at) "
               "SELECT site_id, related, min(occurred_at), max(occurred_at) FROM event_logs "
               "WHERE name = 'parking.arrived' AND site_id IS NOT NULL AND related IS NOT NULL "
               "GROUP BY site_id, related")
    # (related) alone is the new index's prefix: it serves every query the old one did.
    op.create_index("ix_event_logs_related_site_time", "event_logs", ["related", "site_id", "occurred_at"])
    op.drop_index("ix_event_logs_related", table_name="event_logs")


def downgrade() -> None:
    op.create_index("ix_event_logs_related", "event_logs", ["related"])
    op.drop_index("ix_event_logs_related_site_time", table_name="event_logs")
    op.drop_table("analytics_visitors")
