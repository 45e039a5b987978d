"""vehicles: a vehicle belongs to the account that registered it (owner_id; NULL for older vehicles)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # Vehicles registered before ownership keep NULL: they belong to no driver, only an admin sees them.
    op.add_column("vehicles", sa.Column("owner_id", sa.String(255)))
    op.create_index("ix_vehicles_owner_id", "vehicles", ["owner_id"])


def downgrade() -> None:
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of the table would have to
    # drop it, which the foreign keys of id_tags forbid.
    op.drop_index("ix_vehicles_owner_id", table_name="vehicles")
    op.drop_column("vehicles", "owner_id")
