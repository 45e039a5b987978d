"""charging: parked messages record their consumer and attempts, and can be replayed

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from cloud.platform.tables import upgrade_platform_tables

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    upgrade_platform_tables(op.get_bind(), "charging")


def downgrade() -> None:
    pass  # the columns are harmless to an older version
