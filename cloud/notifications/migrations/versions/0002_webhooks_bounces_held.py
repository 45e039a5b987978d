"""notifications: webhooks of accounts, the bounce mark of an address, the time a queued message is for

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.types import UtcDateTime

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "notification_webhooks",
        sa.Column("webhook_id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_notification_webhooks_account", "notification_webhooks", ["account_id"])
    op.add_column("notification_recipients", sa.Column("bounced_email", sa.String(320), nullable=True))
    op.add_column("notification_recipients", sa.Column("bounce_reason", sa.Text(), nullable=True))
    op.add_column("notification_recipients", sa.Column("bounced_at", UtcDateTime(), nullable=True))
    op.add_column("notification_queue", sa.Column("not_before", UtcDateTime(), nullable=True))
    # what was queued before: held or scheduled until its due time, so nothing goes out earlier than planned
    op.execute("UPDATE notification_queue SET not_before = due_at")


def downgrade() -> None:
    with op.batch_alter_table("notification_queue") as batch:
        batch.drop_column("not_before")
    with op.batch_alter_table("notification_recipients") as batch:
        for column in ("bounced_at", "bounce_reason", "bounced_email"):
            batch.drop_column(column)
    op.drop_index("ix_notification_webhooks_account", table_name="notification_webhooks")
    op.drop_table("notification_webhooks")
