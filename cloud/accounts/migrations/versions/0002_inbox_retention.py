"""accounts: an index on the inbox's claim time, for the inbox retention job (cloud/platform/retention.py)

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from cloud.platform.tables import create_platform_indexes

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    create_platform_indexes(op.get_bind())  # ix_inbox_processed_at


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_inbox_processed_at")
