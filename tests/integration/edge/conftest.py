from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import Edge, EdgeSettings
from tests.support import services


@pytest.fixture
def offline_port() -> Iterator[int]:
    """A port where nothing listens, held (bound, not listening) so no other process takes it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@pytest.fixture
def make_settings(tmp_path: Path, offline_port: int) -> Callable[..., EdgeSettings]:
    """Edge settings on a fresh data folder and a free OCPP port.

    By default the uplink points at a port where no broker listens: the site is offline, so
    the outbox keeps every row for the test to inspect.
    """

    def make(**overrides: Any) -> EdgeSettings:
        values: dict[str, Any] = {
            "site_id": services.fresh_name("site-"),
            "data_dir": tmp_path / "edge",
            "ocpp_port": 0,
            "mqtt_port": offline_port,
            "heartbeat_interval": 120,
            "accept_unknown_chargers": True,
            "admin_port": 0,
        }
        values.update(overrides)
        return EdgeSettings(**values)

    return make


@pytest.fixture
async def edge(make_settings: Callable[..., EdgeSettings]) -> AsyncIterator[Edge]:
    async with Edge(make_settings()) as running:
        yield running
