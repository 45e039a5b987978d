"""The site's local state in SQLite (aiosqlite): chargers, sessions, auth list, uplink outbox.

One concern per module:

* :mod:`edge.store.schema`: the schema's migrations (``PRAGMA user_version``) and the store id;
* :mod:`edge.store.records`: the records handed out and their row mappers;
* :mod:`edge.store.unit_of_work`: the unit of work (:class:`StoreTransaction`, and
  :class:`StoreWrites` for group commit), one set of statements for both;
* :mod:`edge.store.outbox`: the uplink outbox, its cap and the retention of acknowledged rows;
* :mod:`edge.store.group_commit`: write units of many chargers in one SQLite transaction;
* :mod:`edge.store.database`: :class:`Store`, the connection and its durability settings.
"""

from edge.store.database import Store
from edge.store.outbox import (
    DROP_TO,
    DROPPABLE_TYPES,
    HISTORY_DAYS,
    REPORT_EVERY,
    ROW_OVERHEAD_BYTES,
    Outbox,
    OutboxCap,
    OutboxStatus,
    ResendOutcome,
    Retention,
    UplinkBody,
    row_bytes,
)
from edge.store.records import BayRecord, ChargerRecord, ConnectorRecord, OutboxRow, TransactionRecord
from edge.store.schema import MIGRATIONS, SCHEMA_VERSION, StoreError, migrate
from edge.store.unit_of_work import StoreTransaction, StoreWrites, UnitOfWork

__all__ = [
    "DROPPABLE_TYPES",
    "DROP_TO",
    "HISTORY_DAYS",
    "MIGRATIONS",
    "REPORT_EVERY",
    "ROW_OVERHEAD_BYTES",
    "SCHEMA_VERSION",
    "BayRecord",
    "ChargerRecord",
    "ConnectorRecord",
    "Outbox",
    "OutboxCap",
    "OutboxRow",
    "OutboxStatus",
    "ResendOutcome",
    "Retention",
    "Store",
    "StoreError",
    "StoreTransaction",
    "StoreWrites",
    "TransactionRecord",
    "UnitOfWork",
    "UplinkBody",
    "migrate",
    "row_bytes",
]
