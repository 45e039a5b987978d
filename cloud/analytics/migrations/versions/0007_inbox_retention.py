"""analytics: an index on the inbox's claim time, for the inbox retention job (cloud/platform/retention.py)

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from cloud.platform.tables import create_platform_indexes

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    create_platform_indexes(op.get_bind())  # ix_inbox_processed_at


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_inbox_processed_at")
