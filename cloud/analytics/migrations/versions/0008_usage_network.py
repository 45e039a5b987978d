"""analytics: usage_network, every site's hourly usage summed (kept as events arrive), so a report by
hour of every site reads one row an hour instead of one per site and hour

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from cloud.analytics.domain import USAGE_FIELDS
from cloud.platform.types import UtcDateTime

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "usage_network",
        sa.Column("bay_type", sa.String(16), nullable=False),
        sa.Column("hour", UtcDateTime(), nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in USAGE_FIELDS),
        sa.PrimaryKeyConstraint("hour", "bay_type"),
    )
    # Filled from the hourly rows there are now (of the sites analytics knows: an admin's).
    names = ", ".join(USAGE_FIELDS)
    op.execute(f"INSERT INTO usage_network (bay_type, hour, {names}) SELECT bay_type, hour, "
               f"{', '.join(f'sum({n})' for n in USAGE_FIELDS)} FROM usage_metrics "
               f"WHERE site_id IN (SELECT site_id FROM analytics_sites) GROUP BY bay_type, hour")


def downgrade() -> None:
    op.drop_table("usage_network")
