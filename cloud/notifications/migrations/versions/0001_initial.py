"""notifications: notifications, queue, templates, preferences, recipients, tariffs, platform tables

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from cloud.platform.tables import create_platform_tables, drop_platform_tables
from cloud.platform.types import UtcDateTime

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_platform_tables(op.get_bind())
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("account_id", sa.String(64)),
        sa.Column("target", sa.String(512)),
        sa.Column("language", sa.String(8)),
        sa.Column("site_id", sa.String(64)),
        sa.Column("source_event_id", sa.String(64), nullable=False),
        sa.Column("subject_key", sa.String(200)),
        sa.Column("critical", sa.Boolean, nullable=False),
        sa.Column("variables", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime()),
        sa.Column("read_at", UtcDateTime()),
    )
    op.create_index("ix_notifications_inbox", "notifications", ["account_id", "channel", "created_at"])
    op.create_index("ix_notifications_subject", "notifications", ["subject_key", "created_at"])
    op.create_index("ix_notifications_state", "notifications", ["state"])
    op.create_index("ix_notifications_source", "notifications", ["kind", "source_event_id"])
    op.create_table(
        "notification_queue",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("lease_until", UtcDateTime()),
    )
    op.create_index("ix_notification_queue_due", "notification_queue", ["due_at"])
    op.create_table(
        "notification_templates",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("language", sa.String(8), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("html", sa.Text),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "user_preferences",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("quiet_start", sa.String(5)),
        sa.Column("quiet_end", sa.String(5)),
        sa.Column("channels", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "notification_recipients",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("sites", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
    )
    op.create_table(
        "notification_tariffs",
        sa.Column("site_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tariff", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("notification_tariffs", "notification_recipients", "user_preferences", "notification_templates",
                  "notification_queue", "notifications"):
        op.drop_table(table)
    drop_platform_tables(op.get_bind())
