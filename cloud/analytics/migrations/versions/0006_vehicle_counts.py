"""analytics: how many registered vehicles there are per type, make and battery (kept as vehicles are
registered, updated and deleted), so the registered distribution reads a few thousand groups, not every
vehicle

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "analytics_vehicle_counts",
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("make", sa.String(64), nullable=False),  # '': not known
        sa.Column("battery_wh", sa.Integer, nullable=False),  # -1: not known
        sa.Column("vehicles", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("type", "make", "battery_wh"),
    )
    # Filled from the vehicles known now, so the report is right on its first request after the upgrade.
    op.execute("INSERT INTO analytics_vehicle_counts (type, make, battery_wh, vehicles) "
               "SELECT type, COALESCE(make, ''), COALESCE(battery_wh, -1), count(*) FROM analytics_vehicles "
               "WHERE registered GROUP BY 1, 2, 3")


def downgrade() -> None:
    op.drop_table("analytics_vehicle_counts")
