from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cloud.platform.db import Database
from tests.support import services


def migrations_of(service: str) -> Path:
    import cloud

    return Path(cloud.__file__).parent / service / "migrations"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
        return
    services.require("PostgreSQL", services.POSTGRES)
    name = services.fresh_name("evpark_it_")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()


@pytest.fixture
async def charging_db(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    await db.connect()
    await db.migrate(migrations_of("charging"))
    try:
        yield db
    finally:
        await db.close()
