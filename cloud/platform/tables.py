"""Tables every service database has: the transactional outbox, the inbox, parked messages, and the
uplink streams of a service that reads MQTT (:mod:`cloud.platform.delivery`)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.engine import Connection

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
    Index("ix_inbox_processed_at", "processed_at"),  # the retention job (cloud/platform/retention.py)
)

parked = Table(
    "parked_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(512), nullable=False, doc="MQTT topic or queue name"),
    Column("payload", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("consumer", String(128), nullable=True,
           doc="who parked it and replays it: the queue name, or mqtt:<service> for envelopes"),
    Column("attempts", Integer, nullable=False, server_default="1"),
    Column("replay_requested_at", UtcDateTime(), nullable=True,
           doc="set by `evpark events replay`; the service re-delivers the message and deletes the row"),
)

uplink_streams = Table(
    "uplink_streams",
    metadata,
    Column("consumer", String(128), nullable=False, doc="mqtt:<service>"),
    Column("site_id", String(64), nullable=False),
    Column("store_id", String(64), nullable=False, doc="the edge database instance that numbered the stream"),
    Column("category", String(16), nullable=False),
    Column("done_through", BigInteger, nullable=False, doc="every category_seq up to it arrived, is gone or given up"),
    Column("received", Text, nullable=False, doc="JSON [[first, last], ...] that arrived above done_through"),
    Column("high_water", BigInteger, nullable=False, doc="the highest category_seq known to exist"),
    Column("requests", Integer, nullable=False, server_default="0", doc="site.resend tries of the first gap"),
    Column("next_request_at", UtcDateTime(), nullable=True, doc="when the first gap is asked for (NULL: no gap)"),
    Column("asked_at", UtcDateTime(), nullable=True, doc="the last site.resend sent"),
    Column("heard_at", UtcDateTime(), nullable=True, doc="the last time anything of this store reached the stream"),
    Column("gone", BigInteger, nullable=False, server_default="0", doc="envelopes the edge said it dropped"),
    Column("lost", BigInteger, nullable=False, server_default="0", doc="envelopes given up"),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("consumer", "site_id", "store_id", "category"),
)


def create_platform_tables(op_bind: object) -> None:
    """Called from each service's first migration: ``create_platform_tables(op.get_bind())``."""
    metadata.create_all(op_bind)  # type: ignore[arg-type]


def upgrade_platform_tables(op_bind: Connection, service: str) -> None:
    """Bring the platform tables of an existing database to their current shape.

    Called from a service's migration whenever these tables change; idempotent, because a
    database created after the change got the current shape from its first migration. Rows
    parked before consumers were recorded are MQTT envelopes of this service.
    """
    metadata.create_all(op_bind)
    create_platform_indexes(op_bind)
    present = {column["name"] for column in inspect(op_bind).get_columns("parked_messages")}
    for column in parked.columns:
        if column.name not in present:
            ddl = column.type.compile(op_bind.dialect)
            default = f" DEFAULT {column.server_default.arg}" if column.server_default is not None else ""  # type: ignore[attr-defined]
            null = "" if column.nullable else " NOT NULL"
            op_bind.execute(text(f"ALTER TABLE parked_messages ADD COLUMN {column.name} {ddl}{default}{null}"))
    op_bind.execute(parked.update().where(parked.c.consumer.is_(None)).values(consumer=f"mqtt:{service}"))


def create_platform_indexes(op_bind: Connection) -> None:
    """Create the platform tables' indexes an existing database lacks (``create_all`` creates missing tables, not
    a new index of a table it finds); idempotent."""
    present = set(inspect(op_bind).get_table_names())
    for table in metadata.tables.values():
        for index in table.indexes if table.name in present else ():
            index.create(op_bind, checkfirst=True)


def drop_platform_tables(op_bind: object) -> None:
    metadata.drop_all(op_bind)  # type: ignore[arg-type]
