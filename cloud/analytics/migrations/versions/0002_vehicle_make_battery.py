"""analytics: a vehicle's make and battery (vehicle.registered 1.3, vehicle.updated 1.1)

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # Vehicles known before keep NULL (not known): no earlier event carried them, so neither the log
    # nor a rebuild can fill them; their next vehicle.updated does.
    op.add_column("analytics_vehicles", sa.Column("make", sa.String(64)))
    op.add_column("analytics_vehicles", sa.Column("battery_wh", sa.Integer))


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+, PostgreSQL).
    op.drop_column("analytics_vehicles", "battery_wh")
    op.drop_column("analytics_vehicles", "make")
