"""Tables every service database has: the transactional outbox, the inbox, parked messages."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text

from cloud.platform.types import UtcDateTime

metadata = MetaData()

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("payload", Text, nullable=False, doc="the whole Event as JSON"),
    Column("created_at", UtcDateTime(), nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("message_id", String(64), nullable=False),
    Column("consumer", String(128), nullable=False),
    Column("processed_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("message_id", "consumer"),
)

parked = Table(
    "parked_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(512), nullable=False, doc="MQTT topic or queue name"),
    Column("payload", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)


def create_platform_tables(op_bind: object) -> None:
    """Called from each service's first migration: ``create_platform_tables(op.get_bind())``."""
    metadata.create_all(op_bind)  # type: ignore[arg-type]


def drop_platform_tables(op_bind: object) -> None:
    metadata.drop_all(op_bind)  # type: ignore[arg-type]
