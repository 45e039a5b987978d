"""Tables of the notification service (its own database)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Index, Integer, MetaData, String, Table, Text

from cloud.platform.types import UtcDateTime

metadata = MetaData()

notifications = Table(
    "notifications", metadata,
    Column("id", String(36), primary_key=True, doc="uuid5 of (event, recipient, channel, kind): a redelivery is "
           "the same row; the e-mail's Message-ID and the webhook's event id"),
    Column("kind", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("account_id", String(64)),
    Column("target", String(512), doc="the address or URL when not the account's (account links, webhooks)"),
    Column("language", String(8)),
    Column("site_id", String(64)),
    Column("source_event_id", String(64), nullable=False),
    Column("subject_key", String(200), doc="what a debounced operator alert is about"),
    Column("critical", Boolean, nullable=False),
    Column("variables", Text, nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("body", Text, nullable=False, default=""),
    Column("state", String(16), nullable=False, doc="pending, sent, failed, withdrawn"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime()),
    Column("read_at", UtcDateTime()),
    Index("ix_notifications_inbox", "account_id", "channel", "created_at"),
    Index("ix_notifications_subject", "subject_key", "created_at"),
    Index("ix_notifications_state", "state"),
    Index("ix_notifications_source", "kind", "source_event_id"),
)

notification_queue = Table(
    "notification_queue", metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("lease_until", UtcDateTime(), doc="an attempt in flight; past: the service died, try again"),
    Column("not_before", UtcDateTime(), doc="when the message is for (now, or a reminder's time); due_at is later "
           "while quiet hours hold it, and is worked out again when the preferences change"),
    Index("ix_notification_queue_due", "due_at"),
)

notification_templates = Table(
    "notification_templates", metadata,
    Column("kind", String(64), primary_key=True),
    Column("language", String(8), primary_key=True),
    Column("subject", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(64), nullable=False),
)

user_preferences = Table(
    "user_preferences", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("quiet_start", String(5)),
    Column("quiet_end", String(5)),
    Column("channels", Text, nullable=False, doc="JSON: kind -> channel -> on/off"),
    Column("updated_at", UtcDateTime(), nullable=False),
)

notification_recipients = Table(
    "notification_recipients", metadata,
    Column("account_id", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False),
    Column("language", String(16), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("roles", Text, nullable=False),
    Column("sites", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("bounced_email", String(320), doc="the address the mail server refused for good; cleared when the "
           "account's e-mail changes or a link to it gets through"),
    Column("bounce_reason", Text),
    Column("bounced_at", UtcDateTime()),
)

notification_tariffs = Table(
    "notification_tariffs", metadata,
    Column("site_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("tariff", Text, nullable=False),
)

notification_webhooks = Table(
    "notification_webhooks", metadata,
    Column("webhook_id", String(36), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("secret", String(128), nullable=False, doc="signs what is sent to it (HMAC-SHA256)"),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_notification_webhooks_account", "account_id"),
)
