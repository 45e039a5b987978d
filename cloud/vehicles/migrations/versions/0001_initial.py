"""vehicles: vehicles, idTags, authorization list changes, sites, platform tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.tables import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_platform_tables(op.get_bind())
    op.create_table(
        "vehicles",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("plate", sa.String(16), nullable=False, unique=True),
        sa.Column("make", sa.String(64)),
        sa.Column("model", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "id_tags",
        sa.Column("id_tag", sa.String(20), primary_key=True),
        sa.Column("vehicle_id", sa.String(36), sa.ForeignKey("vehicles.id"), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "authlist_changes",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id_tag", sa.String(20), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("vehicle_id", sa.String(36)),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sites",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("synced_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("pending_command_id", sa.String(36)),
        sa.Column("pending_version", sa.Integer),
        sa.Column("pending_sent_at", sa.DateTime(timezone=True)),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("sites", "authlist_changes", "id_tags", "vehicles"):
        op.drop_table(table)
    drop_platform_tables(op.get_bind())
