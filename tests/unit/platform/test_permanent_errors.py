"""Which handler failures park an MQTT envelope at once (no retry can help) and which are retried."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, StatementError

from cloud.platform.mqtt_link import permanent
from mqtt import MalformedMessage


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize("failure", [
    MalformedMessage("session.stopped: meter_stop_wh: Input should be less than or equal to 999999999999"),
    DataError("INSERT …", {}, Exception("integer out of range")),
    DBAPIError("INSERT …", {}, _PgError("22001")),  # asyncpg: value too long for type character varying(64)
    DBAPIError("INSERT …", {}, _PgError("22003")),  # numeric value out of range
    StatementError("INSERT …", "INSERT …", {}, OverflowError("Python int too large to convert to SQLite INTEGER")),
])
def test_a_message_the_database_cannot_store_is_permanent(failure: Exception) -> None:
    assert permanent(failure)


@pytest.mark.parametrize("failure", [
    OperationalError("SELECT …", {}, Exception("database is locked")),
    IntegrityError("INSERT …", {}, _PgError("23505")),  # a unique-key race: the retry sees the other row
    DBAPIError("INSERT …", {}, _PgError("40001")),  # serialization failure
    ConnectionResetError("connection reset"),
    RuntimeError("a bug"),
])
def test_anything_else_is_retried(failure: Exception) -> None:
    assert not permanent(failure)
