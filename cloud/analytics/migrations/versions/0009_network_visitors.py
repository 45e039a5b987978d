"""analytics: analytics_network_visitors, each vehicle's first and last arrival at any site with its type,
make and battery (kept as events arrive), so an admin's visiting vehicles read one row per vehicle
instead of joining every site's visitors to the vehicles

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.types import UtcDateTime

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "analytics_network_visitors",
        sa.Column("vehicle_id", sa.String(64), primary_key=True),
        sa.Column("first_at", UtcDateTime(), nullable=False),
        sa.Column("last_at", UtcDateTime(), nullable=False),
        sa.Column("type", sa.String(32)),
        sa.Column("make", sa.String(64)),
        sa.Column("battery_wh", sa.Integer),
    )
    # Filled from the visitors and vehicles there are now (what `evpark analytics rebuild` gives).
    op.execute("INSERT INTO analytics_network_visitors (vehicle_id, first_at, last_at, type, make, battery_wh) "
               "SELECT s.vehicle_id, s.first_at, s.last_at, v.type, v.make, v.battery_wh FROM ("
               "SELECT vehicle_id, min(first_at) AS first_at, max(last_at) AS last_at FROM analytics_visitors "
               "GROUP BY vehicle_id) AS s LEFT JOIN analytics_vehicles AS v ON v.vehicle_id = s.vehicle_id")


def downgrade() -> None:
    op.drop_table("analytics_network_visitors")
