"""parking: the list of sites (registered by `evpark sites add`) and each site's link state

Revision ID: 0005
Revises: 0004

Sites known so far only from their messages keep their rows and keep working (``registered_at``
stays null: they have no broker credentials made by evpark).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

COLUMNS = ("registered_at", "link_state", "link_since", "link_reason", "link_connection_id", "link_connected_at")


def upgrade() -> None:
    with op.batch_alter_table("parking_sites") as batch:
        batch.add_column(sa.Column("registered_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("link_state", sa.String(16)))
        batch.add_column(sa.Column("link_since", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("link_reason", sa.String(16)))
        batch.add_column(sa.Column("link_connection_id", sa.String(64)))
        batch.add_column(sa.Column("link_connected_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("parking_sites") as batch:
        for column in COLUMNS:
            batch.drop_column(column)
