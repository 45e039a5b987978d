"""One database per service: a SQLite file by default, a PostgreSQL database in production.

Schema changes are Alembic migrations kept in each service's ``migrations`` folder; the
tables every service has (outbox, inbox, parked messages) live in
:mod:`cloud.platform.tables` and are created by each service's first migration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = structlog.get_logger(__name__)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self._echo = echo
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("database not connected; call connect() first")
        return self._engine

    def session(self) -> AsyncSession:
        if self._sessions is None:
            raise RuntimeError("database not connected; call connect() first")
        return self._sessions()

    async def connect(self) -> None:
        if self._engine is not None:
            return
        await self._create_database_if_missing()
        kwargs: dict[str, Any] = {"echo": self._echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        engine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessions = None

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # readiness probe: any failure means not ready
            return False

    async def migrate(self, script_location: Path, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the service's Alembic scripts."""
        # imported here, not with the module: a service that does not migrate (production, where
        # `evpark migrate` does it) starts without loading Alembic (about half a second of CPU)
        from alembic import command
        from alembic.config import Config

        def upgrade(connection: Connection) -> None:
            config = Config()
            config.set_main_option("script_location", str(script_location))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)
        log.info("database migrated", database=self.url.render_as_string(hide_password=True),
                 revision=revision)

    async def _create_database_if_missing(self) -> None:
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                await asyncio.to_thread(Path(self.url.database).parent.mkdir, parents=True, exist_ok=True)
            return
        if self.url.get_backend_name() != "postgresql":
            return
        name = self.url.database
        admin = create_async_engine(self.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
                if not exists:
                    try:
                        await conn.execute(text(f'CREATE DATABASE "{name}"'))
                        log.info("database created", database=name)
                    except Exception as exc:  # another replica created it first
                        if "already exists" not in str(exc):
                            raise
        finally:
            await admin.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (REST) run beside the writer (consumers); synchronous=FULL because
    # money and session records must survive a power cut, not just a process crash.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[Database]:
    db = Database(url)
    await db.connect()
    try:
        yield db
    finally:
        await db.close()
